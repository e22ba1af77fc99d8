"""Learning-curve problems: a configuration trained step by step, reporting at each step.

A :class:`CurveProblem` is what the step-mode benchmark (``benchmarks/step_mode.py``) runs:
Optuna's pruning workflow (``trial.report(value, step)``, ``trial.should_prune()``) on a
problem whose value at every reported step is known (a function of the configuration and
the step, or a table of recorded training runs). Values are minimised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial.suggest_*`` for the distribution ``dist`` (float, int or categorical)."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"distribution of {name!r}: {type(dist).__name__} is not supported")


class CurveProblem:
    """A search space, the steps a run reports at, and the value and cost of every step.

    Attributes:
        name: the problem's id.
        distributions: the search space (Optuna distributions, suggested in this order).
        report_steps: the increasing steps a run reports at; the last one is the final step.
        rungs: the steps used as levels (``MFKDSampler(steps=rungs)``) and as the pruners'
            rungs: a subset of ``report_steps`` that ends with the final step.
        optimum: the best final value (for regret); ``None`` where unknown.
    """

    name: str
    distributions: dict[str, BaseDistribution]
    report_steps: tuple[int, ...]
    rungs: tuple[int, ...]
    optimum: float | None = None

    @property
    def final_step(self) -> int:
        """The last reported step: a run that reaches it is complete."""
        return self.report_steps[-1]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's configuration, suggested from :attr:`distributions` in order."""
        return {name: suggest(trial, name, dist) for name, dist in self.distributions.items()}

    def value(self, params: Mapping[str, Any], step: int) -> float:
        """The value (minimised) a run of ``params`` reports at ``step``."""
        raise NotImplementedError

    def cost(self, params: Mapping[str, Any], step: int) -> float:
        """The cost of training ``params`` from scratch up to ``step`` (default: the steps)."""
        return float(step)


class FunctionCurve(CurveProblem):
    """BoTorch's multi-fidelity test functions read as learning curves: at step ``k`` of ``K``
    a run reports ``f(x, s = k / K)``, the fidelity ``s`` playing the part of training
    progress; the parameters ``x0 .. x{d-1}`` are in ``[0, 1]`` (scaled to the function's
    bounds).

    Args:
        name: ``"augmented-hartmann"`` (6-D, optimum -3.32237) or ``"augmented-branin"``
            (2-D, optimum 0.397887).
        steps: ``K``, the number of reported steps.
        rungs: the rungs (default: powers of 3 up to ``K``).
    """

    FUNCTIONS = {
        "augmented-hartmann": ("AugmentedHartmann", 6, -3.32237),
        "augmented-branin": ("AugmentedBranin", 2, 0.397887),
    }

    def __init__(self, name: str, steps: int = 9, rungs: tuple[int, ...] | None = None) -> None:
        if name not in self.FUNCTIONS:
            raise ValueError(f"function curve {name!r}: choose one of {sorted(self.FUNCTIONS)}")
        import torch
        from botorch.test_functions import multi_fidelity

        cls, dims, optimum = self.FUNCTIONS[name]
        self._torch = torch
        self._f = getattr(multi_fidelity, cls)()
        self._bounds = self._f.bounds.numpy()[:, :-1]
        self.name = name
        self.distributions = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(dims)}
        self.report_steps = tuple(range(1, steps + 1))
        self.rungs = rungs or _powers_of_three(steps)
        self.optimum = optimum

    def value(self, params: Mapping[str, Any], step: int) -> float:
        u = [float(params[n]) for n in self.distributions]
        x = [lo + v * (hi - lo) for v, lo, hi in zip(u, *self._bounds)]
        s = step / self.final_step
        return float(self._f(self._torch.tensor([[*x, s]], dtype=self._torch.float64)))


class NB201Curve(CurveProblem):
    """NAS-Bench-201 as two rungs of one training run: the 12-epoch validation error at step
    12 and the 200-epoch one at step 200 (errors in percent, ``100 - accuracy``); continuing
    a run from step 12 to 200 costs the 188 epochs left (a run to the end costs 200 epochs,
    not 212). The table has no per-epoch curves, so nothing is reported in between.

    Args:
        table: an :class:`~optuna_mfkd.nasbench201.table.NB201Table`.
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"imagenet16"``.
        seconds: cost in the table's training seconds (epochs x seconds per epoch of the
            cell) instead of epochs.
    """

    def __init__(self, table: Any, dataset: str = "cifar10", seconds: bool = False) -> None:
        from optuna_mfkd.nasbench201.space import EDGE_PARAM_NAMES, OPS

        self._table, self._dataset, self._seconds = table, dataset, seconds
        self.name = f"nb201-{dataset}"
        self.distributions = {n: CategoricalDistribution(OPS) for n in EDGE_PARAM_NAMES}
        self.report_steps = self.rungs = (12, 200)
        self.optimum = float(100.0 - table.column(dataset, "val", 200).max())

    def _index(self, params: Mapping[str, Any]) -> int:
        from optuna_mfkd.nasbench201.space import architecture_from_params

        return architecture_from_params(dict(params)).index

    def value(self, params: Mapping[str, Any], step: int) -> float:
        if step not in self.report_steps:
            raise ValueError(
                f"step {step}: NAS-Bench-201 curves report at steps {self.report_steps} only"
            )
        return float(100.0 - self._table.val_acc(self._dataset, self._index(params), epochs=step))

    def cost(self, params: Mapping[str, Any], step: int) -> float:
        scale = (
            self._table.seconds_per_epoch(self._dataset, self._index(params))
            if self._seconds
            else 1.0
        )
        return float(step) * scale


def _powers_of_three(steps: int) -> tuple[int, ...]:
    """``1, 3, 9, ...`` below ``steps``, then ``steps``."""
    rungs = [3**k for k in range(steps.bit_length()) if 3**k < steps]
    return (*rungs, steps)
