"""MF-MES's level choice (optuna_mfkd/gp/information.py) against closed forms and brute-force
Monte Carlo, and the ``strategy="mf-mes"`` sampler."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from conftest import two_level_bowl
from scipy import stats

from optuna_mfkd import MFKDSampler
from optuna_mfkd.gp.information import (
    STANDARD_NORMAL_ENTROPY,
    choose_level_by_information,
    information_gains,
    max_value_quantiles,
    truncated_entropy,
)


def _monte_carlo_entropy(gamma: float, r: float, rng: np.random.Generator, n: int = 2_000_000) -> float:
    """Entropy of ``u`` given ``v <= gamma`` for standard normals ``(u, v)`` of correlation
    ``r``: rejection sampling and a fine histogram."""
    v = rng.standard_normal(n)
    u = r * v + math.sqrt(max(1.0 - r * r, 0.0)) * rng.standard_normal(n)
    density, edges = np.histogram(u[v <= gamma], bins=1600, range=(-8, 8), density=True)
    density = density[density > 0]
    return float(-(density * np.log(density)).sum() * (edges[1] - edges[0]))


@pytest.mark.parametrize("gamma,r", [(0.5, 0.7), (1.5, 0.9), (-0.5, 0.5), (2.0, 0.99), (1.0, -0.8)])
def test_truncated_entropy_matches_monte_carlo(gamma, r):
    rng = np.random.default_rng(0)
    ours = float(truncated_entropy(torch.tensor(gamma), torch.tensor(r)))
    assert ours == pytest.approx(_monte_carlo_entropy(gamma, r, rng), abs=3e-3)


@pytest.mark.parametrize("gamma", [-1.0, 0.0, 0.7, 2.5])
def test_top_level_without_noise_is_max_value_entropy_search(gamma):
    # r = 1: I = gamma phi(gamma) / (2 Phi(gamma)) - log Phi(gamma) (Wang and Jegelka 2017);
    # r = 0: an observation that says nothing about the top level.
    closed = gamma * stats.norm.pdf(gamma) / (2 * stats.norm.cdf(gamma)) - stats.norm.logcdf(gamma)
    cov = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    gains = information_gains(cov, [0.0, 0.0], top_mean=0.0, max_values=torch.tensor([gamma]))
    assert float(gains[1]) == pytest.approx(closed, rel=1e-7)
    assert float(gains[0]) == pytest.approx(0.0, abs=1e-9)
    # Below r = 1 the integral tends to the closed form.
    gaps = [
        abs(float(STANDARD_NORMAL_ENTROPY - truncated_entropy(torch.tensor(gamma), torch.tensor(r))) - closed)
        for r in (0.999, 0.9999, 0.99999)
    ]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01, gaps


def test_gains_follow_the_posterior_correlation_and_noise():
    # Two levels of a hand-built posterior: sd 1 each, correlation 0.8; noise lowers the
    # correlation of the observation and so its information; scaling a level changes nothing.
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    f_star = torch.tensor([0.5, 1.0, 1.5])
    gains = information_gains(cov, [0.0, 0.0], 0.2, f_star)
    noisy = information_gains(cov, [1.0, 0.0], 0.2, f_star)
    scaled = torch.tensor([[4.0, 1.6], [1.6, 1.0]], dtype=torch.float64)  # level 0 twice as wide
    assert 0 < float(noisy[0]) < float(gains[0]) < float(gains[1])
    assert float(information_gains(scaled, [0.0, 0.0], 0.2, f_star)[0]) == pytest.approx(float(gains[0]))
    # The expectation over f*: the mean of the gains of each value alone.
    each = [float(information_gains(cov, [0.0, 0.0], 0.2, f_star[k : k + 1])[0]) for k in range(3)]
    assert float(gains[0]) == pytest.approx(np.mean(each))
    # One level's gain alone is the same number as among all levels'.
    for m in (0, 1):
        assert float(information_gains(cov, [1.0, 0.0], 0.2, f_star, levels=[m])[0]) == float(noisy[m])


def test_max_value_quantiles():
    # One normal: the Gumbel fit's median is the normal's (the fit passes through the median).
    q = max_value_quantiles(torch.tensor([1.0]), torch.tensor([2.0]), num=1)
    assert q.tolist() == pytest.approx([1.0], abs=1e-6)
    q = max_value_quantiles(torch.tensor([1.0]), torch.tensor([2.0]), num=2)
    assert q.tolist() == pytest.approx([1.0 + 2.0 * stats.norm.ppf(p) for p in (0.25, 0.75)], abs=0.2)
    # Several: close to the Monte Carlo quantiles of the maximum.
    mean, std = torch.tensor([0.0, 0.5, 1.0, 0.2]), torch.tensor([1.0, 0.5, 0.3, 2.0])
    draws = (np.random.default_rng(0).standard_normal((400_000, 4)) * std.numpy() + mean.numpy()).max(1)
    q = max_value_quantiles(mean, std, num=4).numpy()
    assert np.all(np.diff(q) > 0)
    assert q[1:3] == pytest.approx(np.quantile(draws, [0.375, 0.625]), abs=0.1)


def test_a_level_1000_times_dearer_is_chosen_only_when_its_information_is_worth_it():
    f_star = max_value_quantiles(torch.tensor([0.0, 0.3, 0.1]), torch.tensor([1.0, 0.8, 0.5]))
    costs = [1.0, 1000.0]

    def level(r: float, allowed=(True, True)) -> int:
        cov = torch.tensor([[1.0, r], [r, 1.0]], dtype=torch.float64)
        gains = information_gains(cov, [1e-6, 1e-6], 0.3, f_star)
        return choose_level_by_information(gains.tolist(), costs, list(allowed))

    assert level(0.5) == 0  # the cheap level tells enough about the top one
    assert level(1e-3) == 1  # it tells nothing: the dear level is worth its cost
    assert level(0.5, allowed=(False, True)) == 1
    assert choose_level_by_information([0.2, 0.4], [1.0, 2.0], [True, True]) == 1  # a tie: the dearer
    with pytest.raises(ValueError, match="costs"):
        choose_level_by_information([0.2, 0.4], [1.0, 0.0], [True, True])


def test_mf_mes_strategy_searches_two_levels():
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 6, "high": 2}, seed=0, strategy="mf-mes")
    assert sampler.strategy == "mf-mes"
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: two_level_bowl(trial, wiggle=0.1, frequency=5.0), n_trials=30)
    hows = [t.system_attrs.get("mfkd:how") for t in study.trials[8:]]
    assert hows.count("logei+mf-mes") >= 15, hows
    levels = [t.user_attrs["fidelity"] for t in study.trials[8:]]
    assert {"low", "high"} <= set(levels)
    best = min(t.value for t in study.trials if t.user_attrs["fidelity"] == "high")
    assert best < 0.01
