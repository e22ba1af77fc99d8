"""Which level to evaluate a chosen point at, by information per unit cost: multi-fidelity
max-value entropy search (MF-MES; Takeno et al., "Multi-fidelity Bayesian optimization with
max-value entropy search and its parallelization", ICML 2020) on the AR1 model.

Notation (model units of the top level, larger is better): ``f_M(x)`` the top level's latent
value at the chosen point ``x*``, with posterior mean ``mu`` and standard deviation ``sigma``;
``y_m = f_m(x*) + eps_m`` an observation at level ``m`` (noise variance ``tau_m^2``); ``f*``
the top level's maximum over the space. An evaluation at level ``m`` is worth the mutual
information between ``y_m`` and ``f*``, per unit of its cost ``c_m``:

    m* = argmax_m  I(y_m; f*) / c_m,
    I(y_m; f*) = H[y_m] - E_{f*} H[y_m | f_M(x*) <= f*].

``y_m`` and ``f_M(x*)`` are jointly normal with correlation
``r_m = cov(f_m, f_M) / sqrt((var f_m + tau_m^2) var f_M)`` (the AR1 posterior's cross-level
covariance is exact, :meth:`~optuna_mfkd.gp.model.FittedModel.level_covariance`). Given
``f_M <= f*``, the standardised ``u = (y_m - E y_m) / sd(y_m)`` has the density

    p(u) = phi(u) Phi((gamma - r u) / sqrt(1 - r^2)) / Phi(gamma),   gamma = (f* - mu) / sigma,

so, as the entropies' ``log sd(y_m)`` cancel,

    I(y_m; f*) = E_{f*} [ H[N(0, 1)] - H[p] ].

For ``r = 1`` (the top level without noise) this is MES's closed form
``gamma phi(gamma) / (2 Phi(gamma)) - log Phi(gamma)`` (Wang and Jegelka, ICML 2017); for
``|r| < 1`` the entropy of ``p`` is a one-dimensional integral, evaluated here on a fixed grid
(:func:`truncated_entropy`). The ``f*`` are :data:`NUM_MAX_SAMPLES` quantiles of the Gumbel
approximation of the maximum of independent normals over a set of points
(:func:`max_value_quantiles`, as in MES), deterministic: no random draw is consumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

#: Quantiles of the maximum used for the expectation over ``f*``.
NUM_MAX_SAMPLES = 16
#: Integration grid of :func:`truncated_entropy` (standardised units).
_GRID = torch.linspace(-12.0, 12.0, 4801, dtype=torch.float64)
_LOG_2PI = math.log(2.0 * math.pi)
#: ``H[N(0, 1)]``.
STANDARD_NORMAL_ENTROPY = 0.5 * (1.0 + _LOG_2PI)


def max_value_quantiles(mean: Tensor, std: Tensor, num: int = NUM_MAX_SAMPLES) -> Tensor:
    """``num`` quantiles ``(k + 1/2) / num`` of the maximum of independent normals
    ``N(mean_i, std_i^2)``, by the Gumbel fit of MES: with ``F(z) = prod_i Phi((z - mean_i) /
    std_i)`` and its quartiles ``z_1, z_2, z_3`` (bisection), ``b = (z_3 - z_1) / (log log 4 -
    log log (4/3))``, ``a = z_2 + b log log 2``, the ``q``-quantile is ``a - b log(-log q)``."""
    mean, std = mean.reshape(-1).to(torch.float64), std.reshape(-1).to(torch.float64).clamp_min(1e-9)

    def log_cdf(z: Tensor) -> Tensor:  # log F at each z, (k,)
        return torch.special.log_ndtr((z.unsqueeze(-1) - mean) / std).sum(-1)

    targets = torch.log(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    lo = torch.full((3,), float((mean - 8.0 * std).max()), dtype=torch.float64)
    hi = torch.full((3,), float((mean + 8.0 * std).max()), dtype=torch.float64)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = log_cdf(mid) < targets
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    z1, z2, z3 = (0.5 * (lo + hi)).tolist()
    b = (z3 - z1) / (math.log(math.log(4.0)) - math.log(math.log(4.0 / 3.0)))
    a = z2 + b * math.log(math.log(2.0))
    q = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    return a - b * torch.log(-torch.log(q))


def truncated_entropy(gamma: Tensor, r: Tensor) -> Tensor:
    """``H[p]`` of ``p(u) = phi(u) Phi((gamma - r u) / sqrt(1 - r^2)) / Phi(gamma)`` (see the
    module), elementwise over broadcast ``gamma`` and ``r`` (``|r| <= 1``; ``r = 0`` gives
    ``H[N(0, 1)]``). Trapezoidal rule on :data:`_GRID` in log space; for ``|r|`` within 1e-6
    of 1 the closed form of the truncated normal,
    ``H[N(0,1)] - gamma phi(gamma) / (2 Phi(gamma)) + log Phi(gamma)``."""
    gamma, r = torch.broadcast_tensors(gamma.to(torch.float64), r.to(torch.float64))
    r = r.clamp(-1.0, 1.0)
    s = (1.0 - r * r).clamp_min(1e-12).sqrt()
    u = _GRID
    log_phi = -0.5 * u * u - 0.5 * _LOG_2PI
    log_norm = torch.special.log_ndtr(gamma)
    log_w = torch.special.log_ndtr((gamma.unsqueeze(-1) - r.unsqueeze(-1) * u) / s.unsqueeze(-1))
    log_p = log_phi + log_w - log_norm.unsqueeze(-1)
    integrand = -torch.exp(log_p) * log_p
    h = float(u[1] - u[0])
    grid_value = h * (integrand.sum(-1) - 0.5 * (integrand[..., 0] + integrand[..., -1]))
    lam = torch.exp(-0.5 * gamma * gamma - 0.5 * _LOG_2PI - log_norm)  # phi(gamma) / Phi(gamma)
    closed = STANDARD_NORMAL_ENTROPY - 0.5 * gamma * lam + log_norm
    return torch.where(r.abs() > 1.0 - 1e-6, closed, grid_value)


def information_gain(gamma: Tensor, r: Tensor) -> Tensor:
    """``I(y_m; f*)`` for correlations ``r`` (``(L,)``) and the ``gamma`` of each max-value
    quantile (``(K,)``): ``mean_k [H[N(0, 1)] - H[p_{gamma_k, r_m}]]``, an ``(L,)`` tensor."""
    return (STANDARD_NORMAL_ENTROPY - truncated_entropy(gamma.unsqueeze(-1), r.unsqueeze(0))).mean(0)


def level_correlations(level_cov: Tensor, noise: Sequence[float]) -> Tensor:
    """``r_m = cov(f_m, f_M) / sqrt((var f_m + tau_m^2) var f_M)`` for each level ``m`` from the
    ``(L, L)`` joint posterior covariance of the latent levels at the point (model units of
    each level, as ``level_cov`` and the noise variances ``tau_m^2`` both are)."""
    var = level_cov.diagonal().clamp_min(1e-18)
    noisy = var + torch.as_tensor(list(noise), dtype=level_cov.dtype)
    return level_cov[:, -1] / (noisy * var[-1]).sqrt()


def information_gains(
    level_cov: Tensor, noise: Sequence[float], top_mean: float, max_values: Tensor, levels: Sequence[int] | None = None,
) -> Tensor:
    """``I(y_m; f*)`` (nats) of an observation at each level ``m`` of one point: an ``(L,)``
    tensor (or one entry per level of ``levels``, the same numbers computed for those levels
    only). The level choice takes ``argmax_m I(y_m; f*) / c_m`` over the allowed levels.

    Args:
        level_cov: ``(L, L)`` joint posterior covariance of the latent levels at the point
            (model units of each level).
        noise: ``(L,)`` observation noise variance of each level (the same units).
        top_mean: the top level's posterior mean at the point (its model units).
        max_values: ``(K,)`` values of the top level's maximum ``f*`` (the same units), e.g.
            :func:`max_value_quantiles`.
    """
    n = level_cov.shape[-1]
    if level_cov.shape != (n, n) or len(noise) != n:
        raise ValueError(f"level_cov must be square with one noise variance per level, got "
                         f"{tuple(level_cov.shape)} and {len(noise)}.")
    sigma = float(level_cov[-1, -1].clamp_min(1e-18).sqrt())
    gamma = (max_values.to(torch.float64).reshape(-1) - top_mean) / sigma
    r = level_correlations(level_cov, noise)
    return information_gain(gamma, r if levels is None else r[list(levels)])


def choose_level_by_information(gains: Sequence[float], costs: Sequence[float], allowed: Sequence[bool]) -> int:
    """``argmax_m gains[m] / costs[m]`` over the allowed levels (the top level, the last,
    always is; ties go to the dearer level).

    Raises:
        ValueError: when the lengths disagree or a cost is not positive and finite.
    """
    n = len(costs)
    if len(gains) != n or len(allowed) != n:
        raise ValueError(f"gains, costs and allowed need one entry per level, got {len(gains)}, {n}, {len(allowed)}.")
    if any(not (c > 0 and math.isfinite(c)) for c in costs):
        raise ValueError(f"level costs must be positive and finite, got {list(costs)}.")
    worth = [float(g) / c if (ok or m == n - 1) else -math.inf for m, (g, c, ok) in enumerate(zip(gains, costs, allowed))]
    return max(range(n), key=lambda m: (worth[m], m))
