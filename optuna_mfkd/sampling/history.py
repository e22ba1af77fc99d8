"""The one place where the sampler reads and writes the study.

A :class:`History` is one scan of a study's COMPLETE and RUNNING trials, taken once per
sampler hook: the level counts, the observations, the running points, the costs and the
intersection search space all come from it. The writes (a trial's level, its point and how
it was chosen, the study's levels, the heartbeat) are functions of this module too, so the
Optuna private names the sampler needs are used here and nowhere else in it:

- ``Study._get_trials`` (a scan without copies; ``use_cache=False`` so other processes'
  trials are seen), ``Study._storage``, ``Study._study_id``, ``Study._is_multi_objective``,
  ``FrozenTrial._trial_id``, ``BaseDistribution._contains``;
- ``optuna.storages._heartbeat.BaseHeartbeat`` and ``is_heartbeat_enabled``;
- ``optuna.samplers._base._process_constraints_after_trial`` (``constraints_func``, as
  Optuna's own samplers store it) (:data:`OPTUNA_PRIVATE_NAMES`).

``docs/architecture.md`` lists them with the Optuna versions checked, and
``tests/test_sampling_history.py`` fails when one of them disappears.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._base import _process_constraints_after_trial
from optuna.search_space import intersection_search_space
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd.fidelity import (
    BUDGET_ATTR,
    OBJECTIVE_START_ATTR,
    STUDY_FIDELITIES_ATTR,
    fidelity_of,
    level_costs,
    record_user_attrs,
    timed_levels,
    trial_cost,
)

#: Trial system attribute holding the point a trial was given (Optuna internal repr).
POINT_ATTR = "mfkd:point"
#: Trial system attribute saying how the point was chosen ("random", "fallback", or the acquisition).
HOW_ATTR = "mfkd:how"
#: Trial system attribute holding the hyperparameters fitted for the trial's step:
#: ``{model key: {"n": observations of the fit, "state": {name: nested list}}}``; a new sampler
#: on the study (another worker, a resumed process) starts from the latest instead of the defaults.
FIT_ATTR = "mfkd:fit"
#: A stored fit: the observations it was made on and its hyperparameters (nested lists).
StoredFit = tuple[int, dict[str, Any]]

class Observations(NamedTuple):
    """Observations of one search space: internal rows ``X`` ``(n, p)``, ``levels`` ``(n,)``,
    values ``y`` ``(n,)`` (larger is better), the running points as ``(level, internal row)``,
    and the constraint values ``(n, k)`` of the observed rows (``c <= 0`` is feasible; NaN
    where a trial has none), or ``None`` when no trial has constraints."""

    X: np.ndarray
    levels: np.ndarray
    y: np.ndarray
    running: list[tuple[int, np.ndarray]]
    constraints: np.ndarray | None = None


#: Every private name of Optuna the sampler uses (all of them here), checked to exist by
#: ``tests/test_sampling_history.py``: (owner, attribute).
OPTUNA_PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("optuna.study.Study", "_get_trials"),
    ("optuna.study.Study", "_is_multi_objective"),
    ("optuna.study.Study", "_storage"),
    ("optuna.study.Study", "_study_id"),
    ("optuna.trial.FrozenTrial", "_trial_id"),
    ("optuna.distributions.BaseDistribution", "_contains"),
    ("optuna.storages._heartbeat", "BaseHeartbeat"),
    ("optuna.storages._heartbeat", "is_heartbeat_enabled"),
    ("optuna.samplers._base", "_process_constraints_after_trial"),
)


def distribution_contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) lies in ``distribution``."""
    return distribution._contains(distribution.to_internal_repr(value))


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether ``study`` has more than one objective."""
    return study._is_multi_objective()


def require_single_objective(study: optuna.Study) -> None:
    """Raise a one-line ``ValueError`` for a multi-objective study (as Optuna's samplers do)."""
    if study._is_multi_objective():
        raise ValueError(f"MFKDSampler supports single-objective studies only; study {study.study_name!r} "
                         f"has {len(study.directions)} objectives.")


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of ``trial`` (unique across the studies of one storage)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return study._study_id


class History:
    """One scan of ``study``'s COMPLETE and RUNNING trials (and PRUNED ones with
    ``with_pruned``), ``trial`` left out.

    Args:
        study: the study.
        trial: the trial being sampled (not part of its own history), or ``None``.
        names: the sampler's level names, cheapest first; a trial without a level counts
            at the top level, one with an unknown level is left out of the observations.
        with_pruned: scan PRUNED trials too (their reported steps are observations in the
            step mode, :meth:`rung_observations`).
    """

    def __init__(
        self, study: optuna.Study, trial: FrozenTrial | None, names: Sequence[str], with_pruned: bool = False
    ) -> None:
        states = (TrialState.COMPLETE, TrialState.RUNNING, *((TrialState.PRUNED,) if with_pruned else ()))
        scanned = study._get_trials(deepcopy=False, use_cache=False)
        others = [t for t in scanned if trial is None or t.number != trial.number]
        self.trials: list[FrozenTrial] = [t for t in others if t.state in states]
        self.names = list(names)
        self.sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        self._space: dict[str, BaseDistribution] | None = None
        self._budget: dict[str, Any] | None = study._storage.get_study_system_attrs(study._study_id).get(BUDGET_ATTR)
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        cost_attr = self._budget["cost_attr"] if self._budget else ""
        self._paid = sum(trial_cost(t, cost_attr) for t in others if t.state in finished) if self._budget else 0.0

    @property
    def complete(self) -> list[FrozenTrial]:
        """The COMPLETE trials."""
        return [t for t in self.trials if t.state == TrialState.COMPLETE]

    def level_of(self, trial: FrozenTrial) -> int | None:
        """Position of ``trial``'s level, ``None`` when it has none or an unknown one."""
        name = fidelity_of(trial)
        return self.names.index(name) if name in self.names else None

    def counts(self) -> list[int]:
        """Trials per level (COMPLETE and RUNNING; trials without a known level not counted)."""
        counts = [0] * len(self.names)
        for t in self.trials:
            level = self.level_of(t)
            if level is not None:
                counts[level] += 1
        return counts

    def seen_levels(self) -> set[str]:
        """Names of the levels with a COMPLETE trial (a trial without a level is at the top)."""
        return {fidelity_of(t, default=self.names[-1]) for t in self.complete}

    def costs(self, given: Mapping[str, float]) -> dict[str, float]:
        """Cost of one evaluation per level (:func:`optuna_mfkd.fidelity.level_costs`)."""
        return level_costs(self.complete, self.names, given)

    def budget(self, costs: Mapping[str, float]) -> tuple[float, float] | None:
        """``(budget, spent)`` when a :class:`~optuna_mfkd.fidelity.MaxCostCallback` recorded a
        budget in the study, else ``None``: ``spent`` is the cost of the finished trials
        (COMPLETE, PRUNED, FAIL) plus one evaluation of its level per RUNNING trial (their
        cost is committed), with ``costs`` the cost per level (:meth:`costs`)."""
        if not self._budget:
            return None
        running = sum(
            costs[self.names[lv]] for t in self.trials
            if t.state == TrialState.RUNNING and (lv := self.level_of(t)) is not None
        )
        return float(self._budget["budget"]), self._paid + running

    def timed_levels(self, given: Mapping[str, float]) -> list[str]:
        """Levels not in ``given`` whose trials carry no numeric ``cost`` attribute."""
        return [n for n in timed_levels(self.complete, self.names) if n not in given]

    def search_space(self) -> dict[str, BaseDistribution]:
        """The intersection search space of the COMPLETE trials, without single-valued
        parameters (as Optuna's ``IntersectionSearchSpace``, sorted by name)."""
        if self._space is None:
            space = intersection_search_space(self.complete)
            self._space = {name: dist for name, dist in space.items() if not dist.single()}
        return dict(self._space)

    def space_is_whole(self) -> bool:
        """Whether the search space holds every parameter of every COMPLETE trial (besides
        single-valued ones), so that a point of the space is a whole trial's point. In a
        conditional (define-by-run) space it is not: two trials with equal values in the
        space may differ in their other parameters."""
        space = self.search_space()
        return all(
            name in space or dist.single() for t in self.complete for name, dist in t.distributions.items()
        )

    def observations(self, encoder: Any) -> Observations:
        """Observed ``(internal, level, y)`` of the COMPLETE trials inside ``encoder``'s space
        with a finite value (and their constraints), and the running points per level (the
        point recorded under :data:`POINT_ATTR`, else the trial's parameters when they lie in
        the space)."""
        top = len(self.names) - 1
        rows, levels, values, running, constraints = [], [], [], [], []
        for t in self.trials:
            name = fidelity_of(t)
            if name is not None and name not in self.names:
                continue
            level = top if name is None else self.names.index(name)
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
            values.append(self.sign * t.value)
            constraints.append(t.constraints)
        keys = sorted(set().union(*constraints))
        p = len(encoder.names)
        return Observations(
            np.array(rows, dtype=float).reshape(-1, p),
            np.array(levels, dtype=np.int64),
            np.array(values, dtype=float),
            running,
            np.array([[c.get(k, np.nan) for k in keys] for c in constraints], dtype=float) if keys else None,
        )

    def rung_observations(self, encoder: Any, steps: Sequence[float], max_per_rung: int) -> Observations:
        """Observations of the step (learning-curve) mode: every trial in ``encoder``'s space,
        whatever its state, gives one observation per rung it reached.

        Rung ``m`` below the top is the value reported at the largest step ``s`` with
        ``steps[m-1] < s <= steps[m]``; the top rung is the final value of a COMPLETE trial. A
        RUNNING trial is also a running point at the top level. Each rung below the top keeps
        its ``max_per_rung`` most recent trials.
        """
        top = len(steps) - 1
        rows, levels, values, running = [], [], [], []

        def add(x: np.ndarray, level: int, value: float) -> None:
            rows.append(x)
            levels.append(level)
            values.append(self.sign * value)

        for t in self.trials:
            if not encoder.contains(t.params):
                continue
            x = encoder.to_internal(t.params)
            reported = sorted(t.intermediate_values.items())
            for m in range(top):
                low = steps[m - 1] if m else -math.inf
                at = [v for s, v in reported if low < s <= steps[m]]
                if at and at[-1] is not None and math.isfinite(at[-1]):
                    add(x, m, at[-1])
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
                add(x, top, t.value)
            elif t.state == TrialState.RUNNING:
                running.append((top, x))
        levels_ = np.array(levels, dtype=np.int64)
        keep = np.ones(len(levels_), dtype=bool)
        for m in range(top):
            at = np.flatnonzero(levels_ == m)
            keep[at[: max(len(at) - max_per_rung, 0)]] = False
        X = np.array(rows, dtype=float).reshape(-1, len(encoder.names))
        return Observations(X[keep], levels_[keep], np.array(values, dtype=float)[keep], running)

    def points(self, encoder: Any) -> np.ndarray:
        """Internal rows of every trial in ``encoder``'s space, whatever its state (the step
        mode's points already taken, including those beyond the per-rung cap)."""
        rows = [encoder.to_internal(t.params) for t in self.trials if encoder.contains(t.params)]
        return np.array(rows, dtype=float).reshape(-1, len(encoder.names))

    def fits(self) -> dict[str, StoredFit]:
        """The latest stored fit of each model (:data:`FIT_ATTR`), by trial number; malformed
        entries are left out."""
        latest: dict[str, StoredFit] = {}
        for t in sorted(self.trials, key=lambda t: t.number):
            records = t.system_attrs.get(FIT_ATTR)
            for key, rec in records.items() if isinstance(records, dict) else ():
                if isinstance(rec, dict) and isinstance(rec.get("n"), int) and isinstance(rec.get("state"), dict):
                    latest[key] = (rec["n"], rec["state"])
        return latest

    def used_point_keys(self, level: int, names: set[str], key: Callable[[dict[str, Any]], Hashable]) -> set[Hashable]:
        """Keys of the points (their parameters ``names``) evaluated or running at ``level``."""
        return {
            key({n: t.params[n] for n in names})
            for t in self.trials
            if self.level_of(t) == level and names <= set(t.params)
        }


def claimed_elsewhere(
    study: optuna.Study, trial: FrozenTrial, level: str | None, width: int, mine: Hashable,
    key: Callable[[np.ndarray], Hashable],
) -> bool:
    """Whether another RUNNING or COMPLETE trial at ``level`` holds a recorded point (of
    ``width`` coordinates) whose ``key`` is ``mine``.

    Every process records its trial's point before it calls this, and gives the point up
    when it returns True. Of two trials that claim one point, the one that checks second
    sees the other's record, so at most one of them keeps it; both may give it up (each
    proposes again, with the other's claim now visible). COMPLETE trials count because a
    fast objective can finish between another process's scan and its check.
    """
    own = trial_id(trial)
    for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE), use_cache=False):
        if t._trial_id == own or fidelity_of(t) != level:
            continue
        point = t.system_attrs.get(POINT_ATTR)
        if point is not None and len(point) == width and key(np.asarray(point, dtype=float)) == mine:
            return True
    return False


def record_heartbeat(study: optuna.Study, trial: FrozenTrial) -> None:
    """Beat once for ``trial`` where the storage has heartbeats, so a process killed while the
    trial is being set up (before Optuna's heartbeat thread starts) leaves a trial that the
    stale-trial check can fail."""
    if is_heartbeat_enabled(study._storage):
        assert isinstance(study._storage, BaseHeartbeat)
        study._storage.record_heartbeat(trial._trial_id)


def admit(study: optuna.Study, trial: FrozenTrial, names: Sequence[str], register: bool) -> None:
    """Refuse a trial the sampler cannot serve, before anything else of it is written
    (:func:`refuse`): a multi-objective study, a study run with other levels, a trial enqueued
    at an unknown level. With ``register``, store the study's level names on its first use.

    Raises:
        ValueError: one line naming what does not fit.
    """
    try:
        require_single_objective(study)
    except ValueError as err:
        refuse(study, trial, str(err))
    if register:
        stored = study._storage.get_study_system_attrs(study._study_id).get(STUDY_FIDELITIES_ATTR)
        if stored is None:
            study._storage.set_study_system_attr(study._study_id, STUDY_FIDELITIES_ATTR, list(names))
        elif list(stored) != list(names):
            refuse(study, trial, f"study {study.study_name!r} was run with fidelities {list(stored)}, "
                                 f"this sampler has {list(names)}.")
    name = fidelity_of(trial)
    if name is not None and name not in names:
        refuse(study, trial, f"trial {trial.number} was enqueued with fidelity {name!r}; "
                             f"this sampler's fidelities are {list(names)}.")


def record_level(study: optuna.Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    """Write the user attributes of ``trial``'s level that it does not carry yet."""
    missing = {k: v for k, v in attrs.items() if trial.user_attrs.get(k) != v}
    if missing:
        record_user_attrs(trial, study, missing)


def refuse(study: optuna.Study, trial: FrozenTrial, message: str) -> None:
    """Fail ``trial`` (so no trial is left RUNNING) and raise ``ValueError(message)``; the
    message is kept as the trial's ``mfkd:refused`` system attribute.

    Raises:
        ValueError: always.
    """
    study._storage.set_trial_system_attr(trial._trial_id, "mfkd:refused", message)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    raise ValueError(message)


def record_objective_start(study: optuna.Study, trial: FrozenTrial) -> None:
    """Note the time the objective got its point (:data:`~optuna_mfkd.fidelity.OBJECTIVE_START_ATTR`)."""
    stamp = datetime.datetime.now().isoformat()
    study._storage.set_trial_system_attr(trial._trial_id, OBJECTIVE_START_ATTR, stamp)


def record_constraints(
    study: optuna.Study, trial: FrozenTrial, state: TrialState, constraints_func: Callable[[FrozenTrial], Sequence[float]],
) -> None:
    """Store ``constraints_func(trial)`` for a COMPLETE or PRUNED trial, as Optuna's samplers
    do (read back through ``FrozenTrial.constraints``)."""
    _process_constraints_after_trial(constraints_func, study, trial, state)


def record_point(
    study: optuna.Study, trial: FrozenTrial, row: np.ndarray, how: str, fits: Mapping[str, StoredFit] | None = None
) -> None:
    """Write the point ``trial`` was given (internal repr), how it was chosen and the fits
    made for it (:data:`FIT_ATTR`; ``Proposer.take_fits``)."""
    study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, row.tolist())
    study._storage.set_trial_system_attr(trial._trial_id, HOW_ATTR, how)
    if fits:
        stored = {key: {"n": n, "state": state} for key, (n, state) in fits.items()}
        study._storage.set_trial_system_attr(trial._trial_id, FIT_ATTR, stored)
