"""Copy a finished in-memory study into an RDB storage in one transaction.

The harness runs each study in memory and stores it when it ends. Optuna's ``copy_study``
writes trial by trial (about 50 ms each on SQLite, which dominated the harness's time);
:func:`store_study` writes all trials of an :class:`~optuna.storages.RDBStorage` at once, into
Optuna's private trial tables, while those tables are the ones :data:`BULK_COPY_COLUMNS`
describes, and falls back to ``copy_study`` otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

#: What the bulk copy writes into Optuna's private RDB models (``optuna.storages._rdb.models``):
#: model name -> the columns it fills (the primary keys are left to the database). Optuna
#: changes these tables with its schema versions; :func:`bulk_copy_matches_schema` compares
#: them with the installed Optuna, and the bulk copy runs only while they agree.
BULK_COPY_COLUMNS: dict[str, frozenset[str]] = {
    "TrialModel": frozenset({"study_id", "number", "state", "datetime_start", "datetime_complete"}),
    "TrialValueModel": frozenset({"trial_id", "objective", "value", "value_type"}),
    "TrialParamModel": frozenset({"trial_id", "param_name", "param_value", "distribution_json"}),
    "TrialUserAttributeModel": frozenset({"trial_id", "key", "value_json"}),
    "TrialSystemAttributeModel": frozenset({"trial_id", "key", "value_json"}),
    "TrialIntermediateValueModel": frozenset(
        {"trial_id", "step", "intermediate_value", "intermediate_value_type"}
    ),
}


def schema_differences() -> dict[str, tuple[set[str], set[str]]]:
    """Model name -> (columns Optuna has that the bulk copy does not write, columns it writes
    that Optuna lacks), for every model where the two differ (empty: they agree)."""
    from optuna.storages._rdb import models

    out = {}
    for name, written in BULK_COPY_COLUMNS.items():
        model = getattr(models, name, None)
        table = getattr(model, "__table__", None)
        have = set() if table is None else {c.name for c in table.columns if not c.primary_key}
        if have != written:
            out[name] = (have - written, written - have)
    return out


def bulk_copy_matches_schema() -> bool:
    """Whether the installed Optuna's trial tables are the ones :data:`BULK_COPY_COLUMNS` fills."""
    try:
        return not schema_differences()
    except ImportError:
        return False


def store_study(study: optuna.Study, target: optuna.storages.BaseStorage) -> None:
    """Copy a finished in-memory ``study`` into ``target`` under the same name.

    For an :class:`~optuna.storages.RDBStorage` whose trial tables match
    :data:`BULK_COPY_COLUMNS`, all trials are written in one transaction (Optuna's
    ``copy_study`` writes trial by trial, about 50 ms each on SQLite, which dominated the
    harness's time); other storages, or an Optuna whose schema differs, use
    :func:`optuna.copy_study`. ``tests/test_bench_harness.py`` checks the columns against
    the installed Optuna and compares the copy with ``copy_study``'s, field by field.
    """
    if isinstance(target, optuna.storages.RDBStorage) and bulk_copy_matches_schema():
        try:
            _bulk_copy(study, target)
            return
        except (ImportError, AttributeError, TypeError):  # private Optuna API changed
            try:
                optuna.delete_study(study_name=study.study_name, storage=target)
            except KeyError:
                pass
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=target)


def _bulk_copy(study: optuna.Study, target: optuna.storages.RDBStorage) -> None:
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def row(name: str, **columns: Any) -> Any:
        if columns.keys() != BULK_COPY_COLUMNS[name]:  # the declaration describes this code
            raise TypeError(f"bulk copy of {name}: columns {sorted(columns)} are not BULK_COPY_COLUMNS")
        return getattr(models, name)(**columns)

    study_id = target.create_new_study(study.directions, study.study_name)
    for key, value in study._storage.get_study_system_attrs(study._study_id).items():
        target.set_study_system_attr(study_id, key, value)
    for key, value in study.user_attrs.items():
        target.set_study_user_attr(study_id, key, value)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    with _create_scoped_session(target.scoped_session) as session:
        rows = [
            row("TrialModel", study_id=study_id, number=t.number, state=t.state,
                datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)
            for t in trials
        ]
        session.add_all(rows)
        session.flush()  # assigns trial ids
        children: list[Any] = []
        for parent, t in zip(rows, trials, strict=True):
            tid = parent.trial_id
            for objective, value in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                children.append(row("TrialValueModel", trial_id=tid, objective=objective, value=stored,
                                    value_type=kind))
            for pname, pvalue in t.params.items():
                dist = t.distributions[pname]
                children.append(row("TrialParamModel", trial_id=tid, param_name=pname,
                                    param_value=dist.to_internal_repr(pvalue),
                                    distribution_json=distribution_to_json(dist)))
            for key, value in t.user_attrs.items():
                children.append(row("TrialUserAttributeModel", trial_id=tid, key=key, value_json=json.dumps(value)))
            for key, value in t.system_attrs.items():
                children.append(row("TrialSystemAttributeModel", trial_id=tid, key=key, value_json=json.dumps(value)))
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                children.append(row("TrialIntermediateValueModel", trial_id=tid, step=step,
                                    intermediate_value=stored, intermediate_value_type=kind))
        session.add_all(children)
