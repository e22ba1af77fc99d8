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
in ``x`` only: the hyperparameters are constants here, so a gradient in ``x`` neither builds
nor walks their autograd graph, and no lazy kernel tensor is made per call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from gpytorch.kernels import ScaleKernel
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel
from optuna_mfkd.gp.mixed_kernel import MixedMaternKernel


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
        self.terms: list[tuple[Callable[[Tensor], Tensor], Tensor]] = []
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
        """Posterior mean and variance (model units) at the rows of ``X`` (``(m, d)``)."""
        X = X.to(self.chol.dtype)
        K_sn = self.cross_covariance(X)
        v = torch.linalg.solve_triangular(self.chol, K_sn.transpose(-1, -2), upper=False)
        mean = self.prior_mean + K_sn @ self.alpha
        return mean, (self.prior_var - (v * v).sum(-2)).clamp_min(1e-12)
