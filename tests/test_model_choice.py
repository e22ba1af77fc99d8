"""The model check: leave-one-out densities and the choice between the AR1 model and a GP of
the top level alone (:mod:`optuna_mfkd.gp.model_choice`), alone and inside the sampler."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch

from optuna_mfkd import MFKDSampler, fidelity_of
from optuna_mfkd.gp.model import fit_ar1_model
from optuna_mfkd.gp.model_choice import MIN_TOP_POINTS, loo_scores, prefer_single
from optuna_mfkd.sampler import HOW_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _design(seed: int, n_low: int, n_top: int, d: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n_low + n_top, d, generator=g, dtype=torch.float64)
    levels = torch.cat([torch.zeros(n_low), torch.ones(n_top)]).long()
    return X, levels


def _top(X: torch.Tensor) -> torch.Tensor:
    return torch.sin(3.0 * X[:, 0]) + (X[:, 1] - 0.4) ** 2


def test_loo_density_equals_conditioning_on_the_other_rows() -> None:
    """Each top-level row's leave-one-out density (precision-matrix identity) against the
    Gaussian conditional computed directly from the covariance without that row, in
    observation units (the model-unit density divided by the level's scale)."""
    X, levels = _design(0, 15, 7)
    y = torch.where(levels == 0, 0.8 * _top(X) + 0.3 * X[:, 0], _top(X)) * 40.0 + 7.0
    fitted = fit_ar1_model(X, levels, y, 2)
    model = fitted.model
    train_X = model.train_inputs[0]
    with torch.no_grad():
        prior = model.forward(train_X)
        K = model.likelihood.marginal(prior, train_X).covariance_matrix
        m = prior.mean
    z = model.train_targets
    scale = fitted.standardisation.scale[1]
    expected = []
    for i in torch.nonzero(levels == 1).flatten().tolist():
        rest = [j for j in range(len(z)) if j != i]
        k = K[i, rest]
        solve = torch.linalg.solve(K[rest][:, rest], torch.stack([z[rest] - m[rest], k], dim=-1))
        mean = m[i] + k @ solve[:, 0]
        var = K[i, i] - k @ solve[:, 1]
        expected.append(-0.5 * math.log(2 * math.pi * var) - 0.5 * (z[i] - mean) ** 2 / var - math.log(scale))
    got = fitted.loo_log_density(1)
    assert got.shape == (7,)
    np.testing.assert_allclose(got.numpy(), torch.stack(expected).numpy(), rtol=0, atol=2e-5)  # training_cholesky adds 1e-9 jitter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_faithful_cheap_level_wins_and_a_misleading_one_loses(seed: int) -> None:
    """The top level is a smooth function. With a cheaper level that is the same function
    (scaled), the fitted AR1 model predicts the top level's observations better than their own
    GP. With a cheaper level whose dependence on ``x_1`` has the other sign, and the AR1 model
    holding hyperparameters that say the levels agree (its starting ones: ``rho = 1``, a small
    discrepancy; as between two refits when the data changed), the top level's GP wins."""
    X, levels = _design(seed, 30, 10)
    top = _top(X)
    single = fit_ar1_model(X[levels == 1], torch.zeros(10).long(), top[levels == 1], 1)

    faithful = torch.where(levels == 0, 2.0 * top, top)
    joint = fit_ar1_model(X, levels, faithful, 2)
    assert not prefer_single(joint, single), loo_scores(joint, single)

    flipped = torch.sin(3.0 * X[:, 0]) - 3.0 * (X[:, 1] - 0.4) ** 2
    joint = fit_ar1_model(X, levels, torch.where(levels == 0, flipped, top), 2, fit=False)
    a, b = loo_scores(joint, single)
    assert prefer_single(joint, single), (a, b)
    assert b > a + 0.5


def test_no_choice_below_the_minimum_of_top_points() -> None:
    """With fewer than MIN_TOP_POINTS top-level observations the AR1 model is kept, however
    poorly it predicts them."""
    n = MIN_TOP_POINTS - 1
    X, levels = _design(3, 20, n)
    g = torch.Generator().manual_seed(7)
    y = torch.where(levels == 0, torch.randn(len(X), generator=g, dtype=torch.float64), _top(X))
    joint = fit_ar1_model(X, levels, y, 2)
    single = fit_ar1_model(X[levels == 1], torch.zeros(n).long(), y[levels == 1], 1)
    assert not prefer_single(joint, single)


def _misleading(trial: optuna.Trial) -> float:
    """Two levels where the cheap one is an unrelated rough function of the parameters."""
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    if fidelity_of(trial) == "low":
        trial.set_user_attr("cost", 1.0)
        return math.sin(40.0 * x) * math.cos(37.0 * y)
    trial.set_user_attr("cost", 10.0)
    return (x - 0.3) ** 2 + (y - 0.7) ** 2


@pytest.mark.parametrize("strategy", ["mf-mes", "cost-aware"])
def test_the_sampler_proposes_from_the_top_level_gp_where_it_predicts_better(strategy: str) -> None:
    """On an objective whose cheap level is unrelated to the top one, the cost-aware
    strategies sometimes take the point from the top level's own GP (``how`` ends in
    ``+top-only``; here where the AR1 hyperparameters of the last refit predict the new top
    observations worse), with the level still chosen by their rule (``how`` names it); with
    ``model_check=False`` and under the paper's strategy, never."""
    counts = {True: 0, False: 0}
    for seed in (0, 1):
        for check in (True, False):
            sampler = MFKDSampler(
                fidelities=["low", "high"], seed=seed, strategy=strategy, model_check=check,
                n_warmup={"low": 12, "high": 3},
            )
            study = optuna.create_study(sampler=sampler)
            study.optimize(_misleading, n_trials=40)
            top_only = [t for t in study.trials if str(t.system_attrs.get(HOW_ATTR, "")).endswith("+top-only")]
            rule = "mf-mes" if strategy == "mf-mes" else "cost"
            assert all(t.system_attrs[HOW_ATTR] == f"logei+{rule}+top-only" for t in top_only)
            counts[check] += len(top_only)
    assert counts[True] >= 1 and counts[False] == 0, counts

    sampler = MFKDSampler(fidelities=["low", "high"], seed=0, strategy="paper", n_warmup={"low": 10, "high": 5})
    study = optuna.create_study(sampler=sampler)
    study.optimize(_misleading, n_trials=25)
    assert not any(str(t.system_attrs.get(HOW_ATTR, "")).endswith("+top-only") for t in study.trials)


def test_model_check_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="model_check must be True or False, got 'yes'"):
        MFKDSampler(fidelities=["low", "high"], model_check="yes")
