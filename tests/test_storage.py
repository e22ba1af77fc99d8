"""Databases are opened one way: the CLI, the harness and the evaluation cache wait for SQLite locks."""

from __future__ import annotations

import optuna
import pytest

from optuna_mfkd.storage import SQLITE_TIMEOUT_SECONDS, engine_kwargs, storage_url


def _busy_timeout_ms(engine) -> int:
    # SQLite reports the lock wait the driver's ``timeout`` set, in milliseconds.
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def test_engine_kwargs() -> None:
    assert engine_kwargs("sqlite:///a.db") == {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    assert engine_kwargs("postgresql+psycopg://u:p@localhost:5432/db") == {"pool_pre_ping": True}


def test_every_opener_waits_for_sqlite_locks(sqlite_url: str) -> None:
    from optuna_mfkd.bench.runs import as_storage as _storage
    from optuna_mfkd.cli import open_storage
    from optuna_mfkd.training.cache import EvaluationCache

    want = 1000 * SQLITE_TIMEOUT_SECONDS
    assert _busy_timeout_ms(open_storage(sqlite_url, heartbeat=None, grace=None).engine) == want
    assert _busy_timeout_ms(_storage(sqlite_url).engine) == want
    assert _busy_timeout_ms(EvaluationCache(sqlite_url).engine) == want


def test_storage_url(sqlite_url: str) -> None:
    study = optuna.create_study(storage=sqlite_url)
    assert storage_url(study) == storage_url(study._storage) == storage_url(sqlite_url) == sqlite_url
    with pytest.raises(ValueError, match="RDB storage.*InMemoryStorage"):
        storage_url(optuna.storages.InMemoryStorage())
