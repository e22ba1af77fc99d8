"""MFKDSampler: multi-fidelity architecture search with AR1 co-kriging (MF-KD, Algorithm 1).

The sampler only orchestrates: it decides the fidelity of each trial (``before_trial``),
collects the data from storage, and calls the pure tensor functions of
:mod:`optuna_mfkd.gp` (encoding, model fit, acquisition) to propose the next point.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd import defaults
from optuna_mfkd.fidelity import (
    FIDELITY_ATTR,
    FIDELITY_LEVEL_ATTR,
    STUDY_FIDELITIES_ATTR,
    fidelity_of,
    level_costs,
    record_user_attrs,
)
from optuna_mfkd.gp.acquisition import ACQUISITIONS, build_acquisition
from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.fidelity_choice import (
    XI_MIN,
    cheap_warmup_size,
    choose_level,
    discrepancy_scales,
)
from optuna_mfkd.gp.model import FittedModel, fit_ar1_model
from optuna_mfkd.gp.proposal import best_of_candidates, optimise, unique_representatives

_logger = optuna.logging.get_logger(__name__)

#: Trial system attribute holding the point a trial was given (Optuna internal repr).
POINT_ATTR = "mfkd:point"
#: Trial system attribute saying how the point was chosen ("random", "fallback", or the acquisition).
HOW_ATTR = "mfkd:how"
_RESERVED_ATTRS = {FIDELITY_ATTR, FIDELITY_LEVEL_ATTR}
#: Largest discrete space scored point by point by default (NAS-Bench-201 has 15,625 cells).
EXHAUSTIVE_LIMIT = 20_000
#: The paper's settings (Algorithm 1): UCB with beta on the variance over 5,000 random
#: candidates, one length scale per level, plain standardisation. With these and the
#: paper's warm-up (:data:`PAPER_WARMUP`) the sampler is MF-KD as published.
PAPER_SETTINGS: dict[str, Any] = dict(defaults.PAPER_SAMPLER_SETTINGS)
#: The paper's warm-up: n1 = 100 random trials per cheaper level, n2 = 20 at the highest.
PAPER_WARMUP = {"cheap": defaults.N_WARMUP_LOW, "top": defaults.N_WARMUP_HIGH}
#: Random warm-up of a single-level sampler (as Optuna's GPSampler's n_startup_trials).
SINGLE_LEVEL_WARMUP = 10
#: Level-choice strategies: the paper's Algorithm 1, and the cost-aware choice of
#: :mod:`optuna_mfkd.gp.fidelity_choice`.
STRATEGIES = defaults.STRATEGIES
#: Warm-up of the cost-aware strategy: random trials at the cheapest level (at most the
#: paper's n1 = 100), then at each higher level the best points of the level below are
#: promoted (3 per level). The random warm-up is sized by cost too: it stops once it cost
#: ``"worth"`` evaluations of the highest level (:func:`~optuna_mfkd.gp.fidelity_choice.cheap_warmup_size`),
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
#: Cost-aware strategy: the hyperparameters are refitted once the observations grew by this
#: fraction since the last fit (and by at least ``refit_every``); in between only the data
#: are updated.
REFIT_GROWTH = 0.05


def _normalise_fidelities(
    fidelities: Sequence[str] | Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, dict[str, Any]]]:
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
        names = [str(n) for n in fidelities]
        settings = {n: {} for n in names}
    if not names:
        raise ValueError("fidelities must name at least one level.")
    if len(set(names)) != len(names):
        raise ValueError(f"fidelities has duplicate names: {names}.")
    return names, settings


def _normalise_warmup(n_warmup: Mapping[str, int] | None, names: list[str], strategy: str) -> dict[str, int]:
    if n_warmup is None:
        if len(names) == 1:
            return {names[0]: SINGLE_LEVEL_WARMUP}
        if strategy == "cost-aware":
            return {n: COST_AWARE_WARMUP["cheapest" if i == 0 else "promoted"] for i, n in enumerate(names)}
        top = len(names) - 1
        return {n: PAPER_WARMUP["top" if i == top else "cheap"] for i, n in enumerate(names)}
    if not isinstance(n_warmup, Mapping):
        raise ValueError("n_warmup must be a dict mapping fidelity names to counts.")
    unknown = [k for k in n_warmup if k not in names]
    if unknown:
        raise ValueError(f"n_warmup names unknown fidelities {unknown}; known: {names}.")
    out = {}
    for n in names:
        count = n_warmup.get(n, 0)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"n_warmup[{n!r}] must be a non-negative integer, got {count!r}.")
        out[n] = int(count)
    return out


def _normalise_level_points(
    level_points: Mapping[str, Sequence[Mapping[str, Any]]] | None, names: list[str]
) -> dict[int, list[dict[str, Any]]]:
    if level_points is None:
        return {}
    if not isinstance(level_points, Mapping):
        raise ValueError(f"level_points must be a dict mapping fidelity names to lists of points, got {level_points!r}.")
    out = {}
    for name, points in level_points.items():
        if name not in names:
            raise ValueError(f"level_points names unknown fidelity {name!r}; known: {names}.")
        if name == names[-1]:
            raise ValueError(f"level_points[{name!r}]: the highest level cannot be restricted.")
        if isinstance(points, (str, Mapping)) or not isinstance(points, Sequence) or not points:
            raise ValueError(f"level_points[{name!r}] must be a non-empty list of parameter dicts.")
        for i, point in enumerate(points):
            if not isinstance(point, Mapping):
                raise ValueError(f"level_points[{name!r}][{i}] must be a parameter dict, got {point!r}.")
        out[names.index(name)] = [dict(p) for p in points]
    return out


def _params_key(point_key: Callable[[dict[str, Any]], Hashable] | None) -> Callable[[dict[str, Any]], Hashable]:
    """The identity of a parameter dict: ``point_key``, else all its values."""
    return point_key or (lambda p: tuple(sorted((k, repr(v)) for k, v in p.items())))


def _signature(encoder: SearchSpaceEncoder) -> tuple:
    return tuple((n, repr(d)) for n, d in zip(encoder.names, encoder.distributions))


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class MFKDSampler(BaseSampler):
    """Multi-fidelity sampler with AR1 co-kriging and a UCB rule (MF-KD, Algorithm 1).

    Each trial gets a fidelity level before the objective runs, recorded as the user
    attributes ``"fidelity"`` (the level's name) and ``"fidelity_level"`` (its position,
    0 = cheapest), plus the level's settings when ``fidelities`` is a dict. The objective
    reads the level with :func:`optuna_mfkd.fidelity_of`.

    Phases, derived from storage (COMPLETE and RUNNING trials), so they hold for several
    processes sharing one study:

    1. Warm-up: while a level has fewer than ``n_warmup[level]`` trials, new trials go to
       the cheapest such level and get a uniformly random point not yet evaluated (or
       running) at that level.
    2. Search: every further trial is at the highest level. The AR1 model
       ``y_L(x) = rho_{L-1} y_{L-1}(x) + delta_L(x)`` (see
       :class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel`, over
       :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel` per level) is fitted to all
       COMPLETE trials of all levels and the acquisition of the highest level is maximised
       (:mod:`optuna_mfkd.gp.proposal`): point by point over a discrete space of at most
       ``exhaustive_limit`` points (one point per ``point_key``), else by BoTorch's
       optimisers (L-BFGS-B over numbers, local search over categorical and discrete
       parameters). Points already evaluated or running at the highest level are never
       proposed again; running ones enter the model at their posterior mean (kriging
       believer), so parallel workers spread out.

    With ``strategy="cost-aware"`` the second phase chooses the level of every trial too
    (:mod:`optuna_mfkd.gp.fidelity_choice`): the point maximises the highest level's
    acquisition as above, and is evaluated at the cheapest level where it is still more
    uncertain than ``sqrt(cost ratio) x`` that level's discrepancy with the level above
    (MF-GP-UCB's rule), else at the highest level; so a point climbs the levels while it
    stays the best. Its warm-up is :data:`COST_AWARE_WARMUP`: random points at the cheapest
    level, as many as cost 6 evaluations of the highest level (at most 100), then the best
    points of each level promoted to the next (10 random points and one promotion per level
    come first, so the costs are known when the warm-up is sized). Costs per level are
    ``costs`` where given, else learned from the trials (:func:`optuna_mfkd.fidelity.level_costs`:
    the ``cost`` user attribute, else the trial's duration). A cheaper level holds at most
    its warm-up plus ``screen`` trials per trial of the level above. The level and the point
    are chosen together in ``before_trial``; everything is derived from storage, so a
    resumed study or another worker continues the strategy, and running trials at any level
    enter the model at their posterior mean.

    Acquisitions (:mod:`optuna_mfkd.gp.acquisition`), in standardised units of the highest
    level: ``"logei"`` (default, BoTorch's ``LogExpectedImprovement``) and ``"ucb"``, the
    paper's ``mu + beta * sigma^2`` (``beta`` multiplies the **variance**). The paper's
    exact settings are :data:`PAPER_SETTINGS` (``MFKDSampler(**PAPER_SETTINGS, ...)``).

    With a single level the sampler is single-fidelity GP BO (GP-UCB with the paper's
    settings). FAILED and PRUNED trials do not enter the model. If the fit fails
    numerically, a warning is logged and a random point is used for that trial.

    Args:
        fidelities: level names ordered from cheapest to most expensive, or a dict
            ``{name: settings}`` whose settings (e.g. ``{"epochs": 1, "kd_loss": "nst"}``)
            are recorded as user attributes of the trials at that level.
        n_warmup: random warm-up trials per level. Default: the paper's 100 per cheaper
            level and 20 at the highest (cost-aware: :data:`COST_AWARE_WARMUP`, sized by
            the costs); 10 for a single level. Counts given are kept exactly; levels not
            named get 0.
        n_candidates: ``None`` (default): exhaustive over discrete spaces of at most
            ``exhaustive_limit`` points, else optimised. ``"all"``: exhaustive over any
            discrete space. An integer: the paper's rule, the best of that many uniformly
            random points (every point when the space is discrete and not larger).
        beta: UCB trade-off (``>= 0``), see above; unused by ``"logei"``.
        seed: seed of the warm-up draws, the optimiser's starts and the fit's restarts.
        acquisition: ``"logei"`` or ``"ucb"``.
        exhaustive_limit: see ``n_candidates``.
        refit_every: re-optimise the hyperparameters once this many observations were
            added since the last fit (which then starts from the previous optimum); in
            between, the last hyperparameters are kept and only the data are updated, so
            the posterior stays exact for those hyperparameters.
        max_fit_iter: L-BFGS-B iteration cap of one fit.
        ard: one GP length scale per numerical parameter and level (default) instead of
            one shared by them.
        cat_ard: one length scale per categorical parameter and level instead of one
            shared by them (default).
        robust: robust per-level standardisation with a compressed lower tail (default)
            instead of mean and standard deviation (see :func:`optuna_mfkd.gp.model.standardise`).
        torch_threads: torch threads used inside a step (restored afterwards); ``None``
            leaves torch's setting alone. One thread is fastest for these small matrices.
        point_key: maps a parameter dict to a key; points with equal keys count as the
            same point: a point whose key was already evaluated (or is running) at a level
            is not proposed at that level again, and on the exhaustive path each key is one
            point of the model. Use it for equivalent encodings, e.g. isomorphic
            NAS-Bench-201 cells (:func:`optuna_mfkd.nasbench201.space.cell_key`). Default:
            points are the same when all their parameter values are.
        strategy: ``"paper"`` (Algorithm 1: after the warm-up every trial is at the highest
            level) or ``"cost-aware"`` (see above).
        costs: ``{level: cost of one evaluation}`` for the cost-aware strategy; levels not
            named are learned from the trials.
        screen: see the cost-aware strategy above (positive).
        xi_min: smallest discrepancy scale of the cost-aware level choice
            (:mod:`optuna_mfkd.gp.fidelity_choice`; standardised units, ``>= 0``).
        level_points: ``{level: [params, ...]}``: the only points a cheaper level can
            evaluate (e.g. the cells of a cached low-fidelity pool); the highest level is
            never restricted. A restricted level's warm-up draws from its points (at most
            as many trials as it has distinct points) and only its points are promoted to
            it. In the cost-aware choice, the point considered at a restricted level is the
            top-level acquisition's maximiser if it is one of the level's points, else the
            level's best free point by that acquisition; the rule above compares each
            level's uncertainty at its own point.

    The study's direction is respected (minimisation negates the values internally).
    """

    def __init__(
        self,
        fidelities: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("low", "high"),
        n_warmup: Mapping[str, int] | None = None,
        n_candidates: int | str | None = None,
        beta: float = defaults.UCB_BETA,
        seed: int | None = None,
        *,
        acquisition: str = "logei",
        exhaustive_limit: int = EXHAUSTIVE_LIMIT,
        refit_every: int = 1,
        max_fit_iter: int = 50,
        ard: bool = True,
        cat_ard: bool = False,
        robust: bool = True,
        torch_threads: int | None = 1,
        point_key: Callable[[dict[str, Any]], Hashable] | None = None,
        strategy: str = defaults.DEFAULT_STRATEGY,
        costs: Mapping[str, float] | None = None,
        screen: float = SCREEN_RATIO,
        xi_min: float = XI_MIN,
        level_points: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self._names, self._settings = _normalise_fidelities(fidelities)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
        self._strategy = strategy
        if costs is not None and not isinstance(costs, Mapping):
            raise ValueError(f"costs must be a dict mapping fidelity names to costs, got {costs!r}.")
        self._costs = dict(costs or {})
        if isinstance(screen, bool) or not isinstance(screen, (int, float)) or not math.isfinite(screen) or screen <= 0:
            raise ValueError(f"screen must be a positive finite number, got {screen!r}.")
        self._screen = float(screen)
        if isinstance(xi_min, bool) or not isinstance(xi_min, (int, float)) or not math.isfinite(xi_min) or xi_min < 0:
            raise ValueError(f"xi_min must be a finite number >= 0, got {xi_min!r}.")
        self._xi_min = float(xi_min)
        level_costs([], self._names, self._costs)  # checks the given costs
        self._n_warmup = _normalise_warmup(n_warmup, self._names, strategy)
        # Only the default cost-aware warm-up is sized by cost; counts given are kept exactly.
        self._cost_sized = n_warmup is None and strategy == "cost-aware" and len(self._names) > 1
        if n_candidates is not None and n_candidates != "all" and (
            isinstance(n_candidates, bool)
            or not isinstance(n_candidates, (int, np.integer))
            or n_candidates < 1
        ):
            raise ValueError(
                f"n_candidates must be None, a positive integer or 'all', got {n_candidates!r}."
            )
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {list(ACQUISITIONS)}, got {acquisition!r}.")
        if isinstance(exhaustive_limit, bool) or not isinstance(exhaustive_limit, int) or exhaustive_limit < 1:
            raise ValueError(f"exhaustive_limit must be a positive integer, got {exhaustive_limit!r}.")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}.")
        if not isinstance(refit_every, int) or refit_every < 1:
            raise ValueError(f"refit_every must be a positive integer, got {refit_every!r}.")
        if not isinstance(max_fit_iter, int) or max_fit_iter < 1:
            raise ValueError(f"max_fit_iter must be a positive integer, got {max_fit_iter!r}.")
        self._n_candidates = int(n_candidates) if isinstance(n_candidates, (int, np.integer)) else n_candidates
        self._acquisition = acquisition
        self._exhaustive_limit = exhaustive_limit
        self._robust = bool(robust)
        self._beta = float(beta)
        self._seed = seed
        self._refit_every = refit_every
        self._max_fit_iter = max_fit_iter
        self._ard = bool(ard)
        self._cat_ard = bool(cat_ard)
        self._torch_threads = torch_threads
        if point_key is not None and not callable(point_key):
            raise ValueError(f"point_key must be callable, got {point_key!r}.")
        self._point_key = point_key
        self._level_points = _normalise_level_points(level_points, self._names)
        # Warm-up of a restricted level: at most as many trials as it has distinct points.
        for lv, points in self._level_points.items():
            name = self._names[lv]
            self._n_warmup[name] = min(self._n_warmup[name], len({_params_key(point_key)(p) for p in points}))
        self._restricted_cache: dict[tuple, tuple[np.ndarray, list[Hashable]]] = {}
        self._independent: dict[int, dict[str, Any]] = {}
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()
        self._lock = threading.RLock()
        self._warm: dict[tuple[int, tuple[str, ...]], tuple[int, dict[str, torch.Tensor]]] = {}
        self._grid_cache: dict[tuple, tuple[np.ndarray, torch.Tensor, list[Hashable]]] = {}
        self._registered: set[int] = set()
        # Trial id -> (search-space signature, point) chosen with the level in before_trial.
        self._planned: dict[int, tuple[tuple, np.ndarray]] = {}

    # ----------------------------------------------------------------- public properties
    @property
    def fidelities(self) -> list[str]:
        """Level names, cheapest first."""
        return list(self._names)

    @property
    def n_warmup(self) -> dict[str, int]:
        """Warm-up trials per level."""
        return dict(self._n_warmup)

    @property
    def beta(self) -> float:
        """UCB trade-off (multiplies the variance in standardised top-level units)."""
        return self._beta

    @property
    def acquisition(self) -> str:
        """``"logei"`` or ``"ucb"``."""
        return self._acquisition

    @property
    def strategy(self) -> str:
        """``"paper"`` or ``"cost-aware"``."""
        return self._strategy

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    # ------------------------------------------------------------------ fidelity choice
    def _level_of(self, trial: FrozenTrial) -> int | None:
        name = fidelity_of(trial)
        if name is None:
            return None
        return self._names.index(name) if name in self._names else None

    def _choose_level(self, study: optuna.Study, trial: FrozenTrial) -> int:
        counts = [0] * len(self._names)
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        for t in study._get_trials(deepcopy=False, states=states, use_cache=False):
            if t.number == trial.number:
                continue
            level = self._level_of(t)
            if level is not None:
                counts[level] += 1
        stages = self._warmup_stages(study)
        for targets in stages:
            for level, name in enumerate(self._names):
                if counts[level] < targets[name]:
                    return level
        if self._strategy == "cost-aware" and len(self._names) > 1:
            return self._plan(study, trial, stages[-1])
        return len(self._names) - 1

    def _warmup_stages(self, study: optuna.Study) -> list[dict[str, int]]:
        """Warm-up trials per level, in stages done one after the other: ``n_warmup``, or
        for the default cost-aware warm-up (:data:`COST_AWARE_WARMUP`) a probe (random
        points at the cheapest level and one promotion per level) and then the full
        warm-up, whose cheapest-level count is sized by the costs once every level's cost
        is known (given, or a COMPLETE trial at the level)."""
        if not self._cost_sized:
            return [self._n_warmup]
        cheapest, top = self._names[0], self._names[-1]
        probe = min(int(COST_AWARE_WARMUP["probe"]), self._n_warmup[cheapest])
        first = {n: probe if i == 0 else min(1, self._n_warmup[n]) for i, n in enumerate(self._names)}
        full = dict(self._n_warmup)
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
        seen = {fidelity_of(t, default=top) for t in trials}
        if all(n in self._costs or n in seen for n in (cheapest, top)):
            costs = level_costs(trials, self._names, self._costs)
            full[cheapest] = cheap_warmup_size(
                costs[cheapest], costs[top], COST_AWARE_WARMUP["worth"], most=full[cheapest], least=probe
            )
        return [first, full]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if is_heartbeat_enabled(study._storage):
            # A process killed while this trial is being set up (before Optuna's heartbeat
            # thread starts) must still leave a trial that the stale-trial check can fail.
            assert isinstance(study._storage, BaseHeartbeat)
            study._storage.record_heartbeat(trial._trial_id)
        if study._is_multi_objective():
            return
        if study._study_id not in self._registered:
            stored = study._storage.get_study_system_attrs(study._study_id).get(STUDY_FIDELITIES_ATTR)
            if stored is None:
                study._storage.set_study_system_attr(study._study_id, STUDY_FIDELITIES_ATTR, self._names)
            elif list(stored) != self._names:
                raise ValueError(
                    f"study {study.study_name!r} was run with fidelities {list(stored)}, "
                    f"this sampler has {self._names}."
                )
            self._registered.add(study._study_id)
        existing = fidelity_of(trial)
        if existing is not None and existing in self._names:
            # Enqueued or retried trials keep their level.
            level = self._names.index(existing)
        else:
            with self._lock:
                level = self._choose_level(study, trial)
        name = self._names[level]
        attrs = {FIDELITY_ATTR: name, FIDELITY_LEVEL_ATTR: level, **self._settings[name]}
        missing = {k: v for k, v in attrs.items() if trial.user_attrs.get(k) != v}
        if missing:
            record_user_attrs(trial, study, missing)

    # ------------------------------------------------------------------------ sampling
    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if study._is_multi_objective():
            return {}
        space = {}
        for name, dist in self._search_space.calculate(study).items():
            if dist.single():
                continue
            space[name] = dist
        return space

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._raise_if_multi_objective(study)
        level = self._level_of(trial)
        if level in self._level_points:
            # A restricted level takes every parameter outside the relative space (e.g. all
            # of them in the first trial) from one of its points.
            point = self._independent_point(study, trial, level)
            if param_name in point and param_distribution._contains(param_distribution.to_internal_repr(point[param_name])):
                return point[param_name]
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def _independent_point(self, study: optuna.Study, trial: FrozenTrial, level: int) -> dict[str, Any]:
        """A random one of ``level``'s points not yet evaluated or running there (any one if
        none is left), the same for every parameter of ``trial``."""
        with self._lock:
            if trial._trial_id not in self._independent:
                points = self._level_points[level]
                key = _params_key(self._point_key)
                names = set().union(*points)
                used = set()
                for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING),
                                           use_cache=False):
                    if t.number != trial.number and self._level_of(t) == level and names <= set(t.params):
                        used.add(key({n: t.params[n] for n in names}))
                free = [p for p in points if key(p) not in used] or points
                self._independent[trial._trial_id] = free[self._rng.integers(len(free))]
            return self._independent[trial._trial_id]

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        self._raise_if_multi_objective(study)
        if not search_space:
            return {}
        encoder = SearchSpaceEncoder(search_space)
        level = self._level_of(trial)
        if level is None:
            level = len(self._names) - 1
        planned = self._planned.pop(trial._trial_id, None)
        with self._lock, _torch_threads(self._torch_threads):
            if planned is not None and planned[0] == _signature(encoder):
                internal = planned[1]
                if not self._claimed_earlier(study, trial, encoder, level, internal):
                    return encoder.to_params(internal)
            for _ in range(3):
                internal, how = self._propose(study, trial, encoder, level)
                study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, internal.tolist())
                study._storage.set_trial_system_attr(trial._trial_id, HOW_ATTR, how)
                # Another process may have claimed the same point meanwhile: the earlier
                # claim wins and this trial proposes again (the claim is now visible).
                if not self._claimed_earlier(study, trial, encoder, level, internal):
                    break
        return encoder.to_params(internal)

    def _claimed_earlier(
        self, study: optuna.Study, trial: FrozenTrial, encoder: SearchSpaceEncoder, level: int, internal: np.ndarray
    ) -> bool:
        mine = self._keys(encoder, internal)[0]
        for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False):
            if t.number >= trial.number or self._level_of(t) != level:
                continue
            point = t.system_attrs.get(POINT_ATTR)
            if point is not None and len(point) == len(internal):
                if self._keys(encoder, np.asarray(point, dtype=float))[0] == mine:
                    return True
        return False

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._independent.pop(trial._trial_id, None)
        self._planned.pop(trial._trial_id, None)

    def _raise_if_multi_objective(self, study: optuna.Study) -> None:
        if study._is_multi_objective():
            raise ValueError("MFKDSampler supports single-objective studies only.")

    # ---------------------------------------------------------------------- internals
    def _collect(
        self, study: optuna.Study, trial: FrozenTrial, encoder: SearchSpaceEncoder
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
        """Observed (internal, level, y) of COMPLETE trials, and running points per level."""
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        top = len(self._names) - 1
        rows, levels, values, running = [], [], [], []
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        for t in study._get_trials(deepcopy=False, states=states, use_cache=False):
            if t.number == trial.number:
                continue
            name = fidelity_of(t)
            if name is not None and name not in self._names:
                continue
            level = top if name is None else self._names.index(name)
            if t.state == TrialState.RUNNING:
                point = t.system_attrs.get(POINT_ATTR)
                if point is not None and len(point) == len(encoder.names):
                    running.append((level, np.asarray(point, dtype=float)))
                elif encoder.contains(t.params):
                    running.append((level, encoder.to_internal(t.params)))
                continue
            if not encoder.contains(t.params) or t.value is None or not math.isfinite(t.value):
                continue
            rows.append(encoder.to_internal(t.params))
            levels.append(level)
            values.append(sign * t.value)
        p = len(encoder.names)
        return (
            np.array(rows, dtype=float).reshape(-1, p),
            np.array(levels, dtype=np.int64),
            np.array(values, dtype=float),
            running,
        )

    def _keys(self, encoder: SearchSpaceEncoder, internal: np.ndarray) -> list[Hashable]:
        """Identity of each internal row: ``point_key`` of its params, or its grid id."""
        internal = np.atleast_2d(internal)
        if self._point_key is None:
            return encoder.point_ids(internal).tolist()
        return [self._point_key(encoder.to_params(row)) for row in internal]

    def _grid(self, encoder: SearchSpaceEncoder) -> tuple[np.ndarray, torch.Tensor, list[Hashable]] | None:
        """One representative row per key of a discrete space that is scored exhaustively
        (with its features and keys, cached), or ``None`` when it is not: a discrete space
        is exhaustive with ``n_candidates="all"``, or when it has at most
        ``exhaustive_limit`` points (``n_candidates=None``) or ``n_candidates`` points."""
        size = encoder.cardinality()
        limit = self._exhaustive_limit if self._n_candidates is None else self._n_candidates
        if size is None or (limit != "all" and size > limit):
            return None
        key = _signature(encoder)
        if key not in self._grid_cache:
            grid = encoder.enumerate()
            keys = self._keys(encoder, grid)
            rep = unique_representatives(keys)
            self._grid_cache[key] = (grid[rep], encoder.encode(grid[rep]), [keys[i] for i in rep])
        return self._grid_cache[key]

    def _restricted(self, encoder: SearchSpaceEncoder, level: int) -> tuple[np.ndarray, list[Hashable]] | None:
        """Internal rows (one per key, first given first) and keys of the points ``level``
        is restricted to (``level_points``), or ``None`` when it is not restricted. Points
        outside the search space are left out."""
        if level not in self._level_points:
            return None
        key = (_signature(encoder), level)
        if key not in self._restricted_cache:
            points = [p for p in self._level_points[level] if encoder.contains(p)]
            rows = np.array([encoder.to_internal(p) for p in points], dtype=float).reshape(-1, len(encoder.names))
            keys = self._keys(encoder, rows) if len(rows) else []
            rep = unique_representatives(keys) if keys else np.zeros(0, dtype=np.int64)
            self._restricted_cache[key] = (rows[rep], [keys[i] for i in rep])
        return self._restricted_cache[key]

    def _random_free(
        self, encoder: SearchSpaceEncoder, used: set[Hashable], grid: tuple | None,
        restricted: tuple[np.ndarray, list[Hashable]] | None = None,
    ) -> np.ndarray | None:
        """A uniformly random point whose key is not used (``None`` if none is found),
        among the ``restricted`` points where given."""
        if restricted is not None:
            grid = (restricted[0], None, restricted[1])
        if grid is not None:
            rows, _, keys = grid
            free = np.flatnonzero([k not in used for k in keys])
            return rows[self._rng.choice(free)] if len(free) else None
        for _ in range(20):
            cand = encoder.sample(64, self._rng)
            for row, k in zip(cand, self._keys(encoder, cand)):
                if k not in used:
                    return row
        return None

    def _propose(
        self, study: optuna.Study, trial: FrozenTrial, encoder: SearchSpaceEncoder, level: int
    ) -> tuple[np.ndarray, str]:
        top = len(self._names) - 1
        X, levels, y, running = self._collect(study, trial, encoder)
        used = set(self._keys(encoder, X[levels == level])) if len(X) else set()
        used.update(self._keys(encoder, pt)[0] for lv, pt in running if lv == level)
        grid = self._grid(encoder)
        n_top = int((levels == top).sum()) + sum(1 for lv, _ in running if lv == top)
        warm = level != top or n_top < self._n_warmup[self._names[top]] or len(y) == 0
        restricted = self._restricted(encoder, level)
        if warm:
            if self._strategy == "cost-aware" and 0 < level and (levels == level - 1).any():
                row = self._promote(encoder, X, levels, y, level, used, restricted)
                if row is not None:
                    return row, "promote"
            row = self._random_free(encoder, used, grid, restricted)
            if row is None:
                return self._all_taken(trial, encoder, level, restricted), "random"
            return row, "random"
        if grid is not None and not any(k not in used for k in grid[2]):
            return self._all_taken(trial, encoder, level), "random"
        try:
            fitted = self._fit(study, encoder, self._representatives(encoder, X, grid), levels, y)
            pending = [pt for lv, pt in running if lv == top]
            if pending:
                P = self._representatives(encoder, np.stack(pending), grid)
                fitted = fitted.condition_on_pending(encoder.encode(P))
            return self._maximise(fitted, encoder, grid, used, X, levels, y), self._acquisition
        except Exception as err:  # numerical failures must not stop the study
            _logger.warning(
                f"Trial {trial.number}: fitting or optimising the co-kriging model failed "
                f"({err!r}); using a random point for this trial."
            )
            row = self._random_free(encoder, used, grid, restricted)
            if row is None:
                row = self._all_taken(trial, encoder, level, restricted)
            return row, "fallback"

    def _promote(
        self, encoder: SearchSpaceEncoder, X: np.ndarray, levels: np.ndarray, y: np.ndarray, level: int,
        used: set[Hashable], restricted: tuple[np.ndarray, list[Hashable]] | None = None,
    ) -> np.ndarray | None:
        """The best point observed at ``level - 1`` whose key is not in ``used`` (and is
        one of the ``restricted`` points where given; that point is returned)."""
        below = np.flatnonzero(levels == level - 1)
        keys = self._keys(encoder, X[below])
        allowed = None if restricted is None else {k: i for i, k in enumerate(restricted[1])}
        for i in np.argsort(-y[below], kind="stable"):
            if keys[i] in used:
                continue
            if allowed is None:
                return X[below[i]]
            if keys[i] in allowed:
                return restricted[0][allowed[keys[i]]]
        return None

    def _plan(self, study: optuna.Study, trial: FrozenTrial, warmup: Mapping[str, int]) -> int:
        """Cost-aware strategy after the warm-up (``warmup``: its trials per level): choose
        the point (top-level acquisition) and its level (:mod:`optuna_mfkd.gp.fidelity_choice`);
        the point is kept for :meth:`sample_relative`. Returns the level."""
        top = len(self._names) - 1
        space = self.infer_relative_search_space(study, trial)
        if not space:
            return top
        encoder = SearchSpaceEncoder(space)
        with _torch_threads(self._torch_threads):
            X, levels, y, running = self._collect(study, trial, encoder)
            if not (levels == top).any():
                return top
            used = [set(self._keys(encoder, X[levels == lv])) if (levels == lv).any() else set()
                    for lv in range(top + 1)]
            for lv, pt in running:
                used[lv].add(self._keys(encoder, pt)[0])
            grid = self._grid(encoder)
            if grid is not None and not any(k not in used[top] for k in grid[2]):
                return top
            try:
                fitted = self._fit(study, encoder, self._representatives(encoder, X, grid), levels, y)
                if running:
                    P = self._representatives(encoder, np.stack([pt for _, pt in running]), grid)
                    lv_p = torch.tensor([lv for lv, _ in running], dtype=torch.long)
                    fitted = fitted.condition_on_pending(encoder.encode(P), lv_p)
                row = self._maximise(fitted, encoder, grid, used[top], X, levels, y)
                points, free = self._level_points_for(fitted, encoder, grid, row, used)
                rep = self._representatives(encoder, np.stack(points), grid)
                covar_all = fitted.level_covariance(encoder.encode(rep))
                std = torch.stack([covar_all[m, m, m] for m in range(top + 1)]).clamp_min(0.0).sqrt()
                counts = np.bincount(levels, minlength=top + 1) + np.bincount(
                    np.array([lv for lv, _ in running], dtype=np.int64), minlength=top + 1
                )
                allowed = [
                    free[lv] and counts[lv] < warmup[self._names[lv]] + self._screen * counts[lv + 1]
                    for lv in range(top)
                ] + [True]
                costs = level_costs(
                    study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False),
                    self._names, self._costs,
                )
                covar = fitted.model.covar_module
                level = choose_level(
                    std, covar.rho.detach(), discrepancy_scales(covar), [costs[n] for n in self._names], allowed,
                    self._xi_min,
                )
                row = points[level]
            except Exception as err:  # numerical failures must not stop the study
                _logger.warning(
                    f"Trial {trial.number}: choosing the level with the co-kriging model failed "
                    f"({err!r}); evaluating at the highest level."
                )
                return top
        study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, row.tolist())
        study._storage.set_trial_system_attr(trial._trial_id, HOW_ATTR, f"{self._acquisition}+cost")
        self._planned[trial._trial_id] = (_signature(encoder), row)
        return level

    def _level_points_for(
        self,
        fitted: FittedModel,
        encoder: SearchSpaceEncoder,
        grid: tuple | None,
        row: np.ndarray,
        used: list[set[Hashable]],
    ) -> tuple[list[np.ndarray], list[bool]]:
        """The point the cost-aware choice considers at each level, and whether it is free
        there: ``row`` (the top-level acquisition's maximiser) at unrestricted levels; at a
        level with ``level_points``, ``row``'s own entry when its key is one of them, else
        the level's free point that maximises the same acquisition."""
        key = self._keys(encoder, row)[0]
        points, free = [], []
        acqf = None
        for lv in range(len(self._names)):
            restricted = self._restricted(encoder, lv)
            if restricted is None:
                points.append(row)
                free.append(key not in used[lv])
                continue
            rows, keys = restricted
            if key in keys and key not in used[lv]:
                points.append(rows[keys.index(key)])
                free.append(True)
                continue
            mask = np.fromiter((k not in used[lv] for k in keys), dtype=bool, count=len(keys))
            if not mask.any():
                points.append(row)
                free.append(False)
                continue
            if acqf is None:
                acqf = build_acquisition(self._acquisition, fitted, self._beta)
            feats = encoder.encode(self._representatives(encoder, rows, grid))
            points.append(rows[best_of_candidates(acqf, feats, mask, self._rng)])
            free.append(True)
        return points, free

    def _maximise(
        self,
        fitted: FittedModel,
        encoder: SearchSpaceEncoder,
        grid: tuple | None,
        used: set[Hashable],
        X: np.ndarray,
        levels: np.ndarray,
        y: np.ndarray,
    ) -> np.ndarray:
        """The point maximising the highest level's acquisition among points whose key is
        not in ``used`` (exhaustive, the paper's random candidates, or BoTorch's optimisers)."""
        top = len(self._names) - 1
        acqf = build_acquisition(self._acquisition, fitted, self._beta)
        if grid is not None:
            rows, feats, keys = grid
            free = np.fromiter((k not in used for k in keys), dtype=bool, count=len(keys))
            return rows[best_of_candidates(acqf, feats, free, self._rng)]
        if isinstance(self._n_candidates, int):
            # The paper's rule: the best of n_candidates uniformly random points.
            cand = encoder.sample(self._n_candidates, self._rng)
            free = np.fromiter((k not in used for k in self._keys(encoder, cand)), dtype=bool, count=len(cand))
            if not free.any():
                raise ValueError("every random candidate was already evaluated")
            return cand[best_of_candidates(acqf, encoder.encode(cand), free, self._rng)]
        top_rows = X[levels == top] if (levels == top).any() else X
        top_y = y[levels == top] if (levels == top).any() else y
        best = top_rows[np.argsort(-top_y, kind="stable")[:5]]
        return optimise(acqf, encoder, encoder.encode(best), self._rng, used, lambda rows: self._keys(encoder, rows))

    def _all_taken(
        self, trial: FrozenTrial, encoder: SearchSpaceEncoder, level: int,
        restricted: tuple[np.ndarray, list[Hashable]] | None = None,
    ) -> np.ndarray:
        _logger.warning(
            f"Trial {trial.number}: every point was already evaluated at fidelity "
            f"{self._names[level]!r}; proposing a random point{' of its level_points' if restricted else ''}."
        )
        if restricted is not None and len(restricted[0]):
            return restricted[0][self._rng.integers(len(restricted[0]))]
        return encoder.sample(1, self._rng)[0]

    def _representatives(self, encoder: SearchSpaceEncoder, X: np.ndarray, grid: tuple | None) -> np.ndarray:
        """Rows replaced by their key's representative, so equivalent points are one point
        of the model (exhaustive path with a ``point_key`` only)."""
        if grid is None or self._point_key is None or len(X) == 0:
            return X
        rows, _, keys = grid
        where = {k: i for i, k in enumerate(keys)}
        out = X.copy()
        for j, k in enumerate(self._keys(encoder, X)):
            if k in where:
                out[j] = rows[where[k]]
        return out

    def _fit(
        self, study: optuna.Study, encoder: SearchSpaceEncoder, X: np.ndarray, levels: np.ndarray, y: np.ndarray
    ) -> FittedModel:
        key = (study._study_id, tuple(encoder.names))
        n_fit_last, warm = self._warm.get(key, (-(10**9), None))
        every = self._refit_every
        if self._strategy == "cost-aware":
            # Many cheap trials: refit once the data grew by REFIT_GROWTH (at least refit_every).
            every = max(every, math.ceil(REFIT_GROWTH * max(n_fit_last, 0)))
        refit = len(y) - n_fit_last >= every or warm is None
        with torch.random.fork_rng():
            torch.manual_seed(int(self._rng.integers(2**31 - 1)))
            fitted = fit_ar1_model(
                encoder.encode(X),
                torch.from_numpy(levels),
                torch.from_numpy(y),
                len(self._names),
                cat_dims=encoder.cat_dims,
                warm_start=warm,
                max_iter=self._max_fit_iter,
                ard=self._ard,
                cat_ard=self._cat_ard,
                robust=self._robust,
                fit=refit,
            )
        if refit:
            self._warm[key] = (len(y), fitted.hyperparameters())
        return fitted
