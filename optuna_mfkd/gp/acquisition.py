"""Upper-confidence-bound scores of candidates under the fitted co-kriging model.

The paper's acquisition (Algorithm 1) is ``E[y_L(x)] + beta * Var[y_L(x)]`` — ``beta``
multiplies the **variance**, not the standard deviation (BoTorch's
``UpperConfidenceBound`` computes ``mean + sqrt(beta) * std`` instead). The value of
``beta`` only has a meaning together with the units of ``y``; here both moments are
expressed in **standardised units of the highest level**: with ``m_L`` and ``s_L`` the
mean and standard deviation of the observed highest-level values,

    score(x) = (mu(x) - m_L) / s_L + beta * sigma^2(x) / s_L^2,

where ``mu`` and ``sigma^2`` are the posterior mean and variance of ``y_L(x)`` in
observation units. ``m_L`` shifts every score alike, so it is dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optuna_mfkd.gp.model import FittedModel


def posterior_mean_var(
    fitted: FittedModel, X: Tensor, chunk_size: int = 4096
) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance of the highest level at ``X`` (``(m, d)``), in
    observation units.

    With ``K_*n`` the cross-covariance of the candidates (at the highest level) with the
    ``n`` training rows and ``L, alpha`` from :meth:`FittedModel.training_cholesky`:

        mu(x)      = m_L + K_*n alpha
        sigma^2(x) = k_LL(x, x) - || L^{-1} K_n* ||^2   (column-wise)

    Only these marginals are formed, in chunks, so memory stays ``O(chunk_size * n)``
    instead of the ``m x m`` joint covariance a full posterior would build.
    """
    model = fitted.model
    top = float(fitted.num_levels - 1)
    L, alpha = fitted.training_cholesky()
    train_X = model.train_inputs[0]
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, len(X), chunk_size):
            chunk = X[start : start + chunk_size].to(torch.float64)
            Xt = torch.cat([chunk, torch.full((len(chunk), 1), top, dtype=chunk.dtype)], dim=-1)
            prior_mean = model.forward(Xt).mean
            K_sn = model.covar_module(Xt, train_X).to_dense()
            k_ss = model.covar_module(Xt, Xt, diag=True)
            v = torch.linalg.solve_triangular(L, K_sn.T, upper=False)
            means.append(prior_mean + K_sn @ alpha)
            variances.append((k_ss - (v * v).sum(0)).clamp_min(0.0))
    mean = torch.cat(means) if means else torch.zeros(0, dtype=torch.float64)
    var = torch.cat(variances) if variances else torch.zeros(0, dtype=torch.float64)
    return fitted.y_mean + fitted.y_std * mean, fitted.y_std**2 * var


def ucb_scores(mean: Tensor, var: Tensor, beta: float, top_std: float) -> Tensor:
    """``mean / s_L + beta * var / s_L^2`` (see the module docstring)."""
    if top_std <= 0:
        raise ValueError(f"top_std must be positive, got {top_std}")
    return mean / top_std + beta * var / top_std**2
