"""Finished benchmark runs kept in a small file, so results add up across machines.

A report reads only the user attributes that the harness stores with each finished study
(``bench:meta``: problem, method, seed, budget, seconds, versions; ``bench:result``: the
incumbent curve; ``bench:finished``), never its trials. :func:`export_runs` writes exactly
those for every finished harness study of a storage, one JSON object a line (gzip-compressed
when the file name ends in ``.gz``); :func:`import_runs` creates them again, without trials,
in another storage. A run recorded in the file then counts as finished there: the suite
skips it and the report includes it, so a benchmark that needs more CPU time than one
machine session has can be continued elsewhere from the committed file::

    optuna-mfkd benchmark --records benchmarks/results/X/runs.jsonl.gz ...

Each line: ``{"study": name, "direction": "minimize" | "maximize", "user_attrs": {...}}``,
sorted by study name.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.study import StudyDirection

from optuna_mfkd.bench.runs import FINISHED_ATTR, META_ATTR, RESULT_ATTR, parse_study_name

#: The user attributes a record carries (all a report reads).
RECORD_ATTRS = (META_ATTR, RESULT_ATTR, FINISHED_ATTR)


@contextlib.contextmanager
def _open(path: Path, mode: str) -> Iterator[IO[str]]:
    """Text file, gzip-compressed for ``.gz`` names (written with no time stamp or name in
    the header, so the same records give the same bytes)."""
    if path.suffix != ".gz":
        with open(path, mode, encoding="utf-8") as f:
            yield f
        return
    with open(path, mode + "b") as raw, gzip.GzipFile(fileobj=raw, mode=mode + "b", filename="", mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="utf-8") as f:
            yield f


def finished_records(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """The record of every finished harness study in ``storage``, sorted by name."""
    out = []
    for study in storage.get_all_studies():
        attrs = study.user_attrs
        if parse_study_name(study.study_name) is None or not attrs.get(FINISHED_ATTR):
            continue
        out.append({
            "study": study.study_name,
            "direction": "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize",
            "user_attrs": {k: attrs[k] for k in RECORD_ATTRS if k in attrs},
        })
    return sorted(out, key=lambda r: r["study"])


def export_runs(storage: optuna.storages.BaseStorage, path: str | Path) -> int:
    """Write the records of every finished harness study in ``storage`` to ``path``
    (replaced atomically); returns their number."""
    path = Path(path)
    records = finished_records(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file's mode, not mkstemp's 0600
        with _open(Path(tmp), "w") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(records)


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """The records in ``path``, checked (each a harness study name, a direction and a
    finished run's attributes).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming the file and line of the first malformed record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file {str(path)!r} does not exist.")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in _lines(path):
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err.msg}).") from None
        if not isinstance(record, dict) or set(record) != {"study", "direction", "user_attrs"}:
            raise ValueError(f"{where}: a record has exactly the keys 'study', 'direction' and 'user_attrs'.")
        name, attrs = record["study"], record["user_attrs"]
        if not isinstance(name, str) or parse_study_name(name) is None:
            raise ValueError(f"{where}: {name!r} is not a benchmark study name (problem/variant/method/seed-k).")
        if record["direction"] not in ("minimize", "maximize"):
            raise ValueError(f"{where}: direction must be 'minimize' or 'maximize', got {record['direction']!r}.")
        if not isinstance(attrs, dict) or attrs.get(FINISHED_ATTR) is not True or RESULT_ATTR not in attrs:
            raise ValueError(f"{where}: {name!r} is not a finished run (needs {FINISHED_ATTR!r} and {RESULT_ATTR!r}).")
        if name in seen:
            raise ValueError(f"{where}: {name!r} is recorded twice.")
        seen.add(name)
        records.append(record)
    return records


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open(path, "r") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"records file {str(path)!r} cannot be read ({err}).") from None


def import_runs(path: str | Path, storage: optuna.storages.BaseStorage) -> int:
    """Create, without trials, every run recorded in ``path`` that is not finished in
    ``storage``; returns how many were created. The whole file is checked first, so a
    malformed one changes nothing. A study of the same name that is not finished (an
    interrupted run) is replaced by the record; finished studies are left as they are."""
    records = read_runs(path)
    existing = {s.study_name: s for s in storage.get_all_studies()}
    created = 0
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))  # no line per study
    try:
        for record in records:
            created += _create(storage, record, existing.get(record["study"]))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return created


def _create(storage: optuna.storages.BaseStorage, record: dict[str, Any], old: Any) -> int:
    """Create ``record``'s study (replacing ``old``, an unfinished study of that name);
    returns 1, or 0 when ``old`` is finished and kept."""
    if old is not None:
        if old.user_attrs.get(FINISHED_ATTR):
            return 0
        storage.delete_study(old._study_id)
    direction = StudyDirection.MAXIMIZE if record["direction"] == "maximize" else StudyDirection.MINIMIZE
    study_id = storage.create_new_study([direction], record["study"])
    for key, value in record["user_attrs"].items():
        storage.set_study_user_attr(study_id, key, value)
    return 1
