"""Synthetic benchmark problems from BoTorch's test functions, as Optuna searches.

Every function is minimised (BoTorch's convention). Each input dimension of the function
is one Optuna parameter over the function's bounds (``suggest_float``; binary dimensions of
a mixed problem ``suggest_categorical`` over ``[0, 1]``); the fidelity input of a
multi-fidelity function is never a parameter: it is fixed by the trial's level
(:func:`optuna_mfkd.fidelity_of`; trials without one, made by single-fidelity samplers, are
evaluated at the top level).

Metric: the log10 simple regret of the incumbent (the best COMPLETE top-level trial),

    r = log10(max(f(x_inc) - f*, 1e-12)),

with ``f*`` the top-level function's value at its known minimiser (BoTorch's
``optimizers``, evaluated in float64; it agrees with BoTorch's ``optimal_value``, quoted to
5-6 digits, within 1e-5, and for the wing weight see below). Points better than the quoted
minimiser (possible only by the rounding of its coordinates) count as regret 1e-12.

Costs are in top-level evaluations (a top-level trial costs 1) and the budget is a number
of top-level evaluations' worth; the harness stops a run once the total cost reaches it.
The budgets keep the suite affordable (GPSampler's step grows with the trials; 30 seeds of
the seven problems x five methods took about 1.5 CPU core-hours in a pilot) while leaving the
multi-fidelity problems room after the paper's warm-up (100 trials per cheaper level and 20
at the top: 30 to 31 top-level evaluations' worth).

Single-fidelity problems (variant ``1-level``, one level ``top``):

| problem | function | space | budget |
| --- | --- | --- | --- |
| ``branin`` | ``Branin`` | ``[-5, 10] x [0, 15]`` | 30 |
| ``hartmann6`` | ``Hartmann(dim=6)`` | ``[0, 1]^6`` | 50 |
| ``ackley10`` | ``Ackley(dim=10)`` | ``[-32.768, 32.768]^10`` | 50 |
| ``ackley-mixed`` | ``AckleyMixed(dim=13, randomize_optimum=True)`` | 10 binary categorical ``b0..b9`` + ``[0, 1]^3`` | 50 |

``ackley-mixed``'s optimum ``x_opt`` is drawn by BoTorch when the function is built, under
``torch.manual_seed(0)`` in a forked RNG state (so building it leaves torch's global RNG
alone); its value is stored with every study.

Multi-fidelity problems (levels cheapest first; cost per evaluation):

| problem | function | levels (fidelity input) | costs | budget |
| --- | --- | --- | --- | --- |
| ``augmented-hartmann/3-level`` | ``AugmentedHartmann`` | s = 0.5, 0.75, 1.0 | 0.01, 0.1, 1 | 50 |
| ``augmented-branin/2-level`` | ``AugmentedBranin`` | s = 0.5, 1.0 | 0.1, 1 | 40 |
| ``wing-weight/4-level`` | ``WingWeightMultiFidelity`` | index 3, 2, 1, 0 (LF3 .. HF) | 0.001, 0.01, 0.1, 1 | 40 |

The augmented functions' costs are ours (a factor 10 per level, close to NB201's 12- vs
200-epoch ratio of 16.7); the wing weight's are BoTorch's ``cost()`` (1, 10, 100, 1000)
divided by the top level's. BoTorch's wing-weight fidelity index counts down: 0 is the high
fidelity. Its ``optimal_value`` (123.25) is rounded: the high-fidelity function is monotone
in every input but the sweep angle, minimal at ``Lambda = 0``, so the minimiser is the
corner (150, 220, 6, 0, 16, 0.5, 0.18, 2.5, 1700, 0.025), value 123.2537; ``f*`` is that.

The multi-fidelity problems also run ``mfkd-mes``, ``mfkd-ucb`` and the peers (:mod:`optuna_mfkd.bench.peers`: ``dehb``,
``syne-bohb``, ``syne-asha``, ``smac-mf``, ``smac-hb``) when a run names them
(``extra_methods``; they are not among :data:`SYNTHETIC_METHODS`). Their context gives the
search space (a ``FloatDistribution(low, high)`` per input, a ``CategoricalDistribution`` for
choices) and each level's cost as its resource: the costs grow by a factor 10 per level, so
the peers run with ``eta = 10`` and their rungs are exactly the levels. A single-level
problem refuses a peer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from optuna_mfkd.bench.methods import Method, MethodContext
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import Metric, resolve_method
from optuna_mfkd.fidelity import COST_ATTR, fidelity_of
from optuna_mfkd.nasbench201.tabular import EVALUATED_AT_ATTR

#: The synthetic problems' figure.
LOG10_REGRET = Metric("log10_regret", "log10 simple regret of the incumbent", False, "log10")
#: Smallest simple regret counted (log10: -12).
REGRET_FLOOR = 1e-12

#: Methods a synthetic problem runs by default: MFKDSampler with its defaults and with the
#: paper's settings, and Optuna's GPSampler, TPESampler and RandomSampler.
SYNTHETIC_METHODS: tuple[str, ...] = ("mfkd", "mfkd-paper", "gp", "tpe", "random")
#: Methods the multi-fidelity problems run on request (not by default): the peers.
PEER_METHODS: tuple[str, ...] = tuple(PEERS)
#: The multi-fidelity problems' methods on request: MFKDSampler's MF-MES level rule and the peers.
MF_EXTRA_METHODS: tuple[str, ...] = ("mfkd-mes", "mfkd-ucb", *PEER_METHODS)


@dataclass(frozen=True)
class Param:
    """One Optuna parameter: input ``index`` of the function.

    ``choices``: a categorical parameter over these values; else a float in ``[low, high]``.
    """

    name: str
    index: int
    low: float = 0.0
    high: float = 1.0
    choices: tuple[float, ...] | None = None

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution :meth:`suggest` draws from."""
        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        return FloatDistribution(self.low, self.high)

    def suggest(self, trial: optuna.trial.BaseTrial) -> float:
        if self.choices is not None:
            return float(trial.suggest_categorical(self.name, list(self.choices)))
        return trial.suggest_float(self.name, self.low, self.high)


@dataclass(frozen=True)
class Level:
    """A fidelity level: its name, cost per evaluation and the function's fidelity input."""

    name: str
    cost: float
    fidelity: float | None = None


@dataclass(frozen=True)
class SyntheticProblem:
    """A BoTorch test function as a harness :class:`~optuna_mfkd.bench.problems.Problem`.

    Attributes:
        name: first part of the study names.
        variant: second part (``1-level``, ``3-level``, ...).
        function: the BoTorch function (minimised; ``evaluate_true``, no noise).
        params: the search space, one parameter per non-fidelity input.
        levels: the levels, cheapest first; the last is the top level.
        budget_top_evals: the budget in top-level evaluations.
        minimiser: a minimiser of the top level (over ``params``, in their order).
        fidelity_index: the function's fidelity input (``None``: single-fidelity function).
        description: one line for reports.
        methods: the methods this problem runs (by default; :data:`SYNTHETIC_METHODS`).
        extra_methods: methods a run may name that are not run by default (the
            multi-fidelity problems: the peers, an optional extra; they need two levels or more).
    """

    name: str
    variant: str
    function: Any
    params: tuple[Param, ...]
    levels: tuple[Level, ...]
    budget_top_evals: float
    minimiser: tuple[float, ...]
    fidelity_index: int | None = None
    description: str = ""
    methods: tuple[str, ...] = SYNTHETIC_METHODS
    extra_methods: tuple[str, ...] = ()

    direction: ClassVar[str] = "minimize"
    metric: ClassVar[Metric] = LOG10_REGRET
    cost_unit: ClassVar[str] = "top-level evaluations"

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError(f"problem {self.name!r}: no levels.")
        if len(self.levels) > 1 and (self.fidelity_index is None or any(lv.fidelity is None for lv in self.levels)):
            raise ValueError(f"problem {self.name!r}: several levels need the function's fidelity input.")
        if len(self.minimiser) != len(self.params):
            raise ValueError(f"problem {self.name!r}: the minimiser has {len(self.minimiser)} coordinates, "
                             f"the space {len(self.params)} parameters.")
        if not self.budget_top_evals > 0:
            raise ValueError(f"problem {self.name!r}: the budget must be positive, got {self.budget_top_evals!r}.")
        peers = [m for m in self.methods + self.extra_methods if m in PEERS]
        if peers and len(self.levels) < 2:
            raise ValueError(f"problem {self.name!r} has one level; the peers {peers} need two or more.")

    @property
    def top_level(self) -> str:
        return self.levels[-1].name

    def level(self, name: str) -> Level:
        """The level called ``name`` (:class:`ValueError` for an unknown one)."""
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise ValueError(f"problem {self.name!r} has no level {name!r}; levels: {[lv.name for lv in self.levels]}.")

    def evaluate(self, x: Sequence[float], level: str | None = None) -> float:
        """``f(x)`` at ``level`` (default: the top level), ``x`` in the order of ``params``."""
        lv = self.level(level or self.top_level)
        inputs = torch.zeros(self.function.dim, dtype=torch.float64)
        for p, v in zip(self.params, x, strict=True):
            inputs[p.index] = float(v)
        if self.fidelity_index is not None:
            inputs[self.fidelity_index] = float(lv.fidelity)  # type: ignore[arg-type]
        with torch.no_grad():
            return float(self.function.evaluate_true(inputs.unsqueeze(0))[0])

    @functools.cached_property
    def optimum(self) -> float:
        """``f*``: the top level's value at :attr:`minimiser`."""
        return self.evaluate(self.minimiser)

    def log10_regret(self, value: float) -> float:
        """``log10(max(value - f*, 1e-12))`` for a top-level value."""
        return math.log10(max(value - self.optimum, REGRET_FLOOR))

    # ------------------------------------------------------------------ Problem interface
    @property
    def problem_id(self) -> str:
        return f"{self.name}/{self.variant}"

    def method(self, name: str) -> Method:
        if name in PEERS and len(self.levels) < 2:
            raise ValueError(f"method {name!r} is a multi-fidelity peer and needs two levels or more; "
                             f"problem '{self.problem_id}' has one level.")
        return resolve_method(name, f"problem '{self.problem_id}'", self.methods + self.extra_methods)

    def budget(self) -> float:
        return float(self.budget_top_evals)

    def search_space(self) -> dict[str, BaseDistribution]:
        """The Optuna distributions of :attr:`params`, by name (what the objective suggests)."""
        return {p.name: p.distribution() for p in self.params}

    def context(self, method: str) -> MethodContext:
        """The levels, cheapest first; for the peers also the search space and each level's
        cost as its resource (factor 10 per level here, so their rungs are the levels)."""
        names = tuple(lv.name for lv in self.levels)
        return MethodContext(
            single_level=self.top_level,
            low_level=names[0] if len(names) > 1 else None,
            high_level=self.top_level,
            levels=names,
            search_space=self.search_space(),
            level_resources={lv.name: lv.cost for lv in self.levels} if len(names) > 1 else None,
        )

    def objective(self, method: str) -> Callable[[optuna.trial.BaseTrial], float]:
        self.method(method)
        return SyntheticObjective(self)

    def warmup_queue(self, method: str, seed: int) -> list[tuple[dict[str, Any], dict[str, object]]]:
        return []

    def meta(self, method: str) -> dict[str, Any]:
        import botorch

        return {
            "function": type(self.function).__name__,
            "description": self.description,
            "botorch": botorch.__version__,
            "optimum": self.optimum,
            "optimal_value": float(self.function.optimal_value),
            "minimiser": list(self.minimiser),
            "level_costs": {lv.name: lv.cost for lv in self.levels},
            "level_fidelities": {lv.name: lv.fidelity for lv in self.levels},
        }


class SyntheticObjective:
    """The Optuna objective of a :class:`SyntheticProblem`.

    Suggests every parameter, evaluates the function at the trial's level (default: the top
    level) and records the user attributes ``evaluated_at`` (the level), ``cost`` (the
    level's) and, on top-level trials, ``log10_regret`` (the metric; never read by the
    search). Returns the function's value (the study minimises it).
    """

    def __init__(self, problem: SyntheticProblem) -> None:
        self.problem = problem

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        p = self.problem
        x = [param.suggest(trial) for param in p.params]
        level = fidelity_of(trial, default=p.top_level)
        lv = p.level(level)  # type: ignore[arg-type]
        value = p.evaluate(x, lv.name)
        trial.set_user_attr(EVALUATED_AT_ATTR, lv.name)
        trial.set_user_attr(COST_ATTR, lv.cost)
        if lv.name == p.top_level:
            trial.set_user_attr(LOG10_REGRET.attr, p.log10_regret(value))
        return value


# ---------------------------------------------------------------------------- the problems
def _floats(fn: Any, n: int, start: int = 0, prefix: str = "x") -> tuple[Param, ...]:
    bounds = fn.bounds.tolist()
    return tuple(Param(f"{prefix}{i}", start + i, float(bounds[0][start + i]), float(bounds[1][start + i]))
                 for i in range(n))


def _one_level(name: str, fn: Any, params: tuple[Param, ...], budget: float, description: str,
               minimiser: Sequence[float] | None = None) -> SyntheticProblem:
    x_star = tuple(minimiser) if minimiser is not None else tuple(fn.optimizers[0].tolist())
    return SyntheticProblem(name, "1-level", fn, params, (Level("top", 1.0),), budget, x_star, None, description)


def branin() -> SyntheticProblem:
    from botorch.test_functions import Branin

    fn = Branin()
    return _one_level("branin", fn, _floats(fn, 2), 30, "Branin, 2 continuous dimensions")


def hartmann6() -> SyntheticProblem:
    from botorch.test_functions import Hartmann

    fn = Hartmann(dim=6)
    return _one_level("hartmann6", fn, _floats(fn, 6), 50, "Hartmann 6D, continuous")


def ackley10() -> SyntheticProblem:
    from botorch.test_functions import Ackley

    fn = Ackley(dim=10)
    return _one_level("ackley10", fn, _floats(fn, 10), 50, "Ackley 10D on [-32.768, 32.768]^10, continuous")


def ackley_mixed(n_binary: int = 10, seed: int = 0) -> SyntheticProblem:
    from botorch.test_functions.synthetic import AckleyMixed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fn = AckleyMixed(dim=n_binary + 3, randomize_optimum=True)
    params = tuple(Param(f"b{i}", i, choices=(0.0, 1.0)) for i in range(n_binary)) + _floats(fn, 3, n_binary)
    return _one_level("ackley-mixed", fn, params, 50,
                      f"AckleyMixed: {n_binary} binary categorical + 3 continuous dimensions, optimum drawn with seed {seed}")


def augmented_hartmann() -> SyntheticProblem:
    from botorch.test_functions.multi_fidelity import AugmentedHartmann

    fn = AugmentedHartmann()
    x_star = tuple(fn.optimizers[0].tolist()[:6])
    levels = (Level("s0.5", 0.01, 0.5), Level("s0.75", 0.1, 0.75), Level("s1", 1.0, 1.0))
    return SyntheticProblem("augmented-hartmann", "3-level", fn, _floats(fn, 6), levels, 50, x_star, 6,
                            "AugmentedHartmann 6D, fidelity s in {0.5, 0.75, 1}, costs 0.01 / 0.1 / 1", extra_methods=MF_EXTRA_METHODS)


def augmented_branin() -> SyntheticProblem:
    from botorch.test_functions.multi_fidelity import AugmentedBranin

    fn = AugmentedBranin()
    x_star = next(tuple(o[:2]) for o in fn.optimizers.tolist() if o[2] == 1.0)
    levels = (Level("s0.5", 0.1, 0.5), Level("s1", 1.0, 1.0))
    return SyntheticProblem("augmented-branin", "2-level", fn, _floats(fn, 2), levels, 40, x_star, 2,
                            "AugmentedBranin 2D, fidelity s in {0.5, 1}, costs 0.1 / 1", extra_methods=MF_EXTRA_METHODS)


#: The wing weight's minimiser (see the module docstring).
WING_WEIGHT_MINIMISER = (150.0, 220.0, 6.0, 0.0, 16.0, 0.5, 0.18, 2.5, 1700.0, 0.025)


def wing_weight() -> SyntheticProblem:
    from botorch.test_functions.multi_fidelity import WingWeightMultiFidelity

    fn = WingWeightMultiFidelity()
    names = {3: "lf3", 2: "lf2", 1: "lf1", 0: "hf"}
    raw = {i: float(fn.cost(torch.tensor([[0.0] * 10 + [float(i)]], dtype=torch.float64))[0]) for i in names}
    levels = tuple(Level(names[i], raw[i] / raw[0], float(i)) for i in (3, 2, 1, 0))
    return SyntheticProblem("wing-weight", "4-level", fn, _floats(fn, 10), levels, 40, WING_WEIGHT_MINIMISER, 10,
                            "WingWeightMultiFidelity 10D, BoTorch's 4 levels and costs (1 : 10 : 100 : 1000)", extra_methods=MF_EXTRA_METHODS)


#: ``<name>/<variant>`` -> factory, single-fidelity problems first.
SYNTHETIC_PROBLEMS: dict[str, Callable[[], SyntheticProblem]] = {
    "branin/1-level": branin,
    "hartmann6/1-level": hartmann6,
    "ackley10/1-level": ackley10,
    "ackley-mixed/1-level": ackley_mixed,
    "augmented-hartmann/3-level": augmented_hartmann,
    "augmented-branin/2-level": augmented_branin,
    "wing-weight/4-level": wing_weight,
}
