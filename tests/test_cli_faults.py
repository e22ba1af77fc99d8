"""Bad input and faults met by a new user of ``optuna-mfkd``: each ends with one line naming
the input, exit code 2, and leaves what is stored as it was."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import wait_for_running_trial, wait_for_trials
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from optuna_mfkd.cli import main
from optuna_mfkd.nasbench201.space import cell_key

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
SMALL = ["--n1", "4", "--n2", "3", "--n-candidates", "300", "--seed", "0", "--strategy", "paper", "--quiet"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *named: str) -> str:
    """Exit code 2, one line on stderr naming every input in ``named``, no traceback, no '.'."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("optuna-mfkd ") and ": error: " in line, line
    for name in named:
        assert name in line, line
    assert "Traceback" not in err
    assert "'.'" not in line and " . " not in line, line  # an empty path never shows up as "."
    return line


def snapshot(url: str) -> dict:
    """Everything a study database holds that a run could change."""
    out = {}
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        out[summary.study_name] = (
            study.user_attrs, study._storage.get_study_system_attrs(study._study_id),
            [(t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs) for t in study.trials],
        )
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stored_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file holding a tabular study 's' with a few trials, made once per module."""
    db = tmp_path_factory.mktemp("template") / "study.db"
    assert main(["search", "--storage", f"sqlite:///{db}", "--study-name", "s", "--budget", "1e9",
                 "--n-trials", "3", *SMALL]) == 0
    return db


@pytest.fixture
def stored(stored_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the stored study in ``tmp_path/study.db`` (cwd: ``tmp_path``), with what it
    holds and its SHA-256, to check that a failed command changed nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    db = tmp_path / "study.db"
    shutil.copyfile(stored_template, db)
    url = f"sqlite:///{db}"
    return url, db, snapshot(url), file_digest(db)


def assert_unchanged(stored) -> None:
    url, db, before, digest = stored
    assert snapshot(url) == before
    assert file_digest(db) == digest


def assert_refused(argv: list[str], path: Path, via: str, flag: str, env: str, stored,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``argv`` with the bad ``path`` given as option ``flag`` or in variable ``env``: one line
    naming that and the file, exit 2, the stored study unchanged."""
    if via == "option":
        argv = [*argv, flag, str(path)]
    else:
        monkeypatch.setenv(env, str(path))
    code, _, err = run_cli(argv, capsys)
    line = assert_one_line_error(code, err, flag if via == "option" else env)
    assert path.name in line
    assert_unchanged(stored)


# ------------------------------------------------------------------------- tables
def _bad_tables(folder: Path) -> dict[str, Path]:
    from optuna_mfkd.nasbench201.table import bundled_table_path

    empty = folder / "empty.csv"
    empty.write_bytes(b"")
    binary = folder / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    wrong = folder / "wrong-columns.csv"
    wrong.write_text("index,arch_str,accuracy\n0,x,1.0\n")
    header_only = folder / "header-only.csv"
    with gzip.open(bundled_table_path(), "rt") as f:
        header_only.write_text(f.readline())
    corrupt_gz = folder / "corrupt.csv.gz"
    corrupt_gz.write_bytes(bundled_table_path().read_bytes()[:50_000])  # truncated
    return {"empty": empty, "binary": binary, "wrong-columns": wrong, "header-only": header_only,
            "corrupt-gz": corrupt_gz, "folder": folder}


@pytest.mark.parametrize("kind", ["empty", "binary", "wrong-columns", "header-only", "corrupt-gz", "folder"])
@pytest.mark.parametrize("via", ["option", "variable"])
def test_bad_table(kind: str, via: str, stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tables").mkdir()
    path = _bad_tables(tmp_path / "tables")[kind]
    argv = ["search", "--storage", stored[0], "--study-name", "s", "--budget", "2e9"]
    assert_refused(argv, path, via, "--table", "NB201_TABLE", stored, monkeypatch, capsys)


# ---------------------------------------------------------------- empty paths, bad values
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A valid 3-class 16x16 ImageFolder zip and a teacher for it."""
    import torch
    from conftest import write_image_zip

    from optuna_mfkd.distill.teacher import save_teacher
    from optuna_mfkd.nasbench201.network import build_network

    folder = tmp_path_factory.mktemp("data")
    data = write_image_zip(folder / "tiny.zip", "cifar10", 16, counts=(("train", 8), ("test", 2)))
    torch.manual_seed(0)
    return data, save_teacher(build_network(RESNET, 3), folder / "teacher.pth")


EMPTY = [
    # (argv after "search", environment, the name the error must give)
    (["--table", ""], {}, "--table"),
    ([], {"NB201_TABLE": ""}, "NB201_TABLE"),
    (["--storage", ""], {}, "--storage"),
    (["--storage", "sqlite:///"], {}, "--storage"),
    (["--storage", "sqlite://"], {}, "--storage"),
    (["--artifact-dir", ""], {}, "--artifact-dir"),
    (["--mode", "hybrid", "--data-root", ""], {}, "--data-root"),
    (["--mode", "hybrid"], {"MFKD_CIFAR10": ""}, "MFKD_CIFAR10"),
    (["--mode", "hybrid", "--data-root", "DATA", "--teacher", ""], {}, "--teacher"),
    (["--mode", "hybrid", "--data-root", "DATA"], {"MFKD_TEACHERS": ""}, "MFKD_TEACHERS"),
    (["--mode", "train", "--dataset", "cifar100"], {"MFKD_CIFAR100": ""}, "MFKD_CIFAR100"),
]


@pytest.mark.parametrize(("argv", "env", "named"), EMPTY, ids=[n + ":" + " ".join(a) for a, _, n in EMPTY])
def test_empty_path_is_named(argv: list[str], env: dict[str, str], named: str, stored, tiny_data,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("MFKD_CIFAR10", "MFKD_CIFAR100", "MFKD_TEACHERS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    argv = [str(tiny_data[0]) if a == "DATA" else a for a in argv]
    if "--storage" not in argv:
        argv = ["--storage", stored[0], "--study-name", "new", *argv]
    code, _, err = run_cli(["search", *argv], capsys)
    assert_one_line_error(code, err, named)
    assert_unchanged(stored)


def test_empty_table_variable_in_nb201_lookup(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NB201_TABLE", "")
    code, _, err = run_cli(["nb201", "0"], capsys)
    assert_one_line_error(code, err, "NB201_TABLE")


@pytest.mark.parametrize(("argv", "named"), [
    (["--dataset", "svhn"], "--dataset"),
    (["--budget", "nan"], "--budget"),
    (["--budget", "-1"], "--budget"),
    (["--budget", "inf"], "--budget"),
    (["--device", "tpu9"], "--device"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_value_on_resume(argv: list[str], named: str, stored, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--mode", "hybrid"] if named == "--device" else []
    code, _, err = run_cli(["search", "--storage", stored[0], "--study-name", "s" if not extra else "d",
                            *extra, *argv], capsys)
    assert_one_line_error(code, err, named)
    assert_unchanged(stored)


# --------------------------------------------------------------------------- storage
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", ["nosuchdb://x", "sqlite:///:memory:", "grpc://127.0.0.1", "grpc://:13000",
                                 "grpc://127.0.0.1:PORT"])
def test_bad_or_unreachable_storage(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    if url.startswith("grpc"):
        pytest.importorskip("grpc", reason="grpcio is not installed (pip install '.[grpc]')")
    monkeypatch.chdir(tmp_path)
    url = url.replace("PORT", str(_free_port()))  # nothing listens there
    code, _, err = run_cli(["search", "--storage", url], capsys)
    assert_one_line_error(code, err, "--storage")
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for this process: mode 0555, or for root (whom modes do not
    stop) the immutable attribute; skips where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                          capture_output=True).returncode != 0:
        pytest.skip("running as root, and this filesystem cannot mark a folder immutable (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_folder_for_a_new_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        probe = folder / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        code, _, err = run_cli(["search", "--storage", f"sqlite:///{folder / 'study.db'}", *SMALL], capsys)
    assert_one_line_error(code, err, "--storage", "study.db", "writable")
    assert list(folder.iterdir()) == []


def test_read_only_folder_for_a_stored_study(stored, capsys: pytest.CaptureFixture[str]) -> None:
    url, db = stored[0], stored[1]
    with read_only(db.parent):
        code, _, err = run_cli(["search", "--storage", url, "--study-name", "s", "--n-trials", "2",
                                "--quiet"], capsys)
    assert_one_line_error(code, err, "--storage", "study.db")
    assert_unchanged(stored)


# ------------------------------------------------------------------ data and teachers
def _bad_data(folder: Path, good: Path) -> dict[str, Path]:
    from conftest import write_image_zip

    folder.mkdir(exist_ok=True)
    junk = folder / "junk.zip"
    junk.write_bytes(os.urandom(4096))
    truncated = folder / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    flat = folder / "flat.zip"  # images, but not in <split>/<class>/ folders
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(flat, "w") as dst:
        for i, name in enumerate(n for n in src.namelist() if n.endswith(".png")):
            dst.writestr(f"img{i}.png", src.read(name))
    damaged = folder / "damaged-image.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"not an image" if name.endswith("/train/a/0.png") else src.read(name))
    sizes = write_image_zip(folder / "sizes.zip", "cifar10", 16, counts=(("train", 2),))
    with zipfile.ZipFile(sizes, "a") as zf, zipfile.ZipFile(
            write_image_zip(folder / "big.zip", "x", 20, counts=(("train", 1),))) as big:
        zf.writestr("cifar10/train/a/9.png", big.read("x/train/a/0.png"))
    return {"junk": junk, "truncated": truncated, "flat": flat, "damaged-image": damaged,
            "mixed-sizes": sizes, "missing": folder / "absent.zip"}


@pytest.mark.parametrize("kind", ["junk", "truncated", "flat", "damaged-image", "mixed-sizes", "missing"])
@pytest.mark.parametrize("via", ["option", "variable"])
def test_bad_data(kind: str, via: str, stored, tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    data, teacher = tiny_data
    path = _bad_data(tmp_path / "data", data)[kind]
    argv = ["search", "--storage", stored[0], "--study-name", "h", "--mode", "hybrid", "--teacher", str(teacher)]
    assert_refused(argv, path, via, "--data-root", "MFKD_CIFAR10", stored, monkeypatch, capsys)


def _bad_teachers(folder: Path) -> dict[str, Path]:
    import torch

    from optuna_mfkd.nasbench201.network import build_network

    folder.mkdir(exist_ok=True)
    garbage = folder / "garbage.pth"
    garbage.write_bytes(os.urandom(2048))
    truncated = folder / "truncated.pth"
    good = folder / "good.pth"
    torch.save({"arch_str": RESNET, "num_classes": 3, "state_dict": build_network(RESNET, 3).state_dict()}, good)
    truncated.write_bytes(good.read_bytes()[:5000])
    wrong_keys = folder / "wrong-keys.pth"
    torch.save({"arch_str": RESNET, "num_classes": 3, "state_dict": {"conv.weight": torch.zeros(1)}}, wrong_keys)
    no_arch = folder / "no-arch.pth"
    torch.save({"weights": [1, 2, 3]}, no_arch)
    empty_dir = folder / "no-teachers"
    empty_dir.mkdir()
    return {"garbage": garbage, "truncated": truncated, "wrong-keys": wrong_keys, "no-arch": no_arch,
            "folder-without-teacher": empty_dir, "missing": folder / "absent.pth"}


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong-keys", "no-arch", "folder-without-teacher",
                                  "missing"])
@pytest.mark.parametrize("via", ["option", "variable"])
def test_bad_teacher(kind: str, via: str, stored, tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = tiny_data
    path = _bad_teachers(tmp_path / "teachers")[kind]
    argv = ["search", "--storage", stored[0], "--study-name", "h", "--mode", "hybrid", "--data-root", str(data)]
    assert_refused(argv, path, via, "--teacher", "MFKD_TEACHERS", stored, monkeypatch, capsys)


def test_download_refuses_imagenet16(stored, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["search", "--storage", stored[0], "--study-name", "i", "--mode", "hybrid",
                            "--dataset", "imagenet16", "--download"], capsys)
    assert_one_line_error(code, err, "--download", "ImageNet16-120")
    assert_unchanged(stored)


def test_download_without_network_is_one_line(stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The fetch fails (no route to the mirrors here; urllib is made to refuse, so the test
    needs no network either way): one line naming --download and the folder."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    target = tmp_path / "cifar"
    code, _, err = run_cli(["search", "--storage", stored[0], "--study-name", "dl", "--mode", "hybrid",
                            "--download", "--data-root", str(target), "--kd-loss", "ce"], capsys)
    assert_one_line_error(code, err, "--download", str(target))
    assert_unchanged(stored)


# ----------------------------------------------------------------- SIGKILL and resume


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_sigkill_mid_trial_then_resume(sqlite_url: str, tmp_path: Path) -> None:
    """SIGKILL a search mid-trial (no chance to clean up): the next run fails the stale trial,
    evaluates it again once, and goes on; no trial is lost or evaluated twice."""
    argv = [sys.executable, "-m", "optuna_mfkd.cli", "search", "--storage", sqlite_url, "--study-name", "k",
            "--budget", "1e9", "--heartbeat", "1", "--grace-period", "2", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Sleep 0.005 s per simulated second: about 1 s per 12-epoch trial, 15 s per 200-epoch one.
    proc = subprocess.Popen([*argv, "--time-scale", "0.005"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        # Let a few trials finish first, so the kill hits a study with history.
        wait_for_trials(sqlite_url, "k", proc, "COMPLETE", 3)
        killed = wait_for_running_trial(sqlite_url, "k", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = optuna.load_study(study_name="k", storage=sqlite_url).trials
    assert [t.state for t in before if t.number == killed.number] == [TrialState.RUNNING]
    time.sleep(3)  # past the grace period: the killed trial's heartbeat is stale
    res = subprocess.run([*argv, "--n-trials", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr

    study = optuna.load_study(study_name="k", storage=sqlite_url)
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(before) + 3))
    assert {t.number: t.state for t in trials}.pop(killed.number) == TrialState.FAIL
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != killed.number)
    for old in before:  # what was stored before the kill is still there, unchanged
        if old.number != killed.number:
            new = trials[old.number]
            assert (new.params, new.value, new.user_attrs) == (old.params, old.value, old.user_attrs)
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert retries[0].user_attrs["fidelity"] == killed.user_attrs["fidelity"]
    top = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["fidelity"] == "200ep"]
    assert len({cell_key(t.params) for t in top}) == len(top), "a 200-epoch cell was evaluated twice"
