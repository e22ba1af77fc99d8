"""Finished benchmark runs kept in a file: exported, imported elsewhere, reported the same."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from optuna_mfkd.bench import harness, records
from optuna_mfkd.bench.results import load_runs
from optuna_mfkd.bench.runs import FINISHED_ATTR, RESULT_ATTR, RunSpec
from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

ROOT = Path(__file__).resolve().parents[1]


def _runs():
    problem = dataclasses.replace(SYNTHETIC_PROBLEMS["branin/1-level"](), budget_top_evals=5)
    return [RunSpec(problem, m, s) for m in ("random", "tpe") for s in (0, 1)]


def _rows(storage):
    def plain(values):  # NaN (no incumbent yet) compares equal to itself here
        return tuple(None if np.isnan(v) else float(v) for v in np.atleast_1d(values))

    return sorted(
        (r.protocol, r.dataset, r.method, r.seed, plain(r.final_test), r.n_trials, r.cpu_seconds,
         plain(r.curve_cost), plain(r.curve_test))
        for r in load_runs(storage)
    )


@pytest.fixture()
def finished(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    results = harness.run_specs(url, _runs(), progress=False)
    assert not any("error" in r for r in results)
    return optuna.storages.RDBStorage(url)


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.jsonl.gz"])
def test_records_round_trip_to_the_same_report_rows(finished, tmp_path, name):
    path = tmp_path / name
    assert records.export_runs(finished, path) == 4
    if name.endswith(".gz"):
        first = path.read_bytes()
        records.export_runs(finished, path)
        assert path.read_bytes() == first  # no time stamp in the header: same runs, same bytes
        lines = gzip.decompress(first).decode().splitlines()
    else:
        lines = path.read_text().splitlines()
    assert [json.loads(x)["study"] for x in lines] == sorted(r.name for r in _runs())
    other = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}")
    assert records.import_runs(path, other) == 4
    assert _rows(other) == _rows(finished)
    assert all(len(other.get_all_trials(s._study_id)) == 0 for s in other.get_all_studies())  # no trials
    # a second import adds nothing; the harness counts the imported runs as finished
    assert records.import_runs(path, other) == 0
    assert all(r["skipped"] for r in harness.run_specs(other, _runs(), progress=False))


def test_an_interrupted_study_is_replaced_and_a_finished_one_kept(finished, tmp_path):
    path = tmp_path / "runs.jsonl"
    records.export_runs(finished, path)
    other = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}")
    interrupted = optuna.create_study(storage=other, study_name="branin/1-level/random/seed-0")
    interrupted.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    kept = optuna.create_study(storage=other, study_name="branin/1-level/tpe/seed-0")
    kept.set_user_attr(FINISHED_ATTR, True)
    kept.set_user_attr(RESULT_ATTR, {"n_trials": 0, "final_test": None, "final_val": None, "cost": [], "test": []})
    assert records.import_runs(path, other) == 3
    replaced = optuna.load_study(study_name="branin/1-level/random/seed-0", storage=other)
    assert replaced.trials == [] and replaced.user_attrs[FINISHED_ATTR] is True
    assert optuna.load_study(study_name="branin/1-level/tpe/seed-0", storage=other).user_attrs[RESULT_ATTR]["n_trials"] == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('{"study": "x", "direction": "minimize", "user_attrs": {}}', "not a benchmark study name"),
        ('{"study": "a/b/c/seed-1", "direction": "up", "user_attrs": {}}', "direction"),
        ('{"study": "a/b/c/seed-1", "direction": "minimize", "user_attrs": {}}', "not a finished run"),
        ('{"study": "a/b/c/seed-1"}', "exactly the keys"),
    ],
)
def test_a_malformed_file_is_named_and_changes_nothing(finished, tmp_path, line, message):
    good = tmp_path / "good.jsonl"
    records.export_runs(finished, good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + line + "\n")
    other = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(ValueError, match=message) as err:
        records.import_runs(bad, other)
    assert str(bad) in str(err.value)
    assert other.get_all_studies() == []  # the good first line was not imported either
    twice = tmp_path / "twice.jsonl"
    twice.write_text(good.read_text().splitlines()[0] + "\n" + good.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="recorded twice"):
        records.import_runs(twice, other)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        records.import_runs(tmp_path / "missing.jsonl", other)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot be read"):
        records.read_runs(broken)


def test_sampler_suite_continues_from_a_records_file(finished, tmp_path):
    """``--records``: the file's runs are skipped on a fresh storage, the new runs join them
    in the file, and the report covers both."""
    path = tmp_path / "runs.jsonl.gz"
    records.export_runs(finished, path)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = tmp_path / "report"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sampler_suite.py"), "--storage", url, "--problems",
           "branin/1-level", "--methods", "random", "--seeds", "0-2", "--records", str(path), "--out", str(out),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert '"imported": 4' in done.stdout and '"ran": 1' in done.stdout and '"written": 5' in done.stdout
    names = [r["study"] for r in records.read_runs(path)]
    assert "branin/1-level/random/seed-2" in names and len(names) == 5
    rows = {(r.method, r.seed): r for r in load_runs(url)}
    assert set(rows) == {("random", 0), ("random", 1), ("random", 2), ("tpe", 0), ("tpe", 1)}
    assert np.isfinite(rows[("random", 2)].final_test)
    assert (out / "README.md").exists()
    new = tmp_path / "none" / "x.jsonl"
    again = cmd[: cmd.index("--records")] + ["--records", str(new), "--report-only", "--out", str(out)]
    done = subprocess.run(again, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr  # a records file that does not exist yet is created
    assert len(records.read_runs(new)) == 5
    new.write_text("{broken\n")
    done = subprocess.run(again, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 2 and "line 1: not JSON" in done.stderr  # a one-line error, not a traceback
