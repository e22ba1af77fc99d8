"""Cache of training evaluations (every fidelity) in a relational database (the study's, by default).

One row per (cell, settings, seed): the score, the wall seconds it took and when. The table
:data:`EVALUATIONS_TABLE` lives beside Optuna's tables in the same database URL, so a study
and its cache travel together; SQLite and PostgreSQL both work. Settings are stored as
canonical JSON (sorted keys), and the key is a SHA-1 of cell + settings + seed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from optuna_mfkd.storage import create_engine, storage_url

#: SQL name of the cache table. It holds the evaluations of every level although the name says
#: low fidelity: renaming it would orphan the entries of existing databases.
EVALUATIONS_TABLE = "mfkd_lowfi_cache"

_metadata = sa.MetaData()
_table = sa.Table(
    EVALUATIONS_TABLE,
    _metadata,
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("arch", sa.String(255), nullable=False, index=True),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("extra", sa.Text, nullable=False, default="{}"),
    sa.Column("created", sa.DateTime, nullable=False),
)


def canonical_settings(settings: Mapping[str, Any]) -> str:
    """JSON of ``settings`` with sorted keys and tuples as lists (the cache's identity)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=list)


def cache_key(arch: str, settings: Mapping[str, Any], seed: int) -> str:
    raw = f"{arch}|{canonical_settings(settings)}|{int(seed)}"
    return hashlib.sha1(raw.encode()).hexdigest()


@dataclass(frozen=True)
class CachedEvaluation:
    arch: str
    settings: dict
    seed: int
    value: float | None
    seconds: float
    extra: dict
    created: _dt.datetime


class EvaluationCache:
    """Training evaluations (any fidelity) keyed by cell + settings + seed, in an SQL database.

    Args:
        url: SQLAlchemy URL (``sqlite:///study.db``, ``postgresql+psycopg://...``), an Optuna
            RDB storage, or a study that uses one.
    """

    def __init__(self, url: Any) -> None:
        self.url = storage_url(url)
        self.engine = create_engine(self.url)
        _metadata.create_all(self.engine, tables=[_table], checkfirst=True)

    def get(self, arch: str, settings: Mapping[str, Any], seed: int) -> CachedEvaluation | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_table).where(_table.c.key == cache_key(arch, settings, seed))).first()
        return None if row is None else self._record(row)

    def put(self, arch: str, settings: Mapping[str, Any], seed: int, value: float | None,
            seconds: float, extra: Mapping[str, Any] | None = None) -> None:
        """Store one evaluation (an existing entry with the same key is replaced)."""
        key = cache_key(arch, settings, seed)
        row = {"key": key, "arch": arch, "settings": canonical_settings(settings), "seed": int(seed),
               "value": None if value is None else float(value), "seconds": float(seconds),
               "extra": json.dumps(dict(extra or {}), sort_keys=True, default=str),
               "created": _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)}
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_table).where(_table.c.key == key))
            conn.execute(sa.insert(_table).values(**row))

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_table)).scalar_one())

    def __iter__(self) -> Iterator[CachedEvaluation]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_table).order_by(_table.c.created)).all()
        return iter([self._record(r) for r in rows])

    @staticmethod
    def _record(row) -> CachedEvaluation:
        return CachedEvaluation(row.arch, json.loads(row.settings), int(row.seed), row.value,
                                float(row.seconds), json.loads(row.extra or "{}"), row.created)
