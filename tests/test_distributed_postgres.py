"""Many ``optuna-mfkd`` processes on one MFKDSampler study in PostgreSQL, and their faults.

Needs ``MFKD_TEST_POSTGRES_URL`` (``.ci/run`` starts a server on 127.0.0.1) and the NB201
table (``NB201_TABLE``). Each test gets a fresh database.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import finish
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd.cli import WORKER_ATTR, main
from optuna_mfkd.nasbench201.space import cell_key
from optuna_mfkd.sampler import HOW_ATTR

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

N1, N2 = 4, 3
SEARCH = ["--n1", str(N1), "--n2", str(N2), "--n-candidates", "300", "--budget", "1e9", "--quiet", "--strategy", "paper"]
HEARTBEAT = ["--heartbeat", "1", "--grace-period", "3"]
GRACE_S = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "optuna_mfkd.cli", *args]


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(predicate, what: str, procs: list[subprocess.Popen], limit_s: float = 300):
    """Poll ``predicate()`` until it returns something truthy (a bound on waiting, not a check)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() not in (None, 0):
                raise AssertionError(f"a process ended early ({p.returncode}): {p.communicate()[1]}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def load(url: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return None


def cell(trial: FrozenTrial) -> tuple:
    return tuple(sorted(trial.params.items()))


def check_consistent(study: optuna.Study, n_workers: int) -> None:
    """No highest-level cell twice; warm-up counts within ``n_workers - 1`` of the configured."""
    done = study.get_trials(states=(TrialState.COMPLETE,))
    high = [t for t in done if t.user_attrs["fidelity"] == "200ep"]
    assert len({cell(t) for t in high}) == len(high), "a 200-epoch cell was evaluated twice"
    # Isomorphic cells count as one (the command's sampler keys points by canonical form).
    assert len({cell_key(t.params) for t in high}) == len(high), "isomorphic 200-epoch cells"
    # Warm-up points are random: drawn by the sampler ("random"), or by Optuna's independent
    # sampling on the study's very first trial, before the search space is known (no mark).
    warm = Counter(t.user_attrs["fidelity"] for t in done if t.system_attrs.get(HOW_ATTR, "random") == "random")
    assert N1 <= warm["12ep"] <= N1 + n_workers - 1, warm
    assert N2 <= warm["200ep"] <= N2 + n_workers - 1, warm
    assert all(t.user_attrs["fidelity"] == "200ep" for t in done if t.system_attrs.get(HOW_ATTR, "random") != "random")


def test_three_workers_one_study(fresh_postgres_url: str, nb201_table_path: Path) -> None:
    url, per_worker, n_workers = fresh_postgres_url, 6, 3
    common = ["--storage", url, "--study-name", "d", "--table", str(nb201_table_path),
              "--n-trials", str(per_worker)]
    first = start(cli("search", *common, *SEARCH, "--seed", "1"))
    wait_for(lambda: load(url, "d"), "the study to be created", [first])
    others = [start(cli("worker", *common, "--quiet")) for _ in range(n_workers - 1)]
    results = [finish(p) for p in [first, *others]]
    for code, text in results:
        assert code == 0, text
    study = load(url, "d")
    assert study is not None
    assert len(study.trials) == n_workers * per_worker
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    by_worker = Counter(t.user_attrs[WORKER_ATTR] for t in study.trials)
    assert sorted(by_worker.values()) == [per_worker] * n_workers
    check_consistent(study, n_workers)


def test_killed_worker_trial_is_retried(fresh_postgres_url: str, nb201_table_path: Path) -> None:
    """SIGKILL a worker mid-trial: its trial goes stale, fails, is retried; nothing is lost."""
    url, per_worker = fresh_postgres_url, 4
    common = ["--storage", url, "--study-name", "k", "--table", str(nb201_table_path), *HEARTBEAT,
              "--time-scale", "0.0005"]
    first = start(cli("search", *common, *SEARCH, "--n-trials", str(per_worker), "--seed", "2"))
    wait_for(lambda: load(url, "k"), "the study to be created", [first])
    survivor = start(cli("worker", *common, "--n-trials", str(per_worker), "--quiet"))
    victim = start(cli("worker", *common, "--n-trials", "100", "--quiet"))

    def victim_mid_trial() -> FrozenTrial | None:
        study = load(url, "k")
        for t in study.get_trials(states=(TrialState.RUNNING,)) if study else []:
            if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}") and "cost" in t.user_attrs:
                return t
        return None

    killed = wait_for(victim_mid_trial, "the victim to be mid-trial", [first, survivor, victim])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in (first, survivor):
        code, text = finish(p)
        assert code == 0, text
    time.sleep(GRACE_S + 1)  # let the heartbeat of the killed trial go stale
    resumed = start(cli("worker", *common, "--n-trials", "3", "--quiet"))
    code, text = finish(resumed)
    assert code == 0, text

    study = load(url, "k")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [killed.number]
    retries = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert retries[0].user_attrs["fidelity"] == killed.user_attrs["fidelity"]
    victim_done = sum(1 for t in study.trials if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")
                      and t.state == TrialState.COMPLETE)
    assert len(study.trials) == 2 * per_worker + 3 + victim_done + 1
    assert all(t.state == TrialState.COMPLETE for t in study.trials if t.number != killed.number)
    check_consistent(study, n_workers=3)


CRASH_IN_FIT = """
import os, signal, sys
import optuna_mfkd.gp.model as gp_model
def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
gp_model.fit_ar1_model = crash
from optuna_mfkd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_crash_during_gp_fit_is_retried(fresh_postgres_url: str, nb201_table_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = fresh_postgres_url
    common = ["--storage", url, "--study-name", "g", "--table", str(nb201_table_path), *HEARTBEAT]
    assert main(["search", *common, *SEARCH, "--n-trials", str(N1 + N2), "--seed", "3"]) == 0
    # The next trial fits the GP: this process dies inside the fit.
    crash = subprocess.run([sys.executable, "-c", CRASH_IN_FIT, "worker", *common, "--n-trials", "1"],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    study = load(url, "g")
    stuck = study.get_trials(states=(TrialState.RUNNING,))
    assert len(stuck) == 1 and stuck[0].params == {}
    time.sleep(GRACE_S + 1)
    assert main(["worker", *common, "--n-trials", "2", "--quiet"]) == 0
    study = load(url, "g")
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [stuck[0].number]
    retry = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == stuck[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["fidelity"] == "200ep" and len(retry[0].params) == 6
    assert len(study.trials) == N1 + N2 + 1 + 2
    check_consistent(study, n_workers=1)


def test_diverging_trial_fails_and_study_goes_on(fresh_postgres_url: str, nb201_table_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An objective that diverges (returns NaN, as the training objective does) fails only its trial."""
    from optuna_mfkd.nasbench201 import tabular

    original = tabular.TabularObjective.__call__
    diverge_at = N1 + N2 + 1

    def sometimes_nan(self, trial):
        value = original(self, trial)
        return math.nan if trial.number == diverge_at else value

    monkeypatch.setattr(tabular.TabularObjective, "__call__", sometimes_nan)
    url = fresh_postgres_url
    n = N1 + N2 + 4
    assert main(["search", "--storage", url, "--study-name", "n", "--table", str(nb201_table_path),
                 *SEARCH, "--n-trials", str(n), "--seed", "4"]) == 0
    study = load(url, "n")
    assert len(study.trials) == n
    states = {t.number: t.state for t in study.trials}
    assert states.pop(diverge_at) == TrialState.FAIL
    assert set(states.values()) == {TrialState.COMPLETE}
    check_consistent(study, n_workers=1)
