"""The package's import structure: light modules stay light, lazy public names resolve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("module", ["optuna_mfkd", "optuna_mfkd.nasbench201.space", "optuna_mfkd.datasets"])
def test_light_modules_import_no_torch(module: str) -> None:
    res = _python(f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'")
    assert res.returncode == 0, res.stderr


def test_lazy_public_names() -> None:
    import optuna_mfkd
    from optuna_mfkd.sampler import MFKDSampler
    from optuna_mfkd.training.objectives import NB201TrainingObjective

    assert optuna_mfkd.MFKDSampler is MFKDSampler
    assert optuna_mfkd.NB201TrainingObjective is NB201TrainingObjective
    assert set(optuna_mfkd.__all__) <= set(dir(optuna_mfkd))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        optuna_mfkd.nothing  # noqa: B018
