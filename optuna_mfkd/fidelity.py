"""Trial and study helpers for multi-fidelity studies.

A multi-fidelity sampler (:class:`optuna_mfkd.MFKDSampler`) decides the fidelity of each
trial before the objective runs and records it as the user attribute ``"fidelity"``
(plus ``"fidelity_level"``, its 0-based position in the ordered list of levels, cheapest
first). The objective reads it back with :func:`fidelity_of`, reports what the evaluation
cost as the user attribute ``"cost"``, and the study stops on a total budget with
:class:`MaxCostCallback`.

These helpers work with any sampler, so one objective serves every method of a benchmark.
"""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd.log import get_logger

FIDELITY_ATTR = "fidelity"
FIDELITY_LEVEL_ATTR = "fidelity_level"
COST_ATTR = "cost"
#: Study system attribute holding the ordered list of fidelity names of a study.
STUDY_FIDELITIES_ATTR = "mfkd:fidelities"
#: Trial system attribute: when the sampler handed the trial its point (ISO time), so that a
#: duration counts the objective alone, not the sampler's own step.
OBJECTIVE_START_ATTR = "mfkd:objective_start"
#: Study system attribute where :class:`MaxCostCallback` records its budget and cost attribute
#: (``{"budget": float, "cost_attr": str}``), so that the sampler's level choice knows it.
BUDGET_ATTR = "mfkd:budget"

_TrialLike = optuna.trial.BaseTrial | FrozenTrial
_logger = get_logger(__name__)


def fidelity_of(trial: _TrialLike, default: str | None = None) -> str | None:
    """Return the fidelity recorded for ``trial``, or ``default`` when it has none.

    Works inside an objective (``optuna.Trial``), on a ``FrozenTrial`` and on a
    ``FixedTrial``. A trial created by a sampler that is not multi-fidelity carries no
    level, so ``default`` lets one objective serve every sampler.
    """
    value = trial.user_attrs.get(FIDELITY_ATTR)
    return default if value is None else str(value)


def is_top_level(trial: _TrialLike, top_level: str) -> bool:
    """Whether ``trial`` was evaluated at the top level ``top_level`` (the one definition used
    by the summaries, :func:`best_high_fidelity_trial` and the benchmark incumbent).

    A trial is at the top level when its recorded fidelity (:func:`fidelity_of`) is
    ``top_level``, or when it records none: samplers that are not multi-fidelity evaluate
    every trial at the objective's default, the top level. Other attributes an objective
    writes (such as ``evaluated_at``) do not enter the definition.
    """
    return fidelity_of(trial, default=top_level) == top_level


def study_fidelities(study: optuna.Study) -> list[str] | None:
    """The ordered fidelity names a multi-fidelity sampler registered on ``study``.

    ``None`` when no multi-fidelity sampler has run on the study.
    """
    names = study._storage.get_study_system_attrs(study._study_id).get(STUDY_FIDELITIES_ATTR)
    return None if names is None else [str(n) for n in names]


def high_fidelity_trials(
    study: optuna.Study, fidelity: str | None = None, states: Sequence[TrialState] = (TrialState.COMPLETE,)
) -> list[FrozenTrial]:
    """Trials of ``study`` evaluated at the highest fidelity (or at ``fidelity`` if given).

    When ``fidelity`` is ``None`` the highest level is the last of the names registered by
    the sampler (:func:`study_fidelities`); trials without a recorded level (made by a
    single-fidelity sampler) count as highest-level trials.
    """
    if fidelity is None:
        names = study_fidelities(study)
        fidelity = names[-1] if names else None
    trials = study.get_trials(deepcopy=False, states=tuple(states))
    return [t for t in trials if is_top_level(t, fidelity)]


def best_high_fidelity_trial(study: optuna.Study, fidelity: str | None = None) -> FrozenTrial:
    """The best COMPLETE trial at the highest fidelity of ``study``.

    Raises:
        ValueError: if the study is multi-objective or holds no such trial.
    """
    if len(study.directions) != 1:
        raise ValueError("best_high_fidelity_trial: the study must be single-objective.")
    trials = high_fidelity_trials(study, fidelity)
    if not trials:
        level = fidelity or (study_fidelities(study) or ["(highest)"])[-1]
        raise ValueError(f"study {study.study_name!r} has no COMPLETE trial at fidelity {level!r}.")
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(trials, key=lambda t: t.value)


def trial_cost(trial: FrozenTrial, cost_attr: str = COST_ATTR) -> float:
    """The cost user attribute of a trial (0 when it has none or it is not a number)."""
    value = trial.user_attrs.get(cost_attr, 0.0)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def objective_start(trial: FrozenTrial) -> datetime.datetime | None:
    """When ``trial``'s objective got its point (:data:`OBJECTIVE_START_ATTR`, recorded by
    MFKDSampler), else when the trial started."""
    stamp = trial.system_attrs.get(OBJECTIVE_START_ATTR)
    if isinstance(stamp, str):
        try:
            return datetime.datetime.fromisoformat(stamp)
        except ValueError:
            pass
    return trial.datetime_start


def timed_levels(trials: Sequence[FrozenTrial], names: Sequence[str], cost_attr: str = COST_ATTR) -> list[str]:
    """Levels whose COMPLETE trials exist but none carries a numeric ``cost_attr``: their
    cost is learned from durations (:func:`level_costs`)."""
    seen: dict[str, bool] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        level = fidelity_of(t, default=names[-1])
        value = t.user_attrs.get(cost_attr)
        has = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        seen[level] = seen.get(level, False) or has
    return [n for n in names if n in seen and not seen[n]]


def level_costs(
    trials: Sequence[FrozenTrial],
    names: Sequence[str],
    given: Mapping[str, float] | None = None,
    cost_attr: str = COST_ATTR,
) -> dict[str, float]:
    """The cost of one evaluation at each level, learned from finished trials.

    A level named in ``given`` costs that. Otherwise its cost is the median ``cost_attr``
    user attribute of its COMPLETE trials that carry one; a level whose trials carry none
    costs their objective's median duration in seconds (:func:`objective_start` to
    ``datetime_complete``, so the sampler's own step is not counted); a level
    with no such trial costs the dearest cost known (never cheaper than what was measured),
    or 1 when none is known. Trials without a level count at the highest level.

    Raises:
        ValueError: when ``given`` names an unknown level or a cost that is not positive.
    """
    names = [str(n) for n in names]
    given = dict(given or {})
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ValueError(f"costs names unknown fidelities {unknown}; known: {names}.")
    for k, v in given.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"costs[{k!r}] must be a positive finite number, got {v!r}.")
    attr: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        level = fidelity_of(t, default=names[-1])
        if level not in attr:
            continue
        if cost_attr in t.user_attrs:
            value = trial_cost(t, cost_attr)
            if math.isfinite(value) and value > 0:
                attr[level].append(value)
        elif (start := objective_start(t)) is not None and t.datetime_complete is not None:
            seconds[level].append(max((t.datetime_complete - start).total_seconds(), 1e-6))
    out: dict[str, float] = {}
    for n in names:
        if n in given:
            out[n] = float(given[n])
        elif attr[n]:
            out[n] = statistics.median(attr[n])
        elif seconds[n]:
            out[n] = statistics.median(seconds[n])
    fallback = max(out.values(), default=1.0)
    return {n: out.get(n, fallback) for n in names}


def total_cost(study: optuna.Study, cost_attr: str = COST_ATTR) -> float:
    """Sum of the cost user attributes of all finished trials of ``study``.

    COMPLETE, PRUNED and FAILED trials all count: a pruned or failed evaluation was paid for.
    """
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False, states=finished)
    return sum(trial_cost(t, cost_attr) for t in trials)


class MaxCostCallback:
    """Stop ``study.optimize`` once the total cost of finished trials reaches ``budget``.

    The cost of a trial is its ``"cost"`` user attribute (set by the objective, in any
    consistent unit: simulated seconds, wall seconds, GPU hours). The check runs after each
    trial, so the last trial may overshoot the budget, as in NAS-Bench-201's simulated
    searches.

    At its first call it records the budget in the study (:data:`BUDGET_ATTR`): the
    cost-aware level choice of :class:`~optuna_mfkd.MFKDSampler` then keeps the last part of
    the budget for the top level (:func:`optuna_mfkd.gp.fidelity_choice.within_budget`).

    Args:
        budget: total cost at which the study stops; must be positive and finite.
        cost_attr: name of the user attribute holding each trial's cost.
    """

    def __init__(self, budget: float, cost_attr: str = COST_ATTR) -> None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
            raise ValueError(f"budget must be a positive finite number, got {budget!r}.")
        self.budget = float(budget)
        self.cost_attr = cost_attr
        self._warned: set[str] = set()
        self._recorded: set[int] = set()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if study._study_id not in self._recorded:
            record = {"budget": self.budget, "cost_attr": self.cost_attr}
            if study._storage.get_study_system_attrs(study._study_id).get(BUDGET_ATTR) != record:
                study._storage.set_study_system_attr(study._study_id, BUDGET_ATTR, record)
            self._recorded.add(study._study_id)
        self._check_cost(trial)
        if total_cost(study, self.cost_attr) >= self.budget:
            study.stop()

    def _check_cost(self, trial: FrozenTrial) -> None:
        """Warn once when a finished trial has no cost, or one that is not a number: it
        counts 0 toward the budget."""
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            return
        value = trial.user_attrs.get(self.cost_attr)
        if value is None:
            kind, why = "missing", f"trial {trial.number} has no {self.cost_attr!r} user attribute"
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            kind, why = "bad", f"trial {trial.number} has {self.cost_attr!r} = {value!r}, not a finite number"
        else:
            return
        if kind not in self._warned:
            self._warned.add(kind)
            _logger.warning(
                f"MaxCostCallback: {why}; it counts 0 toward the budget of {self.budget:g}. Set "
                f"trial.set_user_attr({self.cost_attr!r}, <number>) in the objective."
            )

    def __repr__(self) -> str:
        return f"MaxCostCallback(budget={self.budget!r}, cost_attr={self.cost_attr!r})"


def record_user_attrs(trial: FrozenTrial, study: optuna.Study, attrs: dict[str, Any]) -> None:
    """Write user attributes to storage *and* to the given ``FrozenTrial`` object.

    ``optuna.Trial`` reads ``user_attrs`` from the ``FrozenTrial`` it cached before
    ``Sampler.before_trial`` ran, so writing only to storage would leave the objective
    reading stale values. Samplers call this from ``before_trial``.
    """
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
        trial.user_attrs[key] = value
