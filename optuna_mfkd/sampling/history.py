"""The one place where the sampler reads and writes the study.

A :class:`History` is one scan of a study's COMPLETE and RUNNING trials, taken once per
sampler hook: the level counts, the observations, the running points, the costs and the
intersection search space all come from it. The writes (a trial's level, its point and how
it was chosen, the study's levels, the heartbeat) are functions of this module too, so the
Optuna private names the sampler needs are used here and nowhere else in it:

- ``Study._get_trials`` (a scan without copies; ``use_cache=False`` so other processes'
  trials are seen), ``Study._storage``, ``Study._study_id``, ``Study._is_multi_objective``,
  ``FrozenTrial._trial_id``, ``BaseDistribution._contains``;
- ``optuna.storages._heartbeat.BaseHeartbeat`` and ``is_heartbeat_enabled``
  (:data:`OPTUNA_PRIVATE_NAMES`).

``docs/architecture.md`` lists them with the Optuna versions checked, and
``tests/test_sampling_history.py`` fails when one of them disappears.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.search_space import intersection_search_space
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd.fidelity import STUDY_FIDELITIES_ATTR, fidelity_of, level_costs, record_user_attrs

#: Trial system attribute holding the point a trial was given (Optuna internal repr).
POINT_ATTR = "mfkd:point"
#: Trial system attribute saying how the point was chosen ("random", "fallback", or the acquisition).
HOW_ATTR = "mfkd:how"

#: Observations of one search space: internal rows ``(n, p)``, levels ``(n,)``, values ``(n,)``
#: (larger is better), and the running points as ``(level, internal row)``.
Observations = tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]


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
)


def distribution_contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) lies in ``distribution``."""
    return distribution._contains(distribution.to_internal_repr(value))


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether ``study`` has more than one objective."""
    return study._is_multi_objective()


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of ``trial`` (unique across the studies of one storage)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return study._study_id


class History:
    """One scan of ``study``'s COMPLETE and RUNNING trials, ``trial`` left out.

    Args:
        study: the study.
        trial: the trial being sampled (not part of its own history).
        names: the sampler's level names, cheapest first; a trial without a level counts
            at the top level, one with an unknown level is left out of the observations.
    """

    def __init__(self, study: optuna.Study, trial: FrozenTrial, names: Sequence[str]) -> None:
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        scanned = study._get_trials(deepcopy=False, states=states, use_cache=False)
        self.trials: list[FrozenTrial] = [t for t in scanned if t.number != trial.number]
        self.names = list(names)
        self.sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        self._space: dict[str, BaseDistribution] | None = None

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

    def search_space(self) -> dict[str, BaseDistribution]:
        """The intersection search space of the COMPLETE trials, without single-valued
        parameters (as Optuna's ``IntersectionSearchSpace``, sorted by name)."""
        if self._space is None:
            space = intersection_search_space(self.complete)
            self._space = {name: dist for name, dist in space.items() if not dist.single()}
        return dict(self._space)

    def observations(self, encoder: Any) -> Observations:
        """Observed ``(internal, level, y)`` of the COMPLETE trials inside ``encoder``'s space
        with a finite value, and the running points per level (the point recorded under
        :data:`POINT_ATTR`, else the trial's parameters when they lie in the space)."""
        top = len(self.names) - 1
        rows, levels, values, running = [], [], [], []
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
        p = len(encoder.names)
        return (
            np.array(rows, dtype=float).reshape(-1, p),
            np.array(levels, dtype=np.int64),
            np.array(values, dtype=float),
            running,
        )

    def used_point_keys(self, level: int, names: set[str], key: Callable[[dict[str, Any]], Hashable]) -> set[Hashable]:
        """Keys of the points (their parameters ``names``) evaluated or running at ``level``."""
        return {
            key({n: t.params[n] for n in names})
            for t in self.trials
            if self.level_of(t) == level and names <= set(t.params)
        }


def claimed_earlier(
    study: optuna.Study, trial: FrozenTrial, level: str, width: int, mine: Hashable,
    key: Callable[[np.ndarray], Hashable],
) -> bool:
    """Whether a RUNNING trial numbered before ``trial`` at ``level`` holds a recorded point
    (of ``width`` coordinates) whose ``key`` is ``mine``: the earlier claim wins. Reads the
    RUNNING trials only."""
    for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False):
        if t.number >= trial.number or fidelity_of(t) != level:
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


def register_levels(study: optuna.Study, names: Sequence[str]) -> None:
    """Store the study's level names on its first use; refuse a study run with other levels.

    Raises:
        ValueError: the study was run with other fidelities.
    """
    stored = study._storage.get_study_system_attrs(study._study_id).get(STUDY_FIDELITIES_ATTR)
    if stored is None:
        study._storage.set_study_system_attr(study._study_id, STUDY_FIDELITIES_ATTR, list(names))
    elif list(stored) != list(names):
        raise ValueError(
            f"study {study.study_name!r} was run with fidelities {list(stored)}, this sampler has {list(names)}."
        )


def record_level(study: optuna.Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    """Write the user attributes of ``trial``'s level that it does not carry yet."""
    missing = {k: v for k, v in attrs.items() if trial.user_attrs.get(k) != v}
    if missing:
        record_user_attrs(trial, study, missing)


def record_point(study: optuna.Study, trial: FrozenTrial, row: np.ndarray, how: str) -> None:
    """Write the point ``trial`` was given (internal repr) and how it was chosen."""
    study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, row.tolist())
    study._storage.set_trial_system_attr(trial._trial_id, HOW_ATTR, how)
