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
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


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
