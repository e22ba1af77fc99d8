"""Shared fixtures: data paths from environment variables, PostgreSQL databases, SQLite URLs.

The NAS-Bench-201 table ships with the package; the other data live outside the repository
and are found through environment variables. A test that needs one skips with the name of
the variable when it is unset or points nowhere:

- ``NB201_TABLE``: a compact NAS-Bench-201 table to test instead of the bundled one
  (``nb201_compact.csv``); unset, the tests use the bundled table.
- ``MFKD_CIFAR10``: CIFAR-10 as a zip of JPEG files or an ImageFolder root.
- ``MFKD_TEACHERS``: the folder of teacher checkpoints (``*.pth``).
- ``MFKD_TEST_POSTGRES_URL``: an SQLAlchemy URL of a PostgreSQL database whose role may
  create databases (``.ci/run`` starts a server and sets it).

The gRPC proxy tests need the ``grpc`` extra (``grpcio``, ``protobuf``) and skip without it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ENV_TABLE = "NB201_TABLE"
ENV_CIFAR10 = "MFKD_CIFAR10"
ENV_TEACHERS = "MFKD_TEACHERS"
ENV_POSTGRES = "MFKD_TEST_POSTGRES_URL"


def _skip(reason: str) -> None:
    """Skip, or fail where the environment promises every input (``MFKD_REQUIRE_DATA=1``,
    set by ``.ci/run``), so that CI never passes by skipping."""
    if os.environ.get("MFKD_REQUIRE_DATA") == "1":
        pytest.fail(f"MFKD_REQUIRE_DATA=1 but {reason}")
    pytest.skip(reason)


def _path_from_env(var: str, what: str) -> Path:
    value = os.environ.get(var)
    if not value:
        _skip(f"{var} is not set (path to {what})")
    path = Path(value)
    if not path.exists():
        _skip(f"{var}={value} does not exist (path to {what})")
    return path


@pytest.fixture(scope="session")
def nb201_table_path() -> Path:
    """Path of the compact NAS-Bench-201 table: ``$NB201_TABLE``, else the bundled one."""
    if os.environ.get(ENV_TABLE) is None:
        from optuna_mfkd.nasbench201.table import bundled_table_path

        return bundled_table_path()
    return _path_from_env(ENV_TABLE, "nb201_compact.csv")


@pytest.fixture(scope="session")
def cifar10_path() -> Path:
    """CIFAR-10 zip or ImageFolder root (``$MFKD_CIFAR10``)."""
    return _path_from_env(ENV_CIFAR10, "the CIFAR-10 JPEG zip or ImageFolder root")


@pytest.fixture(scope="session")
def teachers_dir() -> Path:
    """Folder of teacher checkpoints (``$MFKD_TEACHERS``)."""
    return _path_from_env(ENV_TEACHERS, "the folder of teacher checkpoints")


@pytest.fixture(scope="session")
def grpc_proxy() -> None:
    """Optuna's gRPC storage proxy is importable (``pip install '.[grpc]'``)."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
        from optuna.storages import GrpcStorageProxy, run_grpc_proxy_server  # noqa: F401
    except ImportError as exc:
        _skip(f"grpcio and protobuf are not installed (pip install '.[grpc]'): {exc}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a new SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL given in ``$MFKD_TEST_POSTGRES_URL``, checked to answer."""
    url = os.environ.get(ENV_POSTGRES)
    if not url:
        _skip(f"{ENV_POSTGRES} is not set (PostgreSQL URL; .ci/run starts a server)")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install '.[postgres]')")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:  # the server is down or the URL is wrong: say which
        pytest.fail(f"{ENV_POSTGRES}={url} does not answer: {exc}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    import sqlalchemy

    base = sqlalchemy.make_url(postgres_url)
    name = f"mfkd_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def finish(proc, timeout: float = 400) -> tuple[int, str]:
    """Wait for a ``subprocess.Popen`` started with text pipes (killed after ``timeout``
    seconds); its exit code and its stdout + stderr."""
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


def write_image_zip(path: Path, root: str, size: int, counts=(("train", 16), ("test", 4)),
                    classes=("a", "b", "c"), seed: int = 0) -> Path:
    """Write an ImageFolder tree of random RGB PNGs (``root/split/class/i.png``) into a zip."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in counts:
            for cls in classes:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
                    zf.writestr(f"{root}/{split}/{cls}/{i}.png", buf.getvalue())
    return path



def count_trials(url: str, name: str, state: str) -> int:
    """Trials of study ``name`` in ``state`` (e.g. ``"RUNNING"``) in an SQLite file, read
    directly and read-only: 0 while the file, its tables or the study do not exist yet.

    Waiting on a search in another process this way never races it to create Optuna's tables
    (opening an ``RDBStorage`` on a file being created can insert the schema version twice).
    """
    import sqlite3

    import sqlalchemy

    path = sqlalchemy.make_url(url).database
    if not path or not Path(path).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute(
                "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = ? AND t.state = ?", (name, state)
            ).fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_for_trials(url: str, name: str, proc: Any, state: str, count: int) -> None:
    """Wait (at most 240 s) until study ``name`` has ``count`` trials in ``state``, while
    ``proc`` (a ``subprocess.Popen`` running the search) is alive."""
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if count_trials(url, name, state) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"study {name!r} never had {count} {state} trials")


def wait_for_running_trial(url: str, name: str, proc: Any) -> Any:
    """The first RUNNING trial of study ``name`` whose objective has run, while ``proc`` (a
    ``subprocess.Popen`` running a search) is alive; a bound on waiting, not a check."""
    import time

    import optuna
    from optuna.trial import TrialState

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        wait_for_trials(url, name, proc, "RUNNING", 1)
        study = optuna.load_study(study_name=name, storage=url)
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if len(t.params) == 6 and "cost" in t.user_attrs:
                return t
        time.sleep(0.2)
    raise AssertionError("no trial started running")


def two_level_bowl(trial: Any, wiggle: float = 0.2, frequency: float = 6.0) -> float:
    """A two-level objective: ``(x - 0.3)^2 + (y - 0.7)^2`` at the level "high" (cost 10), plus
    ``wiggle * sin(frequency * x)`` at "low" (cost 1); the cost is set as the trial's
    ``cost`` user attribute."""
    import math

    from optuna_mfkd import fidelity_of

    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    low = fidelity_of(trial) == "low"
    trial.set_user_attr("cost", 1.0 if low else 10.0)
    value = (x - 0.3) ** 2 + (y - 0.7) ** 2
    return value + (wiggle * math.sin(frequency * x) if low else 0.0)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the scripts are not a package), registered in
    ``sys.modules`` under ``name`` so that its dataclasses and pickles resolve."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module
