"""Workers on one study through Optuna's gRPC storage proxy (``optuna-mfkd proxy``) on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import finish
from optuna.trial import TrialState

from optuna_mfkd.cli import WORKER_ATTR, main
from optuna_mfkd.nasbench201.space import cell_key

pytestmark = [pytest.mark.usefixtures("grpc_proxy"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

N1, N2 = 4, 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "optuna_mfkd.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def proxy(url: str, port: int):
    """An ``optuna-mfkd proxy`` process serving ``url`` on 127.0.0.1:``port``."""
    from optuna.storages import GrpcStorageProxy

    # A job started in the background of a non-interactive shell inherits an ignored SIGINT;
    # give the proxy the default disposition a terminal session has, so Ctrl-C stops it.
    proc = subprocess.Popen(cli("proxy", "--storage", url, "--port", str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        client = GrpcStorageProxy(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 180
        while True:  # a bound on waiting for the server to start, not a check
            assert proc.poll() is None, proc.communicate()
            try:
                client.wait_server_ready(timeout=1)
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the proxy did not start"
        client.close()
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        code, text = finish(proc, timeout=60)
        assert code in (0, 130), text


@pytest.mark.slow
def test_two_workers_through_the_proxy(sqlite_url: str) -> None:
    """``search`` and a ``worker`` share one study through the proxy: every trial is stored
    once, each process ran its own, and no 200-epoch cell (up to isomorphism) is evaluated twice."""
    port = free_port()
    grpc_url = f"grpc://127.0.0.1:{port}"
    per_worker = 5  # 10 trials: 7 random warm-up ones, then GP-UCB steps from both processes
    common = ["--storage", grpc_url, "--study-name", "g", "--n-trials", str(per_worker), "--quiet"]
    with proxy(sqlite_url, port):
        first = subprocess.Popen(cli("search", *common, "--n1", str(N1), "--n2", str(N2), "--n-candidates",
                                     "200", "--budget", "1e9", "--seed", "5", "--strategy", "paper"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 240
        while not optuna.get_all_study_summaries(sqlite_url):  # the study exists in the database
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the study was not created"
            time.sleep(0.2)
        second = subprocess.Popen(cli("worker", *common), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=ENV)
        for proc in (first, second):
            code, text = finish(proc)
            assert code == 0, text
    study = optuna.load_study(study_name="g", storage=sqlite_url)  # the database itself, not the proxy
    trials = study.trials
    assert len(trials) == 2 * per_worker
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(Counter(t.user_attrs[WORKER_ATTR] for t in trials).values()) == [per_worker, per_worker]
    assert {t.user_attrs[WORKER_ATTR].rsplit(":", 1)[1] for t in trials} == {str(first.pid), str(second.pid)}
    levels = Counter(t.user_attrs["fidelity"] for t in trials)
    assert N1 <= levels["12ep"] <= N1 + 1 and levels["12ep"] + levels["200ep"] == len(trials)
    top = [t for t in trials if t.user_attrs["fidelity"] == "200ep"]
    assert len({cell_key(t.params) for t in top}) == len(top), "a 200-epoch cell was evaluated twice"


def test_proxy_refuses_a_proxy_url_and_an_empty_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("grpc://127.0.0.1:13000", ""):
        assert main(["proxy", "--storage", url]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("optuna-mfkd proxy: error: --storage"), err
    assert list(tmp_path.iterdir()) == []
