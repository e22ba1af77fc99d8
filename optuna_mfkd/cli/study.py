"""Opening the study database for the command: storage URLs, the gRPC proxy, stored studies.

Databases are opened through :mod:`optuna_mfkd.storage` (one way everywhere); this module
adds what the command needs on top: one-line errors naming ``--storage`` / ``--study-name``,
heartbeats with retry of stale trials, and the configuration a study was created with.
"""

from __future__ import annotations

from typing import Any

from optuna_mfkd.cli.common import PROG, CLIError, one_line
from optuna_mfkd.cli.config import CONFIG_ATTR

DEFAULT_STORAGE = "sqlite:///optuna-mfkd.db"
GRPC_SCHEME = "grpc://"
#: Seconds to wait for a gRPC storage proxy to answer.
GRPC_TIMEOUT_S = 5.0
#: Configuration keys of studies made by older versions -> their current names.
RENAMED_CONFIG_KEYS = {"kd_overhead": "time_ratio"}


def masked(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    try:
        import sqlalchemy

        return sqlalchemy.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_grpc_storage(url: str) -> Any:
    """A client of Optuna's gRPC storage proxy at ``grpc://HOST:PORT`` (``optuna-mfkd proxy``).

    Trials through a proxy send no heartbeat (Optuna's ``GrpcStorageProxy`` has none): a
    worker killed mid-trial leaves its trial RUNNING; Ctrl-C and SIGTERM still requeue it.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise CLIError(f"--storage {url!r}: a gRPC proxy URL is grpc://HOST:PORT (e.g. grpc://127.0.0.1:13000)")
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError as exc:
        raise CLIError(f"--storage {url}: the gRPC storage proxy needs grpcio and protobuf "
                       f"(pip install 'optuna-mfkd[grpc]'): {one_line(exc)}") from None
    storage = GrpcStorageProxy(host=parts.hostname, port=port)
    try:
        storage.wait_server_ready(timeout=GRPC_TIMEOUT_S)
    except ConnectionError:
        storage.close()
        raise CLIError(f"--storage {url}: no gRPC storage proxy answers within {GRPC_TIMEOUT_S:g} s "
                       f"(start one with '{PROG} proxy --storage DATABASE_URL --port {port}')") from None
    return storage


def open_storage(url: str, heartbeat: int | None, grace: int | None) -> Any:
    """Open an Optuna RDB storage with heartbeats and retry of stale trials.

    A process that dies mid-trial stops its heartbeat; after ``grace`` seconds another
    process fails that trial and queues it again (``RetryHeartbeatStaleTrialCallback``).
    ``grpc://HOST:PORT`` connects to a gRPC storage proxy instead (:func:`open_grpc_storage`).
    """
    import optuna
    import sqlalchemy
    import sqlalchemy.exc

    from optuna_mfkd.storage import rdb_storage

    if "://" not in url:
        raise CLIError(
            f"--storage {url!r} is not a database URL (e.g. sqlite:///study.db or "
            "postgresql+psycopg://user:password@host:5432/db)"
        )
    if url.startswith(GRPC_SCHEME):
        return open_grpc_storage(url)
    if url.startswith("sqlite"):
        try:
            database = sqlalchemy.make_url(url).database
        except sqlalchemy.exc.ArgumentError:
            database = None
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            raise CLIError(f"--storage {url!r} names no database file (an in-memory database would lose "
                           "the study); e.g. sqlite:///optuna-mfkd.db")
    try:
        return rdb_storage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=(
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat else None
            ),
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as exc:
        raise CLIError(f"--storage {masked(url)}: cannot open the database: {storage_reason(exc, url)}") from None


def storage_reason(exc: BaseException, url: str) -> str:
    """The first line of a database error, with a hint for SQLite files that cannot be written."""
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if url.startswith("sqlite") and ("unable to open database file" in reason or "readonly database" in reason):
        reason += " (the SQLite file's folder must exist and be writable)"
    return reason


def study_id(storage: Any, name: str) -> int | None:
    """The id of study ``name``, or None when the storage has no such study."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def check_direction(storage: Any, study_id: int, name: str) -> None:
    """A stored study must maximise one objective, as MF-KD does."""
    import optuna

    directions = storage.get_study_directions(study_id)
    if directions != [optuna.study.StudyDirection.MAXIMIZE]:
        got = ", ".join(d.name.lower() for d in directions)
        raise CLIError(
            f"--study-name {name!r}: the stored study has direction(s) [{got}], MF-KD maximises "
            "accuracy; pick a new --study-name"
        )


def stored_config(storage: Any, study_id: int) -> dict[str, Any] | None:
    """The configuration a study was created with (keys under their current names), or None."""
    value = storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)
    if not isinstance(value, dict):
        return None
    config = dict(value)
    for old, new in RENAMED_CONFIG_KEYS.items():
        if old in config:
            config.setdefault(new, config.pop(old))
    return config


def existing_study(storage: Any, name: str, url: str, join: bool) -> tuple[int | None, dict[str, Any] | None]:
    """(study id, stored configuration) of study ``name``; (None, None) for a new study.

    Raises:
        CLIError: the study exists but was not made by ``optuna-mfkd search`` or does not
            maximise; or ``join`` (a worker) and there is no such study.
    """
    found = study_id(storage, name)
    if found is None:
        if join:
            raise CLIError(
                f"--study-name {name!r}: no such study in {masked(url)}; "
                f"create it with '{PROG} search --storage URL --study-name NAME'"
            )
        return None, None
    check_direction(storage, found, name)
    stored = stored_config(storage, found)
    if stored is None:
        raise CLIError(
            f"--study-name {name!r}: the stored study was not made by "
            f"{PROG} search (it has no {CONFIG_ATTR} attribute); pick a new --study-name"
        )
    return found, stored
