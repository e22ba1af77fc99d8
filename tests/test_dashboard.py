"""optuna-dashboard on a finished MF-KD study: user attributes, intermediate values, note."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna_mfkd.cli import main

SEARCH = ["--n1", "4", "--n2", "3", "--n-candidates", "300", "--seed", "0", "--quiet", "--n-trials", "10",
          "--budget", "1e9"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def finished_study(nb201_table_path: Path, sqlite_url: str, artifact_dir: Path,
                   capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["search", "--storage", sqlite_url, "--study-name", "dash", "--table",
                 str(nb201_table_path), "--artifact-dir", str(artifact_dir), *SEARCH]) == 0
    out = capsys.readouterr().out
    assert f"optuna-dashboard {sqlite_url} --artifact-dir {artifact_dir}" in out
    return sqlite_url


@pytest.fixture
def dashboard(finished_study: str, artifact_dir: Path) -> Iterator[str]:
    """``optuna-dashboard <storage URL>`` on 127.0.0.1 and a free port; yields its base URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    proc = subprocess.Popen([*cmd, finished_study, "--artifact-dir", str(artifact_dir),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a bound on start-up, not a timing check
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                get_json(f"{base}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_shows_fidelity_kd_loss_cost_and_intermediate_values(dashboard: str, finished_study: str) -> None:
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    (summary,) = [s for s in studies if s["study_name"] == "dash"]
    detail = get_json(f"{dashboard}/api/studies/{summary['study_id']}?after=0")
    stored = optuna.load_study(study_name="dash", storage=finished_study)
    by_number = {t.number: t for t in stored.trials}
    assert len(detail["trials"]) == len(stored.trials) == 10
    for shown in detail["trials"]:
        trial = by_number[shown["number"]]
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        assert attrs["fidelity"] == trial.user_attrs["fidelity"] in ("12ep", "200ep")
        assert attrs["kd_loss"] == "ce"  # NB201's schedules are trained with cross-entropy
        assert float(attrs["cost"]) == pytest.approx(trial.user_attrs["cost"])
        steps = {v["step"]: v["value"] for v in shown["intermediate_values"]}
        epochs = 12 if trial.user_attrs["fidelity"] == "12ep" else 200
        assert steps == {epochs: pytest.approx(trial.value)}
        assert shown["values"] == [pytest.approx(trial.value)]
    # The search's summary is the study's note.
    assert "best high-fidelity cell" in detail["note"]["body"]
    assert "kd_loss=" not in detail["note"]["body"]  # no training loss applies to tabular levels
    keys = {a["key"] for a in detail["union_user_attrs"]}
    assert {"fidelity", "kd_loss", "cost"} <= keys
    assert detail["has_intermediate_values"] is True
    # The summary figure is a study artifact the dashboard serves.
    (artifact,) = detail["artifacts"]
    assert artifact["mimetype"] == "image/png"
    with urllib.request.urlopen(f"{dashboard}/artifacts/{summary['study_id']}/{artifact['artifact_id']}",
                                timeout=30) as resp:
        assert resp.read(8) == b"\x89PNG\r\n\x1a\n"
