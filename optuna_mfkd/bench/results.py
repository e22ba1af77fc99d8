"""Finished benchmark runs read back from their storages, reduced to what a report needs.

:func:`load_runs` reads every finished harness study (``<problem>/<variant>/<method>/seed-<k>``)
of one or more storages into a :class:`Run`: its final metric and its incumbent curve (the
incumbent's metric against the cost spent), from the summary the harness stored with the
study (``bench:result``) or, for studies without one, from its trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna

from optuna_mfkd.bench.incumbent import from_record, incumbent_curve
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric
from optuna_mfkd.bench.runs import (
    FINISHED_ATTR,
    META_ATTR,
    RESULT_ATTR,
    as_storage,
    current_name,
    parse_study_name,
    study_metric,
)


@dataclass
class Run:
    """One finished study, reduced to what the report needs."""

    protocol: str
    dataset: str
    method: str
    seed: int
    budget: float
    final_test: float
    final_val: float
    n_trials: int
    total_cost: float
    wall_seconds: float
    best_in_space: float | None
    curve_cost: np.ndarray = field(repr=False)  # cumulative cost after each trial
    curve_test: np.ndarray = field(repr=False)  # incumbent's metric after each trial (nan before one)
    metric: Metric = NB201_TEST_ACCURACY  # what final_test and curve_test hold
    cost_unit: str = "simulated seconds"
    cpu_seconds: float = math.nan
    description: str = ""  # the method's description, as its study recorded it
    versions: dict[str, str | None] = field(default_factory=dict)  # packages the study recorded


Storages = str | optuna.storages.BaseStorage | Sequence[str | optuna.storages.BaseStorage]


def _storages(storage: Storages) -> list[tuple[str, optuna.storages.BaseStorage]]:
    items = [storage] if isinstance(storage, str | optuna.storages.BaseStorage) else list(storage)
    if not items:
        raise ValueError("no storage given.")
    return [(s if isinstance(s, str) else type(s).__name__, as_storage(s)) for s in items]


def load_runs(storage: Storages, protocols: Sequence[str] | None = None, use_records: bool = True) -> list[Run]:
    """Every finished harness study in ``storage`` (optionally only some protocols/problems).

    ``protocols``: names (``nb201``, ``hartmann6``) or ``<name>/<variant>`` ids
    (``nb201/cifar10``) of the problems to read; ``None``: all.

    ``storage`` may be several storages; their studies are pooled, and a study name that
    is finished in two of them raises :class:`ValueError` (the same run counted twice).
    A study stored under an old method name is read under the current one
    (:data:`~optuna_mfkd.bench.runs.LEGACY_METHODS`; two studies that are then the same run
    raise :class:`ValueError` too). A run's curve comes from the summary the harness stored with the study
    (``bench:result``); studies without one (or with ``use_records=False``) are read trial
    by trial, which is much slower on large storages.
    """
    runs: list[Run] = []
    best_cache: dict[tuple[str, str], float | None] = {}
    seen: dict[str, str] = {}
    for label, st in _storages(storage):
        for study in st.get_all_studies():
            parsed = parse_study_name(study.study_name)
            if parsed is None or not study.user_attrs.get(FINISHED_ATTR):
                continue
            name = current_name(study.study_name, study.user_attrs.get(META_ATTR, {}))
            if name in seen:
                raise ValueError(f"study {name!r} is finished in both {seen[name]!r} and {label!r}.")
            seen[name] = label
            run = _load_run(st, study, parse_study_name(name), protocols, use_records, best_cache)  # type: ignore[arg-type]
            if run is not None:
                runs.append(run)
    return runs


def _load_run(
    st: optuna.storages.BaseStorage,
    study: optuna.study.StudySummary | optuna.study.FrozenStudy,
    parsed: tuple[str, str, str, int],
    protocols: Sequence[str] | None,
    use_records: bool,
    best_cache: dict[tuple[str, str], float | None],
) -> Run | None:
    protocol, dataset, method, seed = parsed
    if protocols and protocol not in protocols and f"{protocol}/{dataset}" not in protocols:
        return None
    meta = study.user_attrs.get(META_ATTR, {})
    metric = study_metric(meta)
    record = study.user_attrs.get(RESULT_ATTR) if use_records else None
    if record is not None:
        costs, tests, final_test, final_val, n_trials = from_record(record)
    else:
        trials = st.get_all_trials(study._study_id, deepcopy=False)
        direction = "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        costs, tests, final_test, final_val = incumbent_curve(trials, meta.get("top_level", ""), metric.attr, direction)
        n_trials = len(trials)
    key = (dataset, str(meta.get("table", "")))
    if key not in best_cache:
        best_cache[key] = meta.get("best_test_acc_in_space", _best_from_table(meta.get("table"), dataset))
    versions = {"optuna": meta.get("optuna"), **meta.get("peer", {}).get("versions", {})}
    return Run(protocol, dataset, method, seed, float(meta.get("budget", math.nan)), final_test, final_val,
               n_trials, float(costs[-1]) if costs.size else 0.0, float(meta.get("wall_seconds", math.nan)),
               best_cache[key], costs, tests, metric, str(meta.get("cost_unit", "simulated seconds")),
               float(meta.get("cpu_seconds", math.nan)), str(meta.get("method_description", "")),
               {k: v for k, v in versions.items() if v is not None})


def _best_from_table(path: str | None, dataset: str) -> float | None:
    if not path:
        return None
    try:
        from optuna_mfkd.nasbench201.table import load_table

        return load_table(path).best_test_acc(dataset)
    except (FileNotFoundError, ValueError, ImportError):
        return None


def incumbent_at(run: Run, costs: np.ndarray | Sequence[float]) -> np.ndarray:
    """The incumbent's metric of ``run`` once ``costs`` (in the run's cost unit) are spent.

    The value after the last trial whose cumulative cost is ``<= c``; NaN before the first
    incumbent.
    """
    grid = np.asarray(costs, dtype=float)
    out = np.full(grid.shape, np.nan)
    if run.curve_cost.size:
        pos = np.searchsorted(run.curve_cost, grid, side="right") - 1
        valid = pos >= 0
        out[valid] = run.curve_test[pos[valid]]
    return out
