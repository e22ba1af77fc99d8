"""The ``optuna-mfkd`` command: help, argument errors, nb201 look-ups, search/resume, Ctrl-C."""

from __future__ import annotations

import csv
import functools
import gzip
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import wait_for_running_trial
from optuna.trial import TrialState

from optuna_mfkd.cli import CONFIG_ATTR, WORKER_ATTR, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["search", "worker", "nb201"]
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
# A small tabular search: 4 + 3 random warm-up trials, then GP-UCB steps.
SMALL = ["--n1", "4", "--n2", "3", "--n-candidates", "300", "--seed", "0", "--strategy", "paper", "--quiet"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``optuna-mfkd`` in this process; (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits on --help and on parse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@functools.lru_cache(maxsize=4)
def _table_rows(path: Path) -> dict[int, dict[str, str]]:
    """The table file's rows as read by the csv module (plain or gzip-compressed)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return {int(row["index"]): row for row in csv.DictReader(f)}


def table_row(path: Path, index: int) -> dict[str, str]:
    rows = _table_rows(Path(path))
    if index not in rows:
        raise AssertionError(f"index {index} not in {path}")
    return rows[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------- help
@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in SUBCOMMANDS],
                                  ["teacher", "finetune", "--help"], ["benchmark", "--help"],
                                  ["report", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    assert out.startswith("usage: optuna-mfkd")
    assert argv[0] == "--help" or f"optuna-mfkd {argv[0]}" in out.splitlines()[0]


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("optuna-mfkd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "optuna_mfkd.cli"]
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for sub in [*SUBCOMMANDS, "benchmark", "report", "teacher"]:
        assert sub in res.stdout


# ------------------------------------------------------------------------ bad arguments
BAD = [
    (["search", "--budget", "0"], "--budget"),
    (["search", "--budget", "-5"], "--budget"),
    (["search", "--budget", "nan"], "--budget"),
    (["search", "--n-trials", "0"], "--n-trials"),
    (["search", "--n1", "-1"], "--n1"),
    (["search", "--beta", "abc"], "--beta"),
    (["search", "--dataset", "mnist"], "--dataset"),
    (["search", "--mode", "fast"], "--mode"),
    (["search", "--kd-loss", "l2"], "--kd-loss"),
    (["search", "--table", "/no/such/table.csv"], "--table"),
    (["search", "--storage", "not-a-url"], "--storage"),
    (["search", "--storage", "nosuchdb://x"], "--storage"),
    (["search", "--e1", "200", "--e2", "12"], "--e1"),
    (["search", "--e2", "100"], "--e2"),
    (["search", "--protocol", "nb201", "--mode", "hybrid"], "--protocol"),
    (["search", "--protocol", "paper"], "--protocol"),
    (["worker"], "--study-name"),
    (["nb201", "15625"], "15625"),
    (["nb201", "|none~0|+|none~0|"], "|none~0|+|none~0|"),
    (["nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "conv"),
    (["frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_argument_is_one_line(
    argv: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NB201_TABLE", str(tmp_path / "absent.csv"))
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("optuna-mfkd")
    assert named in lines[0]
    assert "Traceback" not in err + out


def test_unreachable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://mfkd:secret@127.0.0.1:{free_port()}/mfkd"
    code, _, err = run_cli(["search", "--storage", url], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--storage" in err and "secret" not in err  # the password is not printed


def test_missing_table_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NB201_TABLE", str(tmp_path / "absent.csv"))
    code, _, err = run_cli(["search", "--budget", "1000"], capsys)
    assert code == 2
    assert "NB201_TABLE" in err and "absent.csv" in err
    assert not list(tmp_path.iterdir()) or _study_names(f"sqlite:///{tmp_path / 'optuna-mfkd.db'}") == []


def test_search_without_table_uses_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing set: the table shipped with the package answers (values as in its file)."""
    from optuna_mfkd.nasbench201.table import bundled_table_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NB201_TABLE", raising=False)
    code, out, err = run_cli(["search", "--budget", "2000", *SMALL], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="mfkd", storage=f"sqlite:///{tmp_path / 'optuna-mfkd.db'}")
    assert len(study.trials) >= 2
    column = {"12ep": "cifar10_valid_val_acc_12ep", "200ep": "cifar10_valid_val_acc_200ep_mean"}
    for t in study.trials:
        row = table_row(bundled_table_path(), t.user_attrs["nb201_index"])
        assert t.value == pytest.approx(float(row[column[t.user_attrs["fidelity"]]]))


def _study_names(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(url)]


# ----------------------------------------------------------------------------- nb201
def test_nb201_lookup_matches_table(nb201_table_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = table_row(nb201_table_path, 11472)
    for cell in ["11472", RESNET]:
        code, out, err = run_cli(["nb201", cell, "--table", str(nb201_table_path), "--dataset", "cifar100"], capsys)
        assert code == 0, err
        assert "11472" in out and RESNET in out
        numbers = re.findall(r"(?:val@12|val@200|test@200)\s+([\d.]+)", out)
        expected = [row["cifar100_val_acc_12ep"], row["cifar100_val_acc_200ep_mean"], row["cifar100_test_acc_200ep"]]
        assert [float(x) for x in numbers] == pytest.approx([float(x) for x in expected], abs=0.006)


def test_nb201_without_table_uses_the_bundled_one(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from optuna_mfkd.nasbench201.table import bundled_table_path

    monkeypatch.delenv("NB201_TABLE", raising=False)
    code, out, err = run_cli(["nb201", "0", "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    row = table_row(bundled_table_path(), 0)
    assert info["index"] == 0 and info["arch_str"] == row["arch_str"]
    assert info["imagenet16"]["test_acc_200ep"] == pytest.approx(float(row["imagenet16_test_acc_200ep"]))


# ---------------------------------------------------------------------------- search
def test_search_tabular_and_resume(nb201_table_path: Path, sqlite_url: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--storage", sqlite_url, "--study-name", "s", "--table", str(nb201_table_path)]
    code, out, err = run_cli([*base, "--budget", "40000", *SMALL], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == len(study.trials)
    levels = [t.user_attrs["fidelity"] for t in trials]
    assert levels[:4] == ["12ep"] * 4 and set(levels[4:]) == {"200ep"}
    costs = [t.user_attrs["cost"] for t in trials]
    assert sum(costs) >= 40000 > sum(costs[:-1])  # stops on the first trial past the budget
    assert all(t.user_attrs[WORKER_ATTR] for t in trials)
    # The summary names the best 200-epoch cell and its table test accuracy.
    best = max((t for t in trials if t.user_attrs["fidelity"] == "200ep"), key=lambda t: t.value)
    index = best.user_attrs["nb201_index"]
    row = table_row(nb201_table_path, index)
    assert f"NB201 index {index}" in out
    assert f"{float(row['cifar10_valid_val_acc_200ep_mean']):.2f}%" in out
    assert f"{float(row['cifar10_test_acc_200ep']):.2f}%" in out
    assert f"optuna-dashboard {sqlite_url}" in out

    # A conflicting option is refused and nothing stored changes.
    n, config = len(study.trials), study.user_attrs[CONFIG_ATTR]
    code, _, err = run_cli([*base, "--n1", "5", "--budget", "60000"], capsys)
    assert code == 2 and "--n1" in err
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    assert len(study.trials) == n and study.user_attrs[CONFIG_ATTR] == config

    # Resuming with a larger budget goes on with the stored configuration.
    code, out, err = run_cli([*base, "--budget", "50000", "--quiet"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    assert len(study.trials) > n
    assert sum(t.user_attrs["cost"] for t in study.trials) >= 50000
    assert study.user_attrs[CONFIG_ATTR]["n1"] == 4


def test_search_strategy_is_stored_and_the_cost_aware_one_chooses_levels(
        nb201_table_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--storage", sqlite_url, "--table", str(nb201_table_path), "--seed", "0", "--quiet"]
    code, _, err = run_cli([*base, "--study-name", "c", "--strategy", "cost-aware", "--n1", "6", "--n2", "2",
                            "--budget", "60000"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="c", storage=sqlite_url)
    assert study.user_attrs[CONFIG_ATTR]["strategy"] == "cost-aware"
    levels = [t.user_attrs["fidelity"] for t in study.trials]
    assert levels[:8] == ["12ep"] * 6 + ["200ep"] * 2
    # the two promoted cells are the best 12-epoch ones of the warm-up
    low = sorted(study.trials[:6], key=lambda t: -t.value)
    assert [t.params for t in study.trials[6:8]] == [t.params for t in low[:2]]
    assert {"12ep", "200ep"} <= set(levels[8:]), levels
    code, _, err = run_cli([*base, "--study-name", "c", "--strategy", "paper"], capsys)
    assert code == 2 and "--strategy" in err
    code, _, err = run_cli([*base, "--study-name", "p", "--strategy", "paper", "--n1", "4", "--n2", "2",
                            "--budget", "30000"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="p", storage=sqlite_url)
    assert set(t.user_attrs["fidelity"] for t in study.trials[6:]) <= {"200ep"}


def test_search_nb201_protocol(nb201_table_path: Path, sqlite_url: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """One level (12-epoch validation accuracy, cost 12 epochs), n2 random trials, then GP-UCB."""
    code, out, err = run_cli(["search", "--protocol", "nb201", "--storage", sqlite_url, "--table",
                              str(nb201_table_path), "--n2", "3", "--n-candidates", "300", "--seed", "0",
                              "--budget", "3000", "--quiet"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="mfkd", storage=sqlite_url)
    assert {t.user_attrs["fidelity"] for t in study.trials} == {"12ep"}
    assert len(study.trials) > 3
    for t in study.trials:
        row = table_row(nb201_table_path, t.user_attrs["nb201_index"])
        assert t.value == pytest.approx(float(row["cifar10_valid_val_acc_12ep"]))
        assert t.user_attrs["cost"] == pytest.approx(12 * float(row["cifar10_train_seconds_per_epoch"]))
    assert "12-epoch validation accuracy" in out


def test_search_refuses_minimize_study(nb201_table_path: Path, sqlite_url: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.create_study(storage=sqlite_url, study_name="m", direction="minimize")
    study.add_trial(optuna.create_trial(value=1.0))
    code, _, err = run_cli(["search", "--storage", sqlite_url, "--study-name", "m",
                            "--table", str(nb201_table_path)], capsys)
    assert code == 2 and "--study-name" in err and "minimize" in err
    study = optuna.load_study(study_name="m", storage=sqlite_url)
    assert len(study.trials) == 1 and study.user_attrs == {}


def test_worker_joins_existing_study(nb201_table_path: Path, sqlite_url: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["search", "--storage", sqlite_url, "--study-name", "w", "--table",
                            str(nb201_table_path), "--budget", "1e9", "--n-trials", "3", *SMALL], capsys)
    assert code == 0, err
    code, out, err = run_cli(["worker", "--storage", sqlite_url, "--study-name", "w", "--table",
                              str(nb201_table_path), "--n-trials", "5", "--quiet"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="w", storage=sqlite_url)
    assert len(study.trials) == 8
    assert [t.user_attrs["fidelity"] for t in study.trials] == ["12ep"] * 4 + ["200ep"] * 4
    assert "joined study 'w'" in out


# ------------------------------------------------------------------------ live modes
@pytest.fixture
def tiny_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A 3-class ImageFolder zip of random 16x16 images and a teacher trained on nothing."""
    import torch
    from conftest import write_image_zip

    from optuna_mfkd.distill.teacher import save_teacher
    from optuna_mfkd.nasbench201.network import build_network

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    path = write_image_zip(tmp_path / "tiny.zip", "cifar10", 16)
    torch.manual_seed(0)
    teacher = save_teacher(build_network(RESNET, 3), tmp_path / "teacher.pth")
    return path, teacher


LIVE = ["--n1", "2", "--n2", "2", "--n-candidates", "100", "--seed", "0", "--quiet", "--strategy", "paper",
        "--train-images", "16", "--eval-images", "16", "--budget", "1e9", "--n-trials", "5"]


@pytest.mark.parametrize("mode", ["train", "hybrid"])
def test_search_live_modes(mode: str, tiny_cifar: tuple[Path, Path], nb201_table_path: Path,
                           sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data, teacher = tiny_cifar
    extra = ["--e1", "1", "--e2", "2"] if mode == "train" else []
    code, out, err = run_cli(["search", "--mode", mode, "--storage", sqlite_url, "--study-name", mode,
                              "--table", str(nb201_table_path), "--data-root", str(data),
                              "--teacher", str(teacher), *extra, *LIVE], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name=mode, storage=sqlite_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
    low = [t for t in study.trials if t.user_attrs["fidelity"] == "1ep-nst"]
    high = [t for t in study.trials if t.user_attrs["fidelity"] != "1ep-nst"]
    assert len(low) == 2 and len(high) == 3
    assert all(t.user_attrs["kd_loss"] == "nst" and t.user_attrs["cost"] > 0 for t in low)
    assert all(sorted(t.intermediate_values) == [1] for t in low)
    if mode == "hybrid":  # the high fidelity is the table's 12-epoch validation accuracy
        for t in high:
            row = table_row(nb201_table_path, t.user_attrs["nb201_index"])
            assert t.value == pytest.approx(float(row["cifar10_valid_val_acc_12ep"]))
        assert "200-epoch test accuracy" in out
        from optuna_mfkd.training.objectives import TIME_RATIOS

        for t in low:  # 1 epoch x 16 of the 24 training images x seconds/epoch x NST's time ratio
            row = table_row(nb201_table_path, t.user_attrs["nb201_index"])
            spe = float(row["cifar10_train_seconds_per_epoch"])
            assert t.user_attrs["cost"] == pytest.approx(16 / 24 * spe * TIME_RATIOS["nst"])
    else:
        assert all(t.user_attrs["kd_loss"] == "ce" and sorted(t.intermediate_values) == [1, 2] for t in high)


def test_kd_overhead_is_charged_and_only_in_hybrid_mode(tiny_cifar: tuple[Path, Path], nb201_table_path: Path,
                                                       sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data, teacher = tiny_cifar
    code, _, err = run_cli(["search", "--mode", "hybrid", "--kd-overhead", "2.5", "--storage", sqlite_url,
                            "--study-name", "h", "--table", str(nb201_table_path), "--data-root", str(data),
                            "--teacher", str(teacher), *LIVE[:-1], "2"], capsys)
    assert code == 0, err
    low = [t for t in optuna.load_study(study_name="h", storage=sqlite_url).trials if t.user_attrs["fidelity"] == "1ep-nst"]
    assert len(low) == 2
    for t in low:
        spe = float(table_row(nb201_table_path, t.user_attrs["nb201_index"])["cifar10_train_seconds_per_epoch"])
        assert t.user_attrs["cost"] == pytest.approx(16 / 24 * spe * 2.5)
    code, _, err = run_cli(["search", "--kd-overhead", "2", "--storage", sqlite_url, "--study-name", "t",
                            "--table", str(nb201_table_path)], capsys)
    assert code == 2 and "--kd-overhead" in err and "hybrid" in err
    assert _study_names(sqlite_url) == ["h"]


def test_time_ratio_flag_and_its_deprecated_name(nb201_table_path: Path, sqlite_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--storage", sqlite_url, "--study-name", "t", "--table", str(nb201_table_path)]
    code, _, err = run_cli([*base, "--time-ratio", "2"], capsys)
    assert code == 2 and "--time-ratio 2.0: only hybrid mode" in err and "deprecated" not in err
    code, _, err = run_cli([*base, "--kd-overhead", "2"], capsys)
    assert code == 2 and "warning: --kd-overhead is deprecated; use --time-ratio" in err
    assert "--time-ratio 2.0: only hybrid mode" in err
    assert _study_names(sqlite_url) == []


def test_configuration_of_an_older_study_is_read_under_the_new_names(sqlite_url: str) -> None:
    from optuna_mfkd.cli import resolve_config
    from optuna_mfkd.cli.study import stored_config as _stored_config

    study = optuna.create_study(storage=sqlite_url, study_name="old", direction="maximize")
    study.set_user_attr(CONFIG_ATTR, {"mode": "hybrid", "dataset": "cifar10", "e1": 1, "e2": 12,
                                      "kd_overhead": 2.5, "budget": 100.0})
    stored = _stored_config(study._storage, study._study_id)
    assert stored is not None and stored["time_ratio"] == 2.5 and "kd_overhead" not in stored
    config = resolve_config(build_parser().parse_args(["search"]), stored)
    assert config.time_ratio == 2.5 and config.mode == "hybrid" and config.budget == 100.0
    assert config.strategy == "paper" and config.acquisition == "ucb"  # what it ran with


def test_search_live_mode_needs_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     nb201_table_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MFKD_CIFAR10", raising=False)
    code, _, err = run_cli(["search", "--mode", "hybrid", "--table", str(nb201_table_path)], capsys)
    assert code == 2 and "--data-root" in err and "MFKD_CIFAR10" in err
    monkeypatch.setenv("MFKD_TEACHERS", str(tmp_path))
    code, _, err = run_cli(["search", "--mode", "hybrid", "--table", str(nb201_table_path),
                            "--data-root", str(tmp_path)], capsys)
    assert code == 2 and "--teacher" in err
    assert not (tmp_path / "optuna-mfkd.db").exists() or _study_names(f"sqlite:///{tmp_path / 'optuna-mfkd.db'}") == []


# ------------------------------------------------------------------------------ Ctrl-C
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_leaves_study_resumable(sig: int, nb201_table_path: Path, sqlite_url: str) -> None:
    """SIGINT/SIGTERM mid-trial: exit 130, the trial FAIL and queued again; the next run evaluates it."""
    argv = [sys.executable, "-m", "optuna_mfkd.cli", "search", "--storage", sqlite_url,
            "--study-name", "c", "--table", str(nb201_table_path), "--budget", "1e9",
            "--time-scale", "0.05", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A job started in the background of a non-interactive shell inherits an ignored SIGINT;
    # give the child the default disposition a terminal session has.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        running = wait_for_running_trial(sqlite_url, "c", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "resume with" in err and "Traceback" not in err
    study = optuna.load_study(study_name="c", storage=sqlite_url)
    states = {t.number: t.state for t in study.trials}
    assert states[running.number] == TrialState.FAIL
    assert TrialState.RUNNING not in states.values()
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["failed_trial"] == running.number

    res = subprocess.run([*argv[:-1], "--time-scale", "0", "--n-trials", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="c", storage=sqlite_url)
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == running.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == running.params
    assert retried[0].user_attrs["fidelity"] == running.user_attrs["fidelity"]




# ---------------------------------------------------------------------- documentation
def _doc_commands(prefix: str) -> list[str]:
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```(?:bash|console|sh)\n(.*?)```", path.read_text(), flags=re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    part = part.strip()
                    if part.startswith(prefix):
                        commands.append(part)
    return commands


def test_documented_commands_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Every ``optuna-mfkd`` command in the README and docs is accepted by the parser.

    The README's main job runs in full in ``.ci/run``; search/worker/nb201 behaviour is
    tested above, the harness commands by its own tests.
    """
    for var in ("NB201_TABLE", "MFKD_CIFAR10", "MFKD_TEACHERS"):
        if not os.environ.get(var):
            monkeypatch.setenv(var, str(tmp_path))
    commands = _doc_commands("optuna-mfkd ")
    assert any(c.startswith("optuna-mfkd search") for c in commands)
    for command in commands:
        argv = shlex.split(os.path.expandvars(command))[1:]
        if argv[0] in ("benchmark", "report"):
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"{command}: {capsys.readouterr().err}"


def test_documented_benchmark_commands_run(nb201_table_path: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark and report commands of the docs run as written (in a scratch folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NB201_TABLE", str(nb201_table_path))
    commands = [c for c in _doc_commands("optuna-mfkd ") if c.split()[1] in ("benchmark", "report")]
    assert [c.split()[1] for c in commands] == ["benchmark", "report"]
    for command in commands:
        code, _, err = run_cli(shlex.split(os.path.expandvars(command))[1:], capsys)
        assert code == 0, f"{command}: {err}"
    assert (tmp_path / "bench-report" / "README.md").is_file()


def test_getting_started_python_example(nb201_table_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The Python example of getting-started.md runs (with a smaller budget, still past the warm-up)."""
    monkeypatch.setenv("NB201_TABLE", str(nb201_table_path))
    text = (ROOT / "docs" / "getting-started.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert "MaxCostCallback(200_000)" in code
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exec(compile(code.replace("200_000", "80_000"), "getting-started.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"(\|[a-z_0-9]+~\d)+\|(\+(\|[a-z_0-9]+~\d)+\|)+", printed), printed


@pytest.mark.parametrize(("values", "message"), [
    ({"protocol": "nb201", "mode": "hybrid", "e1": 12, "e2": 12, "n1": 0}, "--protocol nb201 is a tabular protocol"),
    ({"protocol": "nb201", "e1": 12, "e2": 12, "n1": 5}, "drop --e1/--e2/--n1"),
    ({"e1": 1}, "--e1 1: the NB201 table holds 12 and 200 epochs only"),
    ({"time_ratio": 2.0}, "--time-ratio 2.0: only hybrid mode"),
    ({"mode": "hybrid", "e1": 1, "e2": 200}, "--e2 200: in hybrid mode"),
    ({"mode": "train", "e1": 12, "e2": 12}, "--e1 12 must be smaller than --e2 12"),
])
def test_search_config_checks_the_rules_between_options(values: dict, message: str) -> None:
    from optuna_mfkd.cli import CLIError, SearchConfig

    with pytest.raises(CLIError, match=re.escape(message)):
        SearchConfig(**values)
    assert SearchConfig().level_settings() == {"12ep": {"epochs": 12, "kd_loss": "ce"},
                                               "200ep": {"epochs": 200, "kd_loss": "ce"}}
