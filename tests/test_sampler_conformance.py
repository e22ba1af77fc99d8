"""Optuna's own sampler conformance suite, run on MFKDSampler (one and two levels)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)

from optuna_mfkd import MFKDSampler

FACTORIES = {
    # GP-UCB after one observation: exercises the model on every relative sample.
    "one-level": lambda: MFKDSampler(
        fidelities=["high"], n_warmup={"high": 1}, n_candidates=256, seed=0, max_fit_iter=15
    ),
    # Two levels with the default warm-up: trials go to the low level first.
    "two-level": lambda: MFKDSampler(["low", "high"], seed=0),
    # No levels declared: single-fidelity GP BO after 10 random trials.
    "default": lambda: MFKDSampler(seed=0),
    # The cost-aware level choice after a short warm-up: the model picks level and point.
    "two-level-cost-aware": lambda: MFKDSampler(
        ["low", "high"],
        n_warmup={"low": 2, "high": 1},
        strategy="cost-aware",
        n_candidates=256,
        seed=0,
        max_fit_iter=15,
    ),
    # The default level choice (MF-MES) after a short warm-up.
    "two-level-mf-mes": lambda: MFKDSampler(
        ["low", "high"], n_warmup={"low": 2, "high": 1}, n_candidates=256, seed=0, max_fit_iter=15
    ),
    # The step (learning-curve) mode: levels are reported steps; trials without reports are
    # observations at the top level only.
    "steps": lambda: MFKDSampler(steps=[1, 3], seed=0, max_fit_iter=15),
}


class TestMFKDSampler(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture(params=sorted(FACTORIES))
    def sampler(self, request) -> Callable[[], MFKDSampler]:
        return FACTORIES[request.param]
