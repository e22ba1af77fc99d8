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


def _fitted(num_levels: int, n: int = 45, kernel: str = "matern52"):
    gen = torch.Generator().manual_seed(num_levels)
    X = _mixed_rows(n, gen)
    levels = torch.arange(n) % num_levels
    y = torch.sin(3 * X[:, 0]) + X[:, 2] * (X[:, 1] == 1) - 0.2 * X[:, 3] + 0.3 * levels
    return fit_ar1_model(X, levels, y, num_levels, cat_dims=CAT, max_iter=40, kernel=kernel), gen


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


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_marginals_equal_gpytorch_with_gradients(num_levels, kernel):
    fitted, gen = _fitted(num_levels, kernel=kernel)
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


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_closed_form_gradient_passes_gradcheck_at_and_off_the_training_points(kernel):
    """The closed-form gradient against finite differences, also at a training row (r = 0,
    where Matern's profile has a finite slope) and with only the mean or the variance used."""
    fitted, gen = _fitted(2, n=24, kernel=kernel)
    train = fitted.model.train_inputs[0][:, :-1]
    Xq = torch.cat([_mixed_rows(5, gen), train[:2]]).requires_grad_(True)
    num = [0, 2]  # finite differences in the numerical columns only (choices are steps)

    def f(Z):
        X = Xq.detach().clone()
        X[:, num] = Z
        return fitted.marginals(X)

    Z = Xq.detach()[:, num].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (Z,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda Z: f(Z)[0], (Z,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda Z: f(Z)[1], (Z,), eps=1e-6, atol=1e-6, rtol=1e-5)
    # The choice columns get no gradient (they are rounded to a choice).
    (g,) = torch.autograd.grad(sum(t.sum() for t in fitted.marginals(Xq)), Xq)
    assert torch.all(g[:, [1, 3]] == 0) and torch.any(g[:, num] != 0)


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


@pytest.mark.parametrize("shift", [0.0, 8.0, 40.0])
def test_logei_closed_form_gradient_equals_botorch_far_below_the_incumbent(shift):
    """The closed-form gradient of LogEI equals BoTorch's autograd one, also where the
    improvement is many standard deviations away (u << 0, where EI underflows)."""
    fitted, gen = _fitted(2)
    best = float(fitted.top_targets().max()) + shift
    acqf = build_acquisition("logei", fitted, best_f=best)
    reference = LogExpectedImprovement(fitted.as_botorch_model(), best_f=best)
    X = _mixed_rows(7, gen).unsqueeze(-2).requires_grad_(True)
    value = acqf(X)
    (g_fast,) = torch.autograd.grad(value.sum(), X)
    Xr = X.detach().clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(reference(Xr).sum(), Xr)
    assert torch.isfinite(value).all() and torch.isfinite(g_fast).all()
    torch.testing.assert_close(value.detach(), reference(Xr).detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("with_base", [True, False])
def test_constrained_closed_form_value_and_gradient_equal_autograd(with_base):
    """``ConstrainedAcquisition.value_and_gradient`` (no autograd) against autograd through its
    forward: LogEI times the probability of feasibility of two constraints, or the latter alone."""
    fitted, gen = _fitted(2)
    c1, _ = _fitted(2, n=30)
    c2, _ = _fitted(1, n=20)
    acqf = build_acquisition("logei", fitted, constraints=[(c1, 0.1), (c2, -0.2)],
                             best_f=None if with_base else float("-inf"))
    assert acqf.closed_form
    X = _mixed_rows(9, gen)
    X[:, [1, 3]] = X[:, [1, 3]].round()
    value, grad = acqf.value_and_gradient(X)
    Xr = X.clone().unsqueeze(-2).requires_grad_(True)
    ref = acqf(Xr)
    (g_ref,) = torch.autograd.grad(ref.sum(), Xr)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, g_ref.squeeze(-2), rtol=1e-7, atol=1e-9)
