"""The cached prediction path (LevelPredictor, MixedMaternKernel.against, the acquisitions'
moments) against GPyTorch's and BoTorch's own computations on the same fitted model."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import LogExpectedImprovement

from optuna_mfkd.gp.acquisition import build_acquisition
from optuna_mfkd.gp.mixed_kernel import MixedMaternKernel
from optuna_mfkd.gp.model import fit_ar1_model
from optuna_mfkd.gp.predictive import LevelPredictor

CAT = {1: 3, 3: 4}


def _mixed_rows(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 4)`` rows: numbers in columns 0 and 2, choice indices in 1 (3 choices) and 3 (4)."""
    X = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    X[:, 1] = torch.randint(0, 3, (n,), generator=gen).double()
    X[:, 3] = torch.randint(0, 4, (n,), generator=gen).double()
    return X


def _fitted(num_levels: int, n: int = 45):
    gen = torch.Generator().manual_seed(num_levels)
    X = _mixed_rows(n, gen)
    levels = torch.arange(n) % num_levels
    y = torch.sin(3 * X[:, 0]) + X[:, 2] * (X[:, 1] == 1) - 0.2 * X[:, 3] + 0.3 * levels
    return fit_ar1_model(X, levels, y, num_levels, cat_dims=CAT, max_iter=40), gen


def test_against_equals_the_kernel_forward():
    gen = torch.Generator().manual_seed(0)
    kern = MixedMaternKernel(4, CAT, ard=True, cat_ard=True).double()
    kern.lengthscale = torch.tensor([0.3, 0.8, 1.7, 0.5], dtype=torch.float64)
    x1, x2 = _mixed_rows(9, gen), _mixed_rows(13, gen)
    with torch.no_grad():
        want = kern(x1, x2).to_dense()
        got = kern.against(x2, kern._lengthscales())(x1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _gpytorch_marginals(fitted, X):
    """The top level's marginals through GPyTorch's kernel calls, with the same Cholesky."""
    model = fitted.model
    L, alpha = fitted.training_cholesky()
    Xt = torch.cat(
        [X, torch.full((len(X), 1), float(fitted.num_levels - 1), dtype=X.dtype)], dim=-1
    )
    K_sn = model.covar_module(Xt, model.train_inputs[0]).to_dense()
    v = torch.linalg.solve_triangular(L, K_sn.transpose(-1, -2), upper=False)
    mean = model.forward(Xt).mean + K_sn @ alpha
    return mean, model.covar_module(Xt, Xt, diag=True) - (v * v).sum(-2)


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_marginals_equal_gpytorch_with_gradients(num_levels):
    fitted, gen = _fitted(num_levels)
    Xq = _mixed_rows(17, gen).requires_grad_(True)
    mean, var = fitted.marginals(Xq)
    (g_fast,) = torch.autograd.grad((mean + 3 * var).sum(), Xq)
    Xr = Xq.detach().clone().requires_grad_(True)
    want_mean, want_var = _gpytorch_marginals(fitted, Xr)
    (g_ref,) = torch.autograd.grad((want_mean + 3 * want_var).sum(), Xr)
    torch.testing.assert_close(mean.detach(), want_mean.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var.detach(), want_var.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-11)
    # And BoTorch's posterior of the model (its own solve: agreement to the jitter).
    with torch.no_grad():
        post = fitted.model.posterior(Xq.detach())
    torch.testing.assert_close(mean.detach(), post.mean.reshape(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var.detach(), post.variance.reshape(-1), rtol=1e-5, atol=1e-5)


def test_a_cheaper_level_is_predicted_through_rho():
    """LevelPredictor at level 0 of a 2-level model equals the model's level-0 mean."""
    fitted, gen = _fitted(2)
    Xq = _mixed_rows(11, gen)
    L, alpha = fitted.training_cholesky()
    model = fitted.model
    with torch.no_grad():
        prior0 = float(
            model.forward(torch.cat([Xq[:1], torch.zeros(1, 1, dtype=Xq.dtype)], -1)).mean[0]
        )
        low = LevelPredictor(model.covar_module, model.train_inputs[0], L, alpha, prior0, 0)
        mean, _ = low.marginals(Xq)
    torch.testing.assert_close(mean, fitted.level_means(Xq, torch.zeros(11, dtype=torch.long)))


def test_logei_reads_the_same_moments_as_botorch():
    fitted, gen = _fitted(2)
    acqf = build_acquisition("logei", fitted)
    reference = LogExpectedImprovement(fitted.as_botorch_model(), best_f=acqf.best_f)
    X = _mixed_rows(6, gen).unsqueeze(-2).requires_grad_(True)
    (g_fast,) = torch.autograd.grad(acqf(X).sum(), X)
    Xr = X.detach().clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(reference(Xr).sum(), Xr)
    with torch.no_grad():
        torch.testing.assert_close(acqf(X), reference(X))
        one = X[:1]
        assert acqf(one).shape == reference(one).shape == (1,)
    torch.testing.assert_close(g_fast, g_ref)
