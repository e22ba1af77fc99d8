"""Single-level problems whose space is more than a box: constraints, conditional parameters,
ordinal grids (what a drop-in replacement of Optuna's samplers meets in practice).

Every problem is minimised, has one level (``top``, cost 1 per trial) and reports, like the
BoTorch problems of :mod:`optuna_mfkd.bench.synthetic`, the log10 simple regret of the
incumbent, ``log10(max(f(x_inc) - f*, 1e-12))`` (:data:`~optuna_mfkd.bench.synthetic.LOG10_REGRET`);
the budget is a number of trials (:data:`BUDGET`), in the style of the synthetic problems.

| problem | space | f* | budget |
| --- | --- | --- | --- |
| ``constrained-hartmann/1-level`` | BoTorch's ``ConstrainedHartmann(dim=6)``: ``[0, 1]^6``, feasible iff ``||x||_2 <= 1`` (about 8% of the cube) | -3.32237 (Hartmann 6D's minimiser is feasible) | 40 |
| ``branches/1-level`` | categorical ``branch`` in {branin, hartmann3, rosenbrock}, each with its own parameters, and one shared ``s`` | -0.86278 (branch ``hartmann3``) | 40 |
| ``tabular-grid/1-level`` | 7 ordinal parameters (2 to 8 grid values) + 2 categoricals, 1,411,200 configurations | 5.94019, by enumeration | 40 |

Constraints (``constrained-hartmann``): the objective reports BoTorch's constraint slack
``s(x)`` (feasible when ``s >= 0``) as ``trial.set_constraint("c0", -s(x))`` (Optuna's
convention: feasible when ``<= 0``; GPSampler, TPESampler and MFKDSampler read it, the
random sampler ignores it), and records the user attribute ``feasible``. Infeasible trials
never become the incumbent (:func:`optuna_mfkd.bench.incumbent.incumbent_curve`); a run with
no feasible trial yet has no incumbent.

Conditional space (``branches``): the trial first suggests ``branch`` and ``s`` in
``[0, 1]``, then the branch's own parameters (prefixes ``a_``, ``b_``, ``c_``), so the
parameters every trial shares are ``branch`` and ``s`` alone:

- ``branin``: ``Branin(a_x0, a_x1) / 50 - 0.5`` on ``[-5, 10] x [0, 15]`` (minimum -0.492042);
- ``hartmann3``: ``Hartmann(dim=3)(b_x0, b_x1, b_x2) + 3`` on ``[0, 1]^3`` (minimum -0.86278,
  the global one);
- ``rosenbrock``: ``Rosenbrock(c_x0 + 0.5, c_x1 + 1.7) / 500 - 0.6`` on ``[-2, 2]^2``, i.e. a
  Rosenbrock valley shifted to the minimiser ``(0.5, -0.7)`` (minimum -0.6);

plus ``(s - 0.3)^2`` on every branch. Branin and Hartmann are BoTorch's.

Ordinal grid (``tabular-grid``): shaped like the tabular HPO benchmarks (HPOBench's
tabular MLP / LCBench spaces: a few values per hyperparameter). Parameters, in order:
``log10_lr`` -4 .. -1 step 0.5 (7), ``log2_batch_size`` 4 .. 9 (6), ``width`` 64 .. 512 step 64
(8), ``depth`` 1 .. 5 (5), ``dropout`` 0 .. 0.6 step 0.1 (7), ``log10_weight_decay`` -6 .. -2
(5), ``momentum`` 0.5 .. 0.95 step 0.15 (4), ``optimizer`` in {sgd, adam, adamw},
``activation`` in {relu, tanh}. The value is a deterministic stand-in for a validation error
(%): smooth bowls in the grid positions with interactions (the best learning rate moves with
the batch size and the optimizer, dropout with the width, weight decay with the optimizer,
depth with the activation) plus a small deterministic ripple over the grid positions that
makes it rugged (:func:`tabular_grid_value`). ``f*`` and its minimiser are found by
evaluating every configuration (:func:`tabular_grid_optimum`, vectorised, about a second,
cached).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import optuna
import torch

from optuna_mfkd.bench.incumbent import FEASIBLE_ATTR
from optuna_mfkd.bench.methods import Method, MethodContext
from optuna_mfkd.bench.problems import Metric, resolve_method
from optuna_mfkd.bench.synthetic import LOG10_REGRET, REGRET_FLOOR, SYNTHETIC_METHODS, Level
from optuna_mfkd.fidelity import COST_ATTR
from optuna_mfkd.nasbench201.tabular import EVALUATED_AT_ATTR

Evaluation = tuple[float, Mapping[str, float]]
#: The budget of every structured problem, in trials: 40, as ``augmented-branin`` and
#: ``wing-weight`` (``hartmann6`` has 50); GPSampler's and MFKDSampler's step grows with the
#: trials, and 40 lets 30 seeds of the three problems x four methods run in about an hour on
#: two shared cores.
BUDGET = 40


@dataclass(frozen=True)
class StructuredProblem:
    """A single-level problem given by a suggest function and a function of its parameters.

    Attributes:
        name: first part of the study names.
        suggest: suggests the parameters of a trial and returns them (it may branch).
        evaluate: ``params -> (value, constraints)``; constraints by name, feasible when
            ``<= 0`` (empty: an unconstrained problem).
        optimum: ``f*``, the smallest feasible value.
        minimiser: parameters reaching it (for tests and the record).
        budget_top_evals: the budget in trials.
        description: one line for reports.
        methods: the methods this problem runs.
    """

    name: str
    suggest: Callable[[optuna.trial.BaseTrial], dict[str, Any]]
    evaluate: Callable[[Mapping[str, Any]], Evaluation]
    optimum: float
    minimiser: Mapping[str, Any]
    budget_top_evals: float
    description: str = ""
    methods: tuple[str, ...] = SYNTHETIC_METHODS
    facts: Mapping[str, Any] = field(default_factory=dict)

    variant: ClassVar[str] = "1-level"
    direction: ClassVar[str] = "minimize"
    metric: ClassVar[Metric] = LOG10_REGRET
    cost_unit: ClassVar[str] = "top-level evaluations"
    levels: ClassVar[tuple[Level, ...]] = (Level("top", 1.0),)
    top_level: ClassVar[str] = "top"

    @property
    def problem_id(self) -> str:
        return f"{self.name}/{self.variant}"

    def log10_regret(self, value: float) -> float:
        """``log10(max(value - f*, 1e-12))``."""
        return math.log10(max(value - self.optimum, REGRET_FLOOR))

    def method(self, name: str) -> Method:
        return resolve_method(name, f"problem '{self.problem_id}'", self.methods)

    def budget(self) -> float:
        return float(self.budget_top_evals)

    def context(self, method: str) -> MethodContext:
        return MethodContext(single_level=self.top_level, high_level=self.top_level, levels=(self.top_level,))

    def objective(self, method: str) -> Callable[[optuna.trial.BaseTrial], float]:
        self.method(method)
        return StructuredObjective(self)

    def warmup_queue(self, method: str, seed: int) -> list[tuple[dict[str, Any], dict[str, object]]]:
        return []

    def meta(self, method: str) -> dict[str, Any]:
        import botorch

        return {"description": self.description, "botorch": botorch.__version__, "optimum": self.optimum,
                "minimiser": dict(self.minimiser), **self.facts}


class StructuredObjective:
    """The Optuna objective of a :class:`StructuredProblem`.

    Suggests the parameters, evaluates the function, reports each constraint with
    ``trial.set_constraint`` and records the user attributes ``evaluated_at`` (``top``),
    ``cost`` (1), ``log10_regret`` (the metric, never read by the search) and, on a
    constrained problem, ``feasible``. Returns the function's value.
    """

    def __init__(self, problem: StructuredProblem) -> None:
        self.problem = problem

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        p = self.problem
        value, constraints = p.evaluate(p.suggest(trial))
        for key, c in constraints.items():
            trial.set_constraint(key, float(c))
        trial.set_user_attr(EVALUATED_AT_ATTR, p.top_level)
        trial.set_user_attr(COST_ATTR, 1.0)
        trial.set_user_attr(LOG10_REGRET.attr, p.log10_regret(value))
        if constraints:
            trial.set_user_attr(FEASIBLE_ATTR, all(c <= 0 for c in constraints.values()))
        return value


def _torch_eval(fn: Any, x: Sequence[float]) -> float:
    with torch.no_grad():
        return float(fn.evaluate_true(torch.tensor([list(x)], dtype=torch.float64))[0])


# ---------------------------------------------------------------- constrained Hartmann 6D
HARTMANN_PARAMS: tuple[str, ...] = tuple(f"x{i}" for i in range(6))


@functools.lru_cache(maxsize=1)
def _constrained_hartmann_function() -> Any:
    from botorch.test_functions.synthetic import ConstrainedHartmann

    return ConstrainedHartmann(dim=6)


def suggest_hartmann(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """``x0 .. x5`` in ``[0, 1]``."""
    return {n: trial.suggest_float(n, 0.0, 1.0) for n in HARTMANN_PARAMS}


def constrained_hartmann_value(params: Mapping[str, Any]) -> Evaluation:
    """Hartmann 6D and ``c0 = -slack = ||x|| - 1`` (feasible when ``<= 0``)."""
    fn = _constrained_hartmann_function()
    x = torch.tensor([[float(params[n]) for n in HARTMANN_PARAMS]], dtype=torch.float64)
    with torch.no_grad():
        value = float(fn.evaluate_true(x)[0])
        slack = fn.evaluate_slack_true(x)[0].tolist()
    return value, {f"c{i}": -float(s) for i, s in enumerate(slack)}


def constrained_hartmann() -> StructuredProblem:
    fn = _constrained_hartmann_function()
    x_star = dict(zip(HARTMANN_PARAMS, fn.optimizers[0].tolist(), strict=True))
    return StructuredProblem(
        "constrained-hartmann", suggest_hartmann, constrained_hartmann_value, constrained_hartmann_value(x_star)[0],
        x_star, BUDGET, "ConstrainedHartmann 6D (BoTorch): Hartmann 6D on [0, 1]^6 subject to ||x||_2 <= 1",
        facts={"function": "ConstrainedHartmann", "constraints": "c0 = ||x||_2 - 1 <= 0"})


# ---------------------------------------------------------------- conditional branches
BRANCHES: tuple[str, ...] = ("branin", "hartmann3", "rosenbrock")
#: Offsets and scales of the branches (see the module docstring).
ROSENBROCK_SHIFT: tuple[float, float] = (0.5, -0.7)


@functools.lru_cache(maxsize=1)
def _branch_functions() -> tuple[Any, Any]:
    from botorch.test_functions import Branin, Hartmann

    return Branin(), Hartmann(dim=3)


def _rosenbrock(z0: float, z1: float) -> float:
    return 100.0 * (z1 - z0 * z0) ** 2 + (1.0 - z0) ** 2


def branch_value(params: Mapping[str, Any]) -> float:
    """The value of ``branches`` at ``params`` (the branch's own parameters and ``s``)."""
    branin, hartmann3 = _branch_functions()
    branch = params["branch"]
    shared = (float(params["s"]) - 0.3) ** 2
    if branch == "branin":
        return _torch_eval(branin, [params["a_x0"], params["a_x1"]]) / 50.0 - 0.5 + shared
    if branch == "hartmann3":
        return _torch_eval(hartmann3, [params[f"b_x{i}"] for i in range(3)]) + 3.0 + shared
    if branch == "rosenbrock":
        z0 = float(params["c_x0"]) - ROSENBROCK_SHIFT[0] + 1.0
        z1 = float(params["c_x1"]) - ROSENBROCK_SHIFT[1] + 1.0
        return _rosenbrock(z0, z1) / 500.0 - 0.6 + shared
    raise ValueError(f"unknown branch {branch!r}; branches: {list(BRANCHES)}.")


def suggest_branches(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """``branch`` and ``s``, then the branch's own parameters."""
    branch = trial.suggest_categorical("branch", list(BRANCHES))
    params: dict[str, Any] = {"branch": branch, "s": trial.suggest_float("s", 0.0, 1.0)}
    if branch == "branin":
        params["a_x0"] = trial.suggest_float("a_x0", -5.0, 10.0)
        params["a_x1"] = trial.suggest_float("a_x1", 0.0, 15.0)
    elif branch == "hartmann3":
        for i in range(3):
            params[f"b_x{i}"] = trial.suggest_float(f"b_x{i}", 0.0, 1.0)
    else:
        params["c_x0"] = trial.suggest_float("c_x0", -2.0, 2.0)
        params["c_x1"] = trial.suggest_float("c_x1", -2.0, 2.0)
    return params


def branches_value(params: Mapping[str, Any]) -> Evaluation:
    """:func:`branch_value`, no constraints."""
    return branch_value(params), {}


def branches() -> StructuredProblem:
    _, hartmann3 = _branch_functions()
    x_star = {"branch": "hartmann3", "s": 0.3,
              **{f"b_x{i}": v for i, v in enumerate(hartmann3.optimizers[0].tolist())}}
    return StructuredProblem(
        "branches", suggest_branches, branches_value, branch_value(x_star), x_star, BUDGET,
        "conditional: branch in {Branin 2D, Hartmann 3D, shifted Rosenbrock 2D}, own parameters each, "
        "one shared",
        facts={"branches": list(BRANCHES)})


# ---------------------------------------------------------------- ordinal grid (tabular HPO)
@dataclass(frozen=True)
class GridParam:
    """An ordered grid parameter: ``int`` (``low + k * step``), ``float`` (same, floats) or
    ``categorical`` (``choices``)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float = 1.0
    choices: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.choices) if self.kind == "categorical" else int(round((self.high - self.low) / self.step)) + 1

    def value(self, k: int) -> Any:
        if self.kind == "categorical":
            return self.choices[k]
        v = self.low + k * self.step
        return int(round(v)) if self.kind == "int" else round(v, 10)

    def index(self, v: Any) -> int:
        if self.kind == "categorical":
            return self.choices.index(v)
        return int(round((float(v) - self.low) / self.step))

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step))
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)


GRID: tuple[GridParam, ...] = (
    GridParam("log10_lr", "float", -4.0, -1.0, 0.5),
    GridParam("log2_batch_size", "int", 4, 9, 1),
    GridParam("width", "int", 64, 512, 64),
    GridParam("depth", "int", 1, 5, 1),
    GridParam("dropout", "float", 0.0, 0.6, 0.1),
    GridParam("log10_weight_decay", "float", -6.0, -2.0, 1.0),
    GridParam("momentum", "float", 0.5, 0.95, 0.15),
    GridParam("optimizer", "categorical", choices=("sgd", "adam", "adamw")),
    GridParam("activation", "categorical", choices=("relu", "tanh")),
)


def tabular_grid_value(idx: Sequence[Any]) -> Any:
    """The validation-error stand-in at grid positions ``idx`` (one per :data:`GRID`
    parameter, in order; numpy arrays broadcast, so the whole grid is one call).

    Positions are scaled to ``[0, 1]`` (``u``); the optimizer (0 sgd, 1 adam, 2 adamw) and the
    activation (0 relu, 1 tanh) shift the optima of the others.
    """
    lr, bs, width, depth, drop, wd, mom, opt, act = (np.asarray(k, dtype=float) for k in idx)
    u = [np.asarray(k, dtype=float) / (p.size - 1) for k, p in zip(idx, GRID, strict=True)]
    u_lr, u_bs, u_w, u_d, u_drop, u_wd, u_mom = u[:7]
    sgd, adam, adamw = (opt == 0).astype(float), (opt == 1).astype(float), (opt == 2).astype(float)
    tanh = (act == 1).astype(float)
    # best learning rate: higher for larger batches, lower for the adaptive optimizers
    lr_opt = 0.55 + 0.3 * (u_bs - 0.5) - 0.3 * (adam + adamw)
    err = 6.0 + 9.0 * (u_lr - lr_opt) ** 2 / (0.25 + 0.5 * u_bs)
    # capacity: width and depth help up to a point, depth hurts tanh nets more
    err = err + 2.5 * (1.0 - u_w) ** 2 + 1.5 * (u_d - 0.55 + 0.25 * tanh) ** 2
    # dropout pays on wide nets only
    err = err + 3.0 * (u_drop - 0.5 * u_w) ** 2
    # weight decay: adamw likes more, adam less
    err = err + 2.0 * (u_wd - 0.5 - 0.3 * adamw + 0.3 * adam) ** 2
    # momentum matters for sgd only
    err = err + sgd * (0.6 + 2.0 * (u_mom - 0.9) ** 2)
    err = err + 0.4 * adam + 0.3 * tanh
    # large batches cost a little at the same number of epochs
    err = err + 0.8 * u_bs ** 2
    # rugged part: a deterministic ripple over the grid positions
    phase = 1.3 * lr + 2.1 * bs + 0.7 * width + 1.9 * depth + 1.1 * drop + 2.9 * wd + 0.5 * mom + 3.7 * opt + 1.7 * act
    err = err + 0.25 * np.sin(phase) * np.cos(0.9 * lr * bs + 0.6 * width * depth + 0.4 * drop * wd)
    return err


@functools.lru_cache(maxsize=1)
def tabular_grid_optimum() -> tuple[float, tuple[int, ...]]:
    """``(f*, grid positions of its minimiser)`` by evaluating every configuration."""
    shape = tuple(p.size for p in GRID)
    axes = [np.arange(n).reshape([n if i == j else 1 for j in range(len(shape))]) for i, n in enumerate(shape)]
    values = np.broadcast_to(tabular_grid_value(axes), shape)
    flat = int(np.argmin(values))
    return float(values.reshape(-1)[flat]), tuple(int(k) for k in np.unravel_index(flat, shape))


def suggest_grid(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Every :data:`GRID` parameter, in order."""
    return {p.name: p.suggest(trial) for p in GRID}


def grid_value(params: Mapping[str, Any]) -> Evaluation:
    """:func:`tabular_grid_value` at the grid positions of ``params``, no constraints."""
    return float(tabular_grid_value([p.index(params[p.name]) for p in GRID])), {}


def tabular_grid() -> StructuredProblem:
    optimum, arg = tabular_grid_optimum()
    x_star = {p.name: p.value(k) for p, k in zip(GRID, arg, strict=True)}
    size = math.prod(p.size for p in GRID)
    return StructuredProblem(
        "tabular-grid", suggest_grid, grid_value, optimum, x_star, BUDGET,
        f"ordinal grid shaped like tabular HPO benchmarks: 7 ordered + 2 categorical parameters, "
        f"{size:,} configurations",
        facts={"grid_size": size, "grid": {p.name: [p.value(k) for k in range(p.size)] for p in GRID}})


#: ``<name>/<variant>`` -> factory.
STRUCTURED_PROBLEMS: dict[str, Callable[[], StructuredProblem]] = {
    "constrained-hartmann/1-level": constrained_hartmann,
    "branches/1-level": branches,
    "tabular-grid/1-level": tabular_grid,
}
