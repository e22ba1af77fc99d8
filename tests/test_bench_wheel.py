"""The installed package runs a benchmark and its report with no repository beside it.

The wheel is built from a copy of the package (nothing is written into the checkout) and
installed into a fresh virtual environment, which sees this environment's packages (torch,
Optuna, ...) after its own, so the package it imports is the wheel's. ``optuna-mfkd benchmark``
and ``optuna-mfkd report`` then run from a scratch folder outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MFKD_POOL")}
    return subprocess.run(cmd, cwd=cwd, env={**environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_installed_wheel_runs_benchmark_and_report(tmp_path: Path) -> None:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here (the wheel is built without build isolation)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "optuna_mfkd", src / "optuna_mfkd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                  "-w", str(tmp_path / "dist"), str(src)], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("optuna_mfkd-*.whl")

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                      "--no-index", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    # This environment's packages after the new one's own (torch etc. are not installed again).
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site.stdout.strip()) / "_parent_env.pth").write_text("\n".join(parents) + "\n")

    work = tmp_path / "run"  # outside the repository
    work.mkdir()
    where = _run([str(python), "-c", "import optuna_mfkd, importlib.util; print(optuna_mfkd.__file__); "
                  "print(importlib.util.find_spec('suite_settings'), importlib.util.find_spec('optuna_mfkd.bench.suite'))"],
                 work)
    assert where.returncode == 0, where.stderr
    module, specs = where.stdout.splitlines()
    assert Path(module).is_relative_to(venv) and specs == "None None", where.stdout

    cli = str(venv / "bin" / "optuna-mfkd")
    bench = _run([cli, "benchmark", "--storage", "sqlite:///bench.db", "--problems", "branin/1-level",
                  "--methods", "random", "--seeds", "0", "--no-progress"], work)
    assert bench.returncode == 0, bench.stderr
    assert '"ran": 1' in bench.stdout and '"errors": 0' in bench.stdout
    report = _run([cli, "report", "--storage", "sqlite:///bench.db", "--out", "report"], work)
    assert report.returncode == 0, report.stderr
    text = (work / "report" / "README.md").read_text()
    assert "## branin / 1-level" in text and "| `random` | 1 |" in text
    assert len((work / "report" / "runs.csv").read_text().splitlines()) == 2
    # A pool is never looked for beside the installation: one line naming the option.
    mf3 = _run([cli, "benchmark", "--storage", "sqlite:///bench.db", "--problems", "mf3", "--no-progress"], work)
    assert mf3.returncode == 2 and mf3.stderr.count("\n") == 1 and "--pool" in mf3.stderr, mf3.stderr
