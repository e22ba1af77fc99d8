"""The MFKDSampler of a search's levels, shared by the command line and the benchmark methods."""

from __future__ import annotations

import pytest

from optuna_mfkd.sampler_factory import warmup_per_level


def test_warmup_per_level() -> None:
    assert warmup_per_level(["12ep"], n_warmup_high=20) == {"12ep": 20}
    assert warmup_per_level(["12ep"], n_warmup_high=20, n_warmup_low=100) == {"12ep": 20}
    assert warmup_per_level(["nst", "12ep"], n_warmup_high=20, n_warmup_low=100) == {"nst": 100, "12ep": 20}
    assert warmup_per_level({"a": {}, "b": {}, "c": {}}, n_warmup_high=3, n_warmup_low=7) == {"a": 7, "b": 7, "c": 3}


def test_warmup_per_level_errors() -> None:
    with pytest.raises(ValueError, match="at least one fidelity level"):
        warmup_per_level([], n_warmup_high=1)
    with pytest.raises(ValueError, match="need n_warmup_low"):
        warmup_per_level(["low", "high"], n_warmup_high=1)
