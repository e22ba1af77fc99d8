"""The AR1 (Kennedy-O'Hagan) co-kriging kernel as a GPyTorch ``Kernel``.

Notation: ``L`` fidelity levels numbered ``0 .. L-1`` (cheapest first); inputs are rows
``[x, l]`` whose last column is the level ``l``. The model is the autoregression

    y_0(x) = delta_0(x),        y_l(x) = rho_{l-1} * y_{l-1}(x) + delta_l(x)   (l >= 1)

with independent zero-mean GPs ``delta_k ~ GP(0, k_k)``. Unrolling it gives, for any two
levels ``l`` and ``m`` (valid for designs that are not nested),

    cov(y_l(x), y_m(x')) = sum_{k=0}^{min(l, m)} a_k(l) * a_k(m) * k_k(x, x'),
    a_k(l) = prod_{j=k}^{l-1} rho_j   (an empty product is 1; a_k(l) = 0 for k > l).

For two levels this is ``k_0`` (low, low), ``rho * k_0`` (high, low) and
``rho^2 * k_0 + k_1`` (high, high). Observation noise is not part of the kernel (the
likelihood adds one noise variance per level).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gpytorch.kernels import Kernel, ScaleKernel
from torch import Tensor

from optuna_mfkd.gp.mixed_kernel import MixedMaternKernel


class AR1Kernel(Kernel):
    """Multi-level AR1 co-kriging covariance over inputs ``[x, level]``.

    Args:
        base_kernels: ``L`` kernels over ``x``: ``k_0`` for the cheapest level, then the
            discrepancy kernels ``k_1 .. k_{L-1}``. They carry their own output scales
            (e.g. ``ScaleKernel``) since the discrepancy is usually smaller than ``y_0``.
        rho_init: initial value of every ``rho_l`` (fitted by maximum likelihood; not
            constrained, so a negative correlation between levels can be learned).

    The level is read from the last input column and rounded to an integer.
    """

    has_lengthscale = False

    def __init__(self, base_kernels: Sequence[Kernel], rho_init: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if len(base_kernels) < 1:
            raise ValueError("base_kernels must hold at least one kernel.")
        self.base_kernels = torch.nn.ModuleList(base_kernels)
        self.num_levels = len(base_kernels)
        self.register_parameter(
            "rho", torch.nn.Parameter(torch.full((max(self.num_levels - 1, 0),), float(rho_init)))
        )

    def coefficients(self, levels: Tensor) -> Tensor:
        """``a_k(l)`` for each level in ``levels``: a ``(..., n, L)`` tensor
        (:func:`coefficients` of this kernel's ``rho``)."""
        return coefficients(self.rho, levels, self.num_levels)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params
    ) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("AR1Kernel does not support last_dim_is_batch.")
        f1, f2 = x1[..., :-1], x2[..., :-1]
        a1 = self.coefficients(x1[..., -1]).to(x1.dtype)
        a2 = a1 if x2 is x1 else self.coefficients(x2[..., -1]).to(x2.dtype)
        stacked = self.stacked_bases()
        if stacked is not None and x1.dim() == 2 and x2.dim() == 2:
            # Every level's kernel in one pass: k_k = s_k^2 * profile(r_k^2), stacked over k.
            first = stacked[0].base_kernel
            scales = torch.stack([kernel.outputscale.reshape(()) for kernel in stacked])
            ls = first.stacked_lengthscales([kernel.base_kernel for kernel in stacked])
            kk = first.profile(first.scaled_sq_dist(ls, f1, f2, diag=diag))  # (L, n, m) or (L, n)
            return combine(kk, a1, a2, scales, diag)
        out = None
        for k, kernel in enumerate(self.base_kernels):
            # ``forward``, not ``__call__``: a dense tensor, without a lazy kernel tensor per
            # base kernel (the base kernels use no ``active_dims``).
            kk = kernel.forward(f1, f2, diag=diag)
            if not diag:
                term = a1[..., :, k : k + 1] * kk * a2[..., :, k].unsqueeze(-2)
            else:
                term = a1[..., k] * kk * a2[..., k]
            out = term if out is None else out + term
        assert out is not None
        return out

    def stacked_bases(self) -> list[ScaleKernel] | None:
        """The base kernels when all are ``ScaleKernel``\\ s (no batch shape) over
        :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel`\\ s of one layout, whose
        covariances :meth:`forward` then forms in one pass; else ``None``."""
        bases = list(self.base_kernels)
        first = bases[0].base_kernel if isinstance(bases[0], ScaleKernel) else None
        if not isinstance(first, MixedMaternKernel):
            return None
        for kernel in bases:
            if not (
                isinstance(kernel, ScaleKernel)
                and kernel.batch_shape == torch.Size()
                and kernel.base_kernel.batch_shape == torch.Size()
                and first.same_layout(kernel.base_kernel)
            ):
                return None
        return bases


def coefficients(rho: Tensor, levels: Tensor, num_levels: int) -> Tensor:
    """``a_k(l) = prod_{j=k}^{l-1} rho_j`` for ``k <= l`` and 0 otherwise, for each level in
    ``levels`` (rounded, clipped to ``0 .. num_levels - 1``): a ``(..., n, L)`` tensor,
    differentiable in ``rho`` (``(L - 1,)``)."""
    levels = levels.round().long().clamp(0, num_levels - 1)
    cols = []
    for k in range(num_levels):
        # prod_{j=k}^{l-1} rho_j for every possible l, as a lookup table over l.
        table = [torch.zeros((), dtype=rho.dtype, device=rho.device)] * k
        prod = torch.ones((), dtype=rho.dtype, device=rho.device)
        table.append(prod)
        for j in range(k, num_levels - 1):
            prod = prod * rho[j]
            table.append(prod)
        cols.append(torch.stack(table)[levels])
    return torch.stack(cols, dim=-1)


def combine(kk: Tensor, a1: Tensor, a2: Tensor, scales: Tensor, diag: bool = False) -> Tensor:
    """``sum_k a_k(l) a_k(m) s_k^2 k_k(x, x')`` from every level's kernel without its output
    scale, ``kk`` (``(L, n, m)``, or ``(L, n)`` with ``diag``), the coefficients of both sides
    (``(n, L)`` and ``(m, L)``, :meth:`AR1Kernel.coefficients`) and the output scales
    ``s_k^2`` (``(L,)``)."""
    if diag:
        return ((a1 * a2).transpose(0, 1) * scales[:, None] * kk).sum(0)
    weights = a1.transpose(0, 1)[:, :, None] * a2.transpose(0, 1)[:, None, :]  # (L, n, m)
    return (weights * scales[:, None, None] * kk).sum(0)
