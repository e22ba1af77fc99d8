"""MFKDSampler's options: validated once, frozen, with their named defaults.

:func:`build_options` checks every argument of :class:`~optuna_mfkd.sampler.MFKDSampler` and
raises a one-line ``ValueError`` naming the argument; nothing else in the sampler validates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optuna_mfkd import defaults
from optuna_mfkd.fidelity import FIDELITY_ATTR, FIDELITY_LEVEL_ATTR, level_costs

_RESERVED_ATTRS = {FIDELITY_ATTR, FIDELITY_LEVEL_ATTR}
#: Largest discrete space scored point by point by default (NAS-Bench-201 has 15,625 cells).
EXHAUSTIVE_LIMIT = 20_000
#: The paper's settings (Algorithm 1): UCB with beta on the variance over 5,000 random
#: candidates, one length scale per level, plain standardisation. With these and the
#: paper's warm-up (:data:`PAPER_WARMUP`) the sampler is MF-KD as published.
PAPER_SETTINGS: dict[str, Any] = dict(defaults.PAPER_SAMPLER_SETTINGS)
#: The paper's warm-up: n1 = 100 random trials per cheaper level, n2 = 20 at the top level.
PAPER_WARMUP = {"cheap": defaults.N_WARMUP_LOW, "top": defaults.N_WARMUP_HIGH}
#: Random warm-up of a single-level sampler (as Optuna's GPSampler's n_startup_trials).
SINGLE_LEVEL_WARMUP = 10
#: The one level of a sampler whose levels are not declared (``MFKDSampler()``): plain
#: single-fidelity GP BO, since an objective that never reads its level gains nothing from
#: cheap trials and would lose most of its budget to them.
DEFAULT_LEVEL = "high"
#: Level-choice strategies: the paper's Algorithm 1, and the cost-aware choice of
#: :mod:`optuna_mfkd.gp.fidelity_choice`.
STRATEGIES = defaults.STRATEGIES
#: Strategies that choose the level by cost (the warm-up sized by cost, promotion): MF-GP-UCB's
#: threshold (``"cost-aware"``) or MF-MES's information per unit cost (``"mf-mes"``).
COST_AWARE_STRATEGIES = ("cost-aware", "mf-mes")
#: Warm-up of the cost-aware strategy: random trials at the cheapest level (at most the
#: paper's n1 = 100), then at each higher level the best points of the level below are
#: promoted (3 per level). The random warm-up is sized by cost too: it stops once it cost
#: ``"worth"`` evaluations of the top level (:func:`~optuna_mfkd.gp.fidelity_choice.cheap_warmup_size`),
#: so a level only twice as cheap as the top does not take 100 trials; to learn the costs,
#: ``"probe"`` random points and one promotion per level come first. Chosen on the tuning
#: problems (``benchmarks/results/tune-strategy/``): with 30 random points, 10 of 30 NB201
#: CIFAR-10 12 -> 200-epoch searches ended on a weaker cell, 2 of 30 with 100; 6 top-level
#: evaluations' worth keeps those 100 cells (12- vs 200-epoch costs: 6 x 200 / 12 = 100).
COST_AWARE_WARMUP = {"cheapest": defaults.N_WARMUP_LOW, "promoted": 3, "probe": 10, "worth": 6.0}
#: Cost-aware strategy: a cheaper level holds at most its warm-up plus this many trials per
#: trial of the level above (it screens points for that level, as Hyperband's reduction
#: factor does), so a very cheap level cannot take thousands of trials.
SCREEN_RATIO = 3.0
#: Step (learning-curve) mode: at most this many observations per rung enter the model, the
#: most recent trials' (the top level, the final values, is never cut), so a step costs about
#: the same after 200 trials as after 60.
MAX_PER_RUNG = 150
#: Cost-aware strategy: the hyperparameters are refitted once the observations grew by this
#: fraction since the last fit (and by at least ``refit_every``); in between only the data
#: are updated.
REFIT_GROWTH = 0.05
#: Step (learning-curve) mode: the same rule with this fraction. The sampler and the pruner
#: both fit at every rung a trial reaches, so the data grow by several rows per trial; refitting
#: once they grew by a fifth keeps about ``log(n) / log(1.2)`` fits in a run of ``n`` rows
#: (about 30 at 300) instead of one per decision (AugmentedHartmann, seeds 0-2, 30 trainings'
#: budget: the same final values as refitting at every decision, in half the time or less).
STEP_REFIT_GROWTH = 0.2


@dataclass(frozen=True)
class SamplerOptions:
    """Everything :class:`~optuna_mfkd.sampler.MFKDSampler` was configured with, checked.

    ``names`` are the levels, cheapest first (``top = len(names) - 1``); ``n_warmup`` the
    warm-up trials per level (the default cost-aware warm-up is further sized by cost when
    ``cost_sized``); ``level_points`` maps a level's position to the only points it may
    evaluate. The other fields are the constructor's arguments of the same name.
    """

    names: tuple[str, ...]
    settings: Mapping[str, Mapping[str, Any]]
    n_warmup: Mapping[str, int]
    cost_sized: bool
    strategy: str
    costs: Mapping[str, float]
    screen: float
    xi_min: float
    n_candidates: int | str | None
    acquisition: str
    exhaustive_limit: int
    beta: float
    seed: int | None
    refit_every: int
    max_fit_iter: int
    fit_gtol: float | None
    ard: bool
    cat_ard: bool
    robust: bool
    torch_threads: int | None
    point_key: Callable[[dict[str, Any]], Hashable] | None
    level_points: Mapping[int, list[dict[str, Any]]]
    constraints_func: Callable[[Any], Sequence[float]] | None = None
    steps: tuple[float, ...] | None = None
    model_check: bool = True
    kernel: str = "matern52"
    deterministic_objective: bool = False

    @property
    def top(self) -> int:
        """Position of the top (most expensive) level."""
        return len(self.names) - 1


def _undeclared_hint(names: Sequence[str]) -> str:
    """The reminder added to an unknown-level error of a sampler without declared levels."""
    if list(names) == [DEFAULT_LEVEL]:
        return " (without fidelities=[...] the sampler has one level; declare the levels, cheapest first)"
    return ""


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _number(name: str, value: Any, low: float, strict: bool, what: str) -> float:
    ok = _is_number(value) and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return float(value)


def normalise_fidelities(
    fidelities: Sequence[str] | Mapping[str, Mapping[str, Any]] | None,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Level names, cheapest first, and each level's settings (recorded on its trials);
    ``None``: the one level :data:`DEFAULT_LEVEL`."""
    if fidelities is None:
        return [DEFAULT_LEVEL], {DEFAULT_LEVEL: {}}
    if isinstance(fidelities, str):
        raise ValueError("fidelities must be a list of level names or a dict, not a string.")
    if isinstance(fidelities, Mapping):
        names = [str(n) for n in fidelities]
        settings = {}
        for name, value in fidelities.items():
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"fidelities[{name!r}] must be a dict of settings, got {type(value).__name__}."
                )
            clash = _RESERVED_ATTRS.intersection(value)
            if clash:
                raise ValueError(f"fidelities[{name!r}] uses reserved keys {sorted(clash)}.")
            settings[str(name)] = dict(value)
    else:
        if not isinstance(fidelities, Sequence):
            raise ValueError(f"fidelities must be a list of level names or a dict, got {fidelities!r}.")
        names = [str(n) for n in fidelities]
        settings = {n: {} for n in names}
    if not names:
        raise ValueError("fidelities must name at least one level.")
    if len(set(names)) != len(names):
        raise ValueError(f"fidelities has duplicate names: {names}.")
    return names, settings


def step_level_name(step: float) -> str:
    """The level name of a rung: ``"step 3"``."""
    return f"step {step:g}"


def normalise_steps(
    steps: Sequence[float], fidelities: Any, strategy: str | None, level_points: Any,
) -> list[float]:
    """The rungs of the step (learning-curve) mode, increasing; the last is the end of
    training (its level is the trial's final value).

    Raises:
        ValueError: steps that are not at least two increasing positive numbers, or given
            together with ``fidelities``, ``strategy`` or ``level_points``.
    """
    for name, value in (("fidelities", fidelities), ("strategy", strategy), ("level_points", level_points)):
        if value is not None:
            raise ValueError(f"steps makes the levels the reported steps: {name} cannot be given with it.")
    if isinstance(steps, (str, Mapping)) or not isinstance(steps, Sequence):
        raise ValueError(f"steps must be a list of increasing positive steps, got {steps!r}.")
    out = []
    for s in steps:
        if not _is_number(s) or not math.isfinite(s) or s <= 0 or (out and s <= out[-1]):
            raise ValueError(f"steps must be a list of increasing positive steps, got {list(steps)!r}.")
        out.append(float(s) if not float(s).is_integer() else int(s))
    if len(out) < 2:
        raise ValueError(f"steps needs at least two steps (a rung and the end of training), got {list(steps)!r}.")
    return out


def default_warmup(names: Sequence[str], strategy: str) -> dict[str, int]:
    """Warm-up per level when none is given: :data:`SINGLE_LEVEL_WARMUP` for one level,
    :data:`COST_AWARE_WARMUP`'s counts, or the paper's (:data:`PAPER_WARMUP`)."""
    if len(names) == 1:
        return {names[0]: SINGLE_LEVEL_WARMUP}
    if strategy == "steps":  # trials counted at the top level, whatever rung they reached
        return {n: SINGLE_LEVEL_WARMUP if i == len(names) - 1 else 0 for i, n in enumerate(names)}
    if strategy in COST_AWARE_STRATEGIES:
        return {n: COST_AWARE_WARMUP["cheapest" if i == 0 else "promoted"] for i, n in enumerate(names)}
    top = len(names) - 1
    return {n: PAPER_WARMUP["top" if i == top else "cheap"] for i, n in enumerate(names)}


def normalise_warmup(n_warmup: Mapping[str, int] | None, names: list[str], strategy: str) -> dict[str, int]:
    """Warm-up trials per level: ``n_warmup`` (levels not named get 0), else the default."""
    if n_warmup is None:
        return default_warmup(names, strategy)
    if not isinstance(n_warmup, Mapping):
        raise ValueError("n_warmup must be a dict mapping fidelity names to counts.")
    unknown = [k for k in n_warmup if k not in names]
    if unknown:
        raise ValueError(f"n_warmup names unknown fidelities {unknown}; known: {names}{_undeclared_hint(names)}.")
    out = {}
    for n in names:
        count = n_warmup.get(n, 0)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"n_warmup[{n!r}] must be a non-negative integer, got {count!r}.")
        out[n] = int(count)
    return out


def normalise_level_points(
    level_points: Mapping[str, Sequence[Mapping[str, Any]]] | None, names: list[str]
) -> dict[int, list[dict[str, Any]]]:
    """Level position -> the only points that level may evaluate."""
    if level_points is None:
        return {}
    if not isinstance(level_points, Mapping):
        raise ValueError(f"level_points must be a dict mapping fidelity names to lists of points, got {level_points!r}.")
    out = {}
    for name, points in level_points.items():
        if name not in names:
            raise ValueError(f"level_points names unknown fidelity {name!r}; known: {names}{_undeclared_hint(names)}.")
        if name == names[-1]:
            raise ValueError(f"level_points[{name!r}]: the top level cannot be restricted.")
        if isinstance(points, (str, Mapping)) or not isinstance(points, Sequence) or not points:
            raise ValueError(f"level_points[{name!r}] must be a non-empty list of parameter dicts.")
        for i, point in enumerate(points):
            if not isinstance(point, Mapping):
                raise ValueError(f"level_points[{name!r}][{i}] must be a parameter dict, got {point!r}.")
        out[names.index(name)] = [dict(p) for p in points]
    return out


def params_key(point_key: Callable[[dict[str, Any]], Hashable] | None) -> Callable[[dict[str, Any]], Hashable]:
    """The identity of a parameter dict: ``point_key``, else all its values."""
    return point_key or (lambda p: tuple(sorted((k, repr(v)) for k, v in p.items())))


def build_options(
    fidelities: Sequence[str] | Mapping[str, Mapping[str, Any]] | None,
    n_warmup: Mapping[str, int] | None,
    n_candidates: int | str | None,
    beta: float,
    seed: int | None,
    *,
    acquisition: str,
    exhaustive_limit: int,
    refit_every: int,
    max_fit_iter: int,
    fit_gtol: float | None = None,
    ard: bool,
    cat_ard: bool,
    robust: bool,
    torch_threads: int | None,
    point_key: Callable[[dict[str, Any]], Hashable] | None,
    strategy: str | None,
    costs: Mapping[str, float] | None,
    screen: float,
    xi_min: float,
    level_points: Mapping[str, Sequence[Mapping[str, Any]]] | None,
    constraints_func: Callable[[Any], Sequence[float]] | None = None,
    steps: Sequence[float] | None = None,
    model_check: bool = True,
    kernel: str = "matern52",
    deterministic_objective: bool = False,
) -> SamplerOptions:
    """The checked :class:`SamplerOptions` of MFKDSampler's arguments.

    Raises:
        ValueError: one line naming the first argument that is wrong.
    """
    from optuna_mfkd.gp.acquisition import ACQUISITIONS  # loads torch; options stay light otherwise
    from optuna_mfkd.gp.model import KERNELS

    if steps is not None:
        steps = normalise_steps(steps, fidelities, strategy, level_points)
        fidelities, strategy = [step_level_name(s) for s in steps], "steps"
    elif strategy is None:
        strategy = defaults.DEFAULT_STRATEGY
    names, settings = normalise_fidelities(fidelities)
    for flag, value in (("model_check", model_check), ("deterministic_objective", deterministic_objective)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False, got {value!r}.")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}.")
    if strategy not in (*STRATEGIES, "steps"):
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
    if costs is not None and not isinstance(costs, Mapping):
        raise ValueError(f"costs must be a dict mapping fidelity names to costs, got {costs!r}.")
    costs = dict(costs or {})
    unknown = [k for k in costs if k not in names]
    if unknown:
        raise ValueError(f"costs names unknown fidelities {unknown}; known: {names}{_undeclared_hint(names)}.")
    level_costs([], names, costs)  # checks the given costs
    screen = _number("screen", screen, 0.0, True, "a positive finite number")
    xi_min = _number("xi_min", xi_min, 0.0, False, "a finite number >= 0")
    warmup = normalise_warmup(n_warmup, names, strategy)
    if n_candidates is not None and n_candidates != "all":
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
            raise ValueError(f"n_candidates must be None, a positive integer or 'all', got {n_candidates!r}.")
        n_candidates = int(n_candidates)
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {list(ACQUISITIONS)}, got {acquisition!r}.")
    exhaustive_limit = _positive_int("exhaustive_limit", exhaustive_limit)
    beta = _number("beta", beta, 0.0, False, "a finite number >= 0")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}.")
    refit_every = _positive_int("refit_every", refit_every)
    max_fit_iter = _positive_int("max_fit_iter", max_fit_iter)
    if fit_gtol is not None:
        fit_gtol = _number("fit_gtol", fit_gtol, 0.0, True, "a positive number or None")
    if torch_threads is not None:
        torch_threads = _positive_int("torch_threads", torch_threads)
    if point_key is not None and not callable(point_key):
        raise ValueError(f"point_key must be callable, got {point_key!r}.")
    if constraints_func is not None and not callable(constraints_func):
        raise ValueError(f"constraints_func must be callable, got {constraints_func!r}.")
    restricted = normalise_level_points(level_points, names)
    # Warm-up of a restricted level: at most as many trials as it has distinct points.
    for lv, points in restricted.items():
        name = names[lv]
        warmup[name] = min(warmup[name], len({params_key(point_key)(p) for p in points}))
    return SamplerOptions(
        names=tuple(names),
        settings=settings,
        n_warmup=warmup,
        # Only the default cost-aware warm-up is sized by cost; counts given are kept exactly.
        cost_sized=n_warmup is None and strategy in COST_AWARE_STRATEGIES and len(names) > 1,
        strategy=strategy,
        costs=costs,
        screen=screen,
        xi_min=xi_min,
        n_candidates=n_candidates,
        acquisition=acquisition,
        exhaustive_limit=exhaustive_limit,
        beta=beta,
        seed=None if seed is None else int(seed),
        refit_every=refit_every,
        max_fit_iter=max_fit_iter,
        fit_gtol=fit_gtol,
        ard=bool(ard),
        cat_ard=bool(cat_ard),
        robust=bool(robust),
        torch_threads=torch_threads,
        point_key=point_key,
        level_points=restricted,
        constraints_func=constraints_func,
        steps=None if steps is None else tuple(steps),
        model_check=model_check,
        kernel=kernel,
        deterministic_objective=deterministic_objective,
    )
