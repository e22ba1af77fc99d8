"""Tabular NAS-Bench-201 objectives for Optuna (simulated search: nothing is trained).

The fidelity of a trial (:func:`optuna_mfkd.fidelity_of`) selects what is looked up and what
it costs. With the default levels

- ``"12ep"``: the 12-epoch validation accuracy, costing ``12 x`` the cell's seconds per epoch;
- ``"200ep"``: the 200-epoch validation accuracy, costing ``200 x`` the seconds per epoch.

Every trial records the user attributes ``cost`` (simulated seconds), ``nb201_index``,
``arch_str``, ``val_acc_<E>ep`` for the values looked up, ``evaluated_at`` (the highest level
evaluated), and ``test_acc_200ep`` (the cell's
200-epoch test accuracy: reported, never used by the search). The validation value is
reported as an intermediate value at its epoch, so Optuna pruners work.

Two-rung mode (``promotion=("12ep", "200ep")``, for Hyperband-style pruners): report the
12-epoch value at step 12 and call ``should_prune()`` there only; a pruned trial costs the
12-epoch run, a promoted one the 12-epoch run plus the separate 200-epoch run, and returns
the 200-epoch value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import optuna

from optuna_mfkd.datasets import canonical_dataset
from optuna_mfkd.fidelity import COST_ATTR, fidelity_of
from optuna_mfkd.nasbench201.space import Architecture, suggest_architecture
from optuna_mfkd.nasbench201.table import NB201Table

#: User attribute naming the highest level a trial was evaluated at.
EVALUATED_AT_ATTR = "evaluated_at"
#: The default levels: name -> training epochs of the NB201 schedule looked up.
DEFAULT_LEVELS: dict[str, int] = {"12ep": 12, "200ep": 200}


@dataclass(frozen=True)
class ScoreLevel:
    """A level whose values come from precomputed scores instead of the table.

    Used for cached low-fidelity evaluations (e.g. one distillation epoch on a data subset).

    Attributes:
        scores: NB201 index -> score (only these cells can be evaluated at this level).
        cost_epochs: cost in epoch-equivalents of the table's per-epoch seconds
            (``cost = cost_epochs x seconds_per_epoch(cell)``).
        step: the step at which the score is reported.
        name: the user attribute holding the score.
    """

    scores: Mapping[int, float]
    cost_epochs: float
    step: int = 1
    name: str = "low_fidelity_score"
    extra: Mapping[str, object] = field(default_factory=dict)


Level = int | ScoreLevel


class TabularObjective:
    """Objective of a simulated NB201 search (see the module docstring).

    Args:
        table: the NB201 table (:func:`optuna_mfkd.nasbench201.table.load_table`).
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"imagenet16"``.
        levels: fidelity name -> epochs of the NB201 schedule (12 or 200), or a
            :class:`ScoreLevel`.
        default_level: the level of trials that carry no fidelity (single-fidelity samplers);
            defaults to the last (highest) level.
        promotion: ``(low, high)`` level names for the two-rung Hyperband mode.
        on_evaluate: optional ``callback(trial, arch, level)`` after each evaluation.
    """

    def __init__(
        self,
        table: NB201Table,
        dataset: str,
        levels: Mapping[str, Level] | None = None,
        default_level: str | None = None,
        promotion: tuple[str, str] | None = None,
        on_evaluate: Callable[[optuna.trial.BaseTrial, Architecture, str], None] | None = None,
    ) -> None:
        self.table = table
        self.dataset = canonical_dataset(dataset)
        self.levels: dict[str, Level] = dict(DEFAULT_LEVELS if levels is None else levels)
        if not self.levels:
            raise ValueError("levels must name at least one fidelity level.")
        for name, lv in self.levels.items():
            if not isinstance(lv, ScoreLevel) and lv not in (12, 200):
                raise ValueError(f"level {name!r}: the table holds 12 or 200 epochs, got {lv!r}.")
        self.default_level = default_level if default_level is not None else list(self.levels)[-1]
        if self.default_level not in self.levels:
            raise ValueError(f"default_level {self.default_level!r} is not one of {list(self.levels)}.")
        if promotion is not None:
            low, high = promotion
            if low not in self.levels or high not in self.levels:
                raise ValueError(f"promotion levels {promotion!r} must be among {list(self.levels)}.")
            if isinstance(self.levels[low], ScoreLevel) or isinstance(self.levels[high], ScoreLevel):
                raise ValueError("promotion works on table levels (epochs) only.")
        self.promotion = promotion
        self.on_evaluate = on_evaluate

    def level_cost(self, level: str, index: int) -> float:
        """Simulated seconds of evaluating cell ``index`` at ``level``."""
        lv = self.levels[level]
        epochs = lv.cost_epochs if isinstance(lv, ScoreLevel) else lv
        return float(epochs) * self.table.seconds_per_epoch(self.dataset, index)

    def _lookup(self, level: str, index: int) -> tuple[float, int, str]:
        lv = self.levels[level]
        if isinstance(lv, ScoreLevel):
            if index not in lv.scores:
                raise ValueError(
                    f"level {level!r} has no score for NB201 cell {index}; it holds {len(lv.scores)} cells."
                )
            return float(lv.scores[index]), lv.step, lv.name
        return self.table.val_acc(self.dataset, index, lv), lv, f"val_acc_{lv}ep"

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        arch = suggest_architecture(trial)
        index = arch.index
        trial.set_user_attr("nb201_index", index)
        trial.set_user_attr("arch_str", arch.arch_str)
        trial.set_user_attr("test_acc_200ep", self.table.test_acc(self.dataset, index, 200))
        if self.promotion is not None and fidelity_of(trial) is None:
            return self._two_rung(trial, arch)
        level = fidelity_of(trial, default=self.default_level)
        if level not in self.levels:
            raise ValueError(f"trial {trial.number}: unknown fidelity {level!r}; levels are {list(self.levels)}.")
        value, step, attr = self._lookup(level, index)
        trial.set_user_attr(attr, value)
        trial.set_user_attr(EVALUATED_AT_ATTR, level)
        lv = self.levels[level]
        if isinstance(lv, ScoreLevel):
            for k, v in lv.extra.items():
                trial.set_user_attr(k, v)
        trial.set_user_attr(COST_ATTR, self.level_cost(level, index))
        trial.report(value, step)
        if self.on_evaluate is not None:
            self.on_evaluate(trial, arch, level)
        return value

    def _two_rung(self, trial: optuna.trial.BaseTrial, arch: Architecture) -> float:
        low, high = self.promotion  # type: ignore[misc]
        index = arch.index
        value, step, attr = self._lookup(low, index)
        trial.set_user_attr(attr, value)
        trial.set_user_attr(COST_ATTR, self.level_cost(low, index))
        trial.report(value, step)
        trial.set_user_attr(EVALUATED_AT_ATTR, low)
        if trial.should_prune():
            if self.on_evaluate is not None:
                self.on_evaluate(trial, arch, low)
            raise optuna.TrialPruned()
        value, step, attr = self._lookup(high, index)
        trial.set_user_attr(attr, value)
        trial.set_user_attr(EVALUATED_AT_ATTR, high)
        trial.set_user_attr(COST_ATTR, self.level_cost(low, index) + self.level_cost(high, index))
        trial.report(value, step)
        if self.on_evaluate is not None:
            self.on_evaluate(trial, arch, high)
        return value
