"""Databases opened the same way everywhere: Optuna RDB storages and SQLAlchemy engines.

The command line, the benchmark harness and the evaluation cache open their databases here:

- SQLite: a connection waits up to :data:`SQLITE_TIMEOUT_SECONDS` for another process's
  write lock (SQLite serialises writers; the driver's default of 5 s makes parallel workers
  fail with "database is locked").
- Any other database (PostgreSQL, MySQL): ``pool_pre_ping`` replaces pooled connections the
  server has closed, so a long-running worker survives a server restart.
"""

from __future__ import annotations

from typing import Any

import optuna
import sqlalchemy as sa

#: Seconds an SQLite connection waits for a lock before it fails.
SQLITE_TIMEOUT_SECONDS = 60


def engine_kwargs(url: str) -> dict[str, Any]:
    """Keyword arguments of :func:`sqlalchemy.create_engine` for ``url`` (see the module docstring)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    return {"pool_pre_ping": True}


def create_engine(url: str) -> sa.Engine:
    """An SQLAlchemy engine for ``url`` with :func:`engine_kwargs`."""
    return sa.create_engine(url, **engine_kwargs(url))


def rdb_storage(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    """An Optuna :class:`~optuna.storages.RDBStorage` for ``url`` with :func:`engine_kwargs`.

    ``kwargs`` go to ``RDBStorage`` (``heartbeat_interval``, ``grace_period``, ...).
    """
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **kwargs)


def storage_url(storage: Any) -> str:
    """The database URL of an Optuna storage, a study, or a URL string.

    Raises:
        ValueError: the storage is not an RDB storage (in-memory, journal, ...).
    """
    if isinstance(storage, str):
        return storage
    if hasattr(storage, "_storage"):  # a Study
        storage = storage._storage
    storage = getattr(storage, "_backend", storage)  # optuna's _CachedStorage wraps the RDBStorage
    url = getattr(storage, "url", None)
    if not isinstance(url, str):
        raise ValueError(
            f"the evaluation cache needs an RDB storage (SQLite, PostgreSQL, ...); got {type(storage).__name__}."
        )
    return url
