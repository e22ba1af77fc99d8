"""Posterior marginals of a fitted AR1 model, with everything that does not depend on the
query computed once: the inner loop of acquisition maximisation.

Notation as in :mod:`optuna_mfkd.gp.ar1_kernel`: levels ``0 .. L-1``, base kernels
``k_k = s_k * kappa_k`` (``s_k`` the output scale of level ``k``'s ``ScaleKernel``, ``kappa_k``
its :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel`), AR1 coefficients ``a_k(l)``;
``n`` training rows ``(x_i, l_i)``. With the hyperparameters fixed after the fit, the
cross-covariance of a query ``x`` at level ``l`` with the training rows is

    K(x, l; x_i, l_i) = sum_k  a_k(l) s_k a_k(l_i)  kappa_k(x, x_i),

so the weights ``w_{ik}(l) = a_k(l) s_k a_k(l_i)`` and the detached length scales are formed
once per level; with ``L L^T = K_nn + diag(noise)`` and ``alpha = (L L^T)^{-1} (y - m)``
(given), the marginals at level ``l`` are

    mu_l(x)      = m_l + K_{x n} alpha
    sigma_l^2(x) = sum_k a_k(l)^2 s_k - || L^{-1} K_{n x} ||^2      (kappa_k(x, x) = 1).

The result is the same as GPyTorch's kernel calls on the model (up to rounding), differentiable
in ``x`` only: the hyperparameters are constants here, and no lazy kernel tensor is made per
call. The gradient in ``x`` is in closed form (the acquisition optimiser's inner loop): with
``B = (L L^T)^{-1} K_{n x}`` and upstream gradients ``g_mu``, ``g_var`` per query row,

    dJ/dK_{x i} = g_mu alpha_i - 2 g_var B_{i x},

pulled back through each base kernel's ``kappa_k`` by
:meth:`~optuna_mfkd.gp.mixed_kernel.CrossKernel.pull_back` (the weights ``w_{ik}(l)`` and
``dkappa/dr^2``), instead of autograd's walk over some thirty small operations.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from gpytorch.kernels import ScaleKernel
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel
from optuna_mfkd.gp.mixed_kernel import CrossKernel, MixedMaternKernel


class LevelPredictor:
    """Marginal posteriors of one level of a fitted AR1 model (see the module).

    Args:
        covar_module: the model's :class:`AR1Kernel` over ``ScaleKernel(MixedMaternKernel)``.
        train_X: ``(n, d + 1)`` training inputs (last column: the level).
        chol: ``(n, n)`` lower Cholesky factor of ``K_nn + diag(noise)``.
        alpha: ``(n,)`` ``(K_nn + diag(noise))^{-1} (y - m)``.
        prior_mean: ``m_l``, the constant prior mean of the level (model units).
        level: ``l``.
    """

    def __init__(
        self,
        covar_module: AR1Kernel,
        train_X: Tensor,
        chol: Tensor,
        alpha: Tensor,
        prior_mean: float,
        level: int,
    ) -> None:
        self.chol, self.alpha, self.prior_mean = chol, alpha, float(prior_mean)
        self.num_train = len(train_X)
        #: Per base kernel entering level ``l``: ``(x -> kappa_k(x, x_i), w_{.k}(l))``.
        self.terms: list[tuple[CrossKernel, Tensor]] = []
        prior_var = 0.0
        with torch.no_grad():
            a_query = covar_module.coefficients(torch.tensor([float(level)]))[0].to(train_X.dtype)
            a_train = covar_module.coefficients(train_X[..., -1]).to(train_X.dtype)
            for k, scaled in enumerate(covar_module.base_kernels):
                if not isinstance(scaled, ScaleKernel) or not isinstance(
                    scaled.base_kernel, MixedMaternKernel
                ):
                    raise TypeError(
                        "LevelPredictor needs ScaleKernel(MixedMaternKernel) base kernels."
                    )
                if float(a_query[k]) == 0.0:  # level k does not enter level l
                    continue
                s = scaled.outputscale.detach().reshape(()).to(train_X.dtype)
                base = scaled.base_kernel
                self.terms.append(
                    (
                        base.against(train_X[..., :-1], base._lengthscales().detach()),
                        a_query[k] * s * a_train[:, k],
                    )
                )
                prior_var += float(a_query[k] ** 2 * s)
        #: ``sum_k a_k(l)^2 s_k``: the prior variance, ``kappa_k(x, x) = 1`` for the Matern.
        self.prior_var = prior_var

    def cross_covariance(self, X: Tensor) -> Tensor:
        """``(m, n)``: ``K(x, l; x_i, l_i)`` for the rows of ``X`` (``(m, d)``)."""
        out = X.new_zeros(len(X), self.num_train)
        for kappa, w in self.terms:
            out = out + kappa(X) * w
        return out

    def marginals(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance (model units) at the rows of ``X`` (``(m, d)``),
        differentiable in ``X`` (closed-form gradient, see the module)."""
        X = X.to(self.chol.dtype)
        if X.requires_grad and torch.is_grad_enabled():
            return _Marginals.apply(X, self)
        with torch.no_grad():
            K_sn = self.cross_covariance(X)
            v = torch.linalg.solve_triangular(self.chol, K_sn.transpose(-1, -2), upper=False)
            return self.prior_mean + K_sn @ self.alpha, (self.prior_var - (v * v).sum(-2)).clamp_min(1e-12)

    def marginals_and_pull_back(self, X: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]]:
        """Mean, variance and ``(g_mu, g_var) -> dJ/dX`` at the rows of ``X`` (``(m, d)``),
        without autograd (see the module)."""
        X = X.to(self.chol.dtype)
        with torch.no_grad():
            mean, var, v, parts = self._forward(X)
        return mean, var, partial(self._pull_back, X, v, var, parts)

    def _forward(self, X: Tensor) -> tuple[Tensor, Tensor, Tensor, list]:
        """Mean, variance, ``L^{-1} K_{n x}`` and per term ``(dk/dr^2, a)`` for the pull-back."""
        K_sn = X.new_zeros(len(X), self.num_train)
        parts = []
        for kappa, w in self.terms:
            k, slope, a = kappa.value_and_slope(X)
            K_sn = K_sn + k * w
            parts.append((slope, a))
        v = torch.linalg.solve_triangular(self.chol, K_sn.transpose(-1, -2), upper=False)
        mean = self.prior_mean + K_sn @ self.alpha
        return mean, (self.prior_var - (v * v).sum(-2)).clamp_min(1e-12), v, parts

    def _pull_back(
        self, X: Tensor, v: Tensor, var: Tensor, parts: list, g_mean: Tensor | None, g_var: Tensor | None
    ) -> Tensor:
        """``dJ/dX`` from ``g_mean = dJ/dmu`` and ``g_var = dJ/dsigma^2`` (either ``None``)."""
        g_K = X.new_zeros(len(X), self.num_train)
        if g_mean is not None:
            g_K = g_K + g_mean[:, None] * self.alpha[None, :]
        if g_var is not None:
            g_var = torch.where(var > 1e-12, g_var, 0.0)  # the clamp's gradient
            B = torch.linalg.solve_triangular(self.chol.transpose(-1, -2), v, upper=True)
            g_K = g_K - 2.0 * g_var[:, None] * B.transpose(-1, -2)
        grad = torch.zeros_like(X)
        for (kappa, w), (slope, a) in zip(self.terms, parts):
            grad = grad + kappa.pull_back(X, a, g_K * w * slope)
        return grad


class _Marginals(torch.autograd.Function):
    """:meth:`LevelPredictor.marginals` with its gradient in ``X`` in closed form."""

    @staticmethod
    def forward(ctx, X: Tensor, predictor: LevelPredictor) -> tuple[Tensor, Tensor]:
        mean, var, pull_back = predictor.marginals_and_pull_back(X)
        ctx.pull_back = pull_back
        return mean, var

    @staticmethod
    def backward(ctx, g_mean: Tensor | None, g_var: Tensor | None) -> tuple[Tensor, None]:
        return ctx.pull_back(g_mean, g_var), None
