"""Maximum a posteriori fit of the AR1 model's hyperparameters from one or more starts.

A GP's hyperparameters ``theta`` (length scales and output scales per level, ``rho``, means,
noises) maximise the MAP objective

    J(theta) = (log p(z | theta) + log p(theta)) / n

(``ExactMarginalLogLikelihood``, per observation), by ``botorch.fit.fit_gpytorch_mll``
(L-BFGS-B). ``J`` is not concave: for the AR1 model it has, besides the optimum where the
top level follows ``rho y_0``, one where ``rho`` is near 0 and the discrepancy explains the top
level alone; a single start from the defaults can end there
(``benchmarks/results/ar1-accuracy/``). :func:`fit_map` therefore optimises from the given
start and ``restarts - 1`` random ones (:func:`random_start`) and keeps the largest ``J``.

The optimiser's objective is :func:`map_objective`: ``J`` written on dense tensors,

    J(theta) = ( -1/2 r^T alpha - sum_i log C_ii - n/2 log(2 pi) + sum_p log p(theta_p) ) / n,
    r = z - m_{l_i},   C C^T = K + diag(noise_{l_i}),   alpha = (C C^T)^{-1} r,

with ``K`` the AR1 covariance of the training rows, ``m_l`` and ``noise_l`` the level's
constant mean and noise variance and ``p`` the model's priors. It is the value GPyTorch's
``ExactMarginalLogLikelihood`` gives (equal to rounding, gradients too; tested), without the
lazy kernel tensors, the likelihood's masked noise operator and the distribution object that
GPyTorch builds per evaluation: at ``n`` = 20-300 those, not the Cholesky factorisation, were
most of the fit's time (16 ms of an evaluation at ``n`` = 20, two levels). Within a fit,
:func:`map_closure` forms ``K`` by :func:`training_covariance`: each column's squared
differences of the training rows are made once, so an evaluation weighs them by the length
scales (one matrix product for all levels) instead of forming distances again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.utils import get_parameters
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.models import ExactGP
from gpytorch.priors import GammaPrior, LogNormalPrior
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel, combine

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
#: The most numbers :func:`training_covariance` keeps (``d n^2``; 64 MB in float64).
MAX_TERMS = 8_000_000


def random_start(model: ExactGP) -> None:
    """Random starting hyperparameters of an AR1 model (``model.covar_module`` an
    :class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel` over ``ScaleKernel``\\ s), from torch's
    global generator: ``log10 l ~ U(-1, 1)`` for every length scale of every level,
    ``log10 s_k^2 ~ U(-2, 1)`` for each discrepancy's output scale (``k >= 1``) and
    ``rho'_l ~ U(-3, 3)``; the means, the noises and ``s_0^2`` keep their values (the
    observations are standardised)."""
    with torch.no_grad():
        for k, scaled in enumerate(model.covar_module.base_kernels):
            base = scaled.base_kernel
            base.lengthscale = 10.0 ** (
                2.0 * torch.rand(base.lengthscale.shape, dtype=torch.float64) - 1.0
            )
            if k > 0:
                scaled.outputscale = 10.0 ** (3.0 * torch.rand((), dtype=torch.float64) - 2.0)
        rho = model.covar_module.rho
        rho.copy_(6.0 * torch.rand(rho.shape, dtype=rho.dtype) - 3.0)


def log_priors(model: ExactGP) -> list[Callable[[], Tensor]]:
    """One function per prior of the model: ``log p(theta_p)`` (summed over its elements) at
    the current hyperparameters.

    The priors are looked up once (walking the modules costs more than the densities), and
    the model's two kinds are written out as torch forms them (the same rounding):

        LogNormal(mu, s):  log p(v) = -(log v - mu)^2 / (2 s^2) - log s - log sqrt(2 pi) - log v
        Gamma(a, b):       log p(v) = a log b + (a - 1) log v - b v - log Gamma(a)

    Any other prior uses its ``log_prob``.
    """
    terms: list[Callable[[], Tensor]] = []
    for _, module, prior, closure, _ in model.named_priors():
        if isinstance(prior, LogNormalPrior):
            mu, s = prior.loc.detach(), prior.scale.detach()
            two_var, log_s = 2 * s**2, s.log()  # in the prior's own precision, as torch's Normal

            def term(module=module, closure=closure, mu=mu, two_var=two_var, log_s=log_s) -> Tensor:
                log_v = torch.log(closure(module))
                return ((-((log_v - mu) ** 2) / two_var - log_s - _LOG_SQRT_2PI) - log_v).sum()
        elif isinstance(prior, GammaPrior):
            a, b = prior.concentration.detach(), prior.rate.detach()
            a_log_b, lgamma_a = torch.xlogy(a, b), torch.lgamma(a)

            def term(module=module, closure=closure, a=a, b=b, a_log_b=a_log_b, lgamma_a=lgamma_a) -> Tensor:
                v = closure(module)
                return (a_log_b + torch.xlogy(a - 1, v) - b * v - lgamma_a).sum()
        else:
            def term(module=module, closure=closure, prior=prior) -> Tensor:
                return prior.log_prob(closure(module)).sum()
        terms.append(term)
    return terms


def map_objective(model: ExactGP, priors: list[Callable[[], Tensor]] | None = None) -> Tensor:
    """``J(theta)`` (see the module) at the model's current hyperparameters, differentiable in
    them; ``model`` is an AR1 model (``covar_module`` an
    :class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel`, a ``MultitaskMean`` of constant means and a
    likelihood with one noise variance per level) in train mode. ``priors``:
    :func:`log_priors` of ``model``, made once for many evaluations (default: made here).

    Raises:
        linear_operator.utils.errors.NotPSDError: when ``K + diag(noise)`` is not positive
            definite even with GPyTorch's jitter (BoTorch's fit then retries).
    """
    X = model.train_inputs[0]
    return _map_value(model, model.covar_module.forward(X, X), priors)


def _map_value(model: ExactGP, K: Tensor, priors: list[Callable[[], Tensor]] | None) -> Tensor:
    """``J(theta)`` of ``model`` given its training covariance ``K`` (without noise)."""
    X = model.train_inputs[0]
    z = model.train_targets
    levels = X[:, -1].round().long()
    means = torch.stack([m.constant.reshape(()) for m in model.mean_module.base_means])
    noise = model.likelihood.noise_covar.noise.reshape(-1)
    chol = psd_safe_cholesky(K + torch.diag(noise[levels]))
    r = (z - means[levels]).unsqueeze(-1)
    w = torch.linalg.solve_triangular(chol, r, upper=False)  # r^T alpha = ||C^{-1} r||^2
    n = len(z)
    value = -0.5 * (w * w).sum() - chol.diagonal().log().sum() - 0.5 * n * math.log(2.0 * math.pi)
    for term in log_priors(model) if priors is None else priors:
        value = value + term()
    return value / n


def training_covariance(model: ExactGP) -> Callable[[], Tensor] | None:
    """A function giving the AR1 model's training covariance ``K`` at its current
    hyperparameters, from the squared differences of the training rows made once
    (:meth:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel.sq_dist_terms`):

        K = sum_k a_k(l) a_k(l)^T * s_k^2 * profile( sum_j terms_j / l_{k,j}^2 )

    (one weighted sum per evaluation instead of the kernel's distances); ``None`` where the
    kernel is not of that form or the terms would hold more than :data:`MAX_TERMS` numbers
    (then :func:`map_objective` forms ``K`` through the kernel)."""
    covar = model.covar_module
    bases = covar.stacked_bases() if isinstance(covar, AR1Kernel) else None
    X = model.train_inputs[0]
    if bases is None or X.shape[-2] ** 2 * (X.shape[-1] - 1) > MAX_TERMS or X.dim() != 2:
        return None
    first = bases[0].base_kernel
    kernels = [kernel.base_kernel for kernel in bases]
    terms = first.sq_dist_terms(X[:, :-1]).flatten(1)  # (d, n * n)
    levels = X[:, -1]
    n = X.shape[-2]

    def K() -> Tensor:
        inv_sq = first.stacked_lengthscales(kernels)[:, 0, :] ** -2  # (L, d)
        kk = first.profile((inv_sq @ terms).reshape(-1, n, n))
        a = covar.coefficients(levels).to(X.dtype)
        return combine(kk, a, a, torch.stack([kernel.outputscale.reshape(()) for kernel in bases]))

    return K


def map_closure(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure:
    """BoTorch's forward-backward closure of ``-J`` (:func:`map_objective`) over the
    parameters BoTorch's fit optimises (``get_parameters(mll, requires_grad=True)``, in its
    order), for ``fit_gpytorch_mll(mll, closure=...)``."""
    model = mll.model
    priors = log_priors(model)
    K = training_covariance(model)
    if K is None:
        def forward() -> Tensor:
            return -map_objective(model, priors)
    else:
        def forward() -> Tensor:
            return -_map_value(model, K(), priors)
    return ForwardBackwardClosure(forward=forward, parameters=get_parameters(mll, requires_grad=True))


def fit_map(model: ExactGP, build: Callable[[], ExactGP], restarts: int, max_iter: int) -> ExactGP:
    """Fit ``model`` (the first start) and, for ``restarts > 1``, ``restarts - 1`` fresh models
    from ``build`` at :func:`random_start`; return the one with the largest :func:`map_objective`.

    With ``restarts == 1`` this is one ``fit_gpytorch_mll`` call (its errors propagate);
    otherwise failed starts are skipped and ``ModelFittingError`` is raised only when all fail.
    """
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    best, best_value, error = None, -math.inf, None
    for start in range(restarts):
        candidate = model if start == 0 else build()
        if start > 0:
            random_start(candidate)
        mll = ExactMarginalLogLikelihood(candidate.likelihood, candidate)
        try:
            fit_gpytorch_mll(
                mll, closure=map_closure(mll), optimizer_kwargs={"options": {"maxiter": max_iter}}
            )
        except ModelFittingError as err:
            if restarts == 1:
                raise
            error = err
            continue
        if restarts == 1:
            return candidate
        candidate.train()
        with torch.no_grad():
            value = float(map_objective(candidate))
        if best is None or value > best_value:
            best, best_value = candidate, value
    if best is None:
        raise ModelFittingError(f"every one of {restarts} starts failed; the last: {error!r}")
    return best
