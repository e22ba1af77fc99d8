"""A Matern-5/2 kernel over mixed numerical and categorical features.

Notation: ``x`` and ``x'`` are feature rows of :class:`~optuna_mfkd.gp.encoding.SearchSpaceEncoder`
(one column per parameter: numbers scaled to ``[0, 1]``, categoricals as the choice index);
``N`` and ``C`` are the numerical and categorical columns; ``l_j`` the length scale of column
``j`` (numerical columns one each with ``ard=True``, categorical ones with ``cat_ard=True``,
one shared per kind otherwise). The kernel is

    r^2(x, x') = sum_{j in N} (x_j - x'_j)^2 / l_j^2  +  sum_{j in C} 2 [x_j != x'_j] / l_j^2
    k(x, x')   = (1 + sqrt(5) r + 5/3 r^2) exp(-sqrt(5) r)               (nu = 5/2, the default)
    k(x, x')   = exp(-r^2 / 2)                                           (nu = inf)

The second is the squared-exponential kernel, the Matern family's limit of infinite
smoothness (``nu -> inf``): the better model for very smooth objectives (analytic test
functions; ``benchmarks/results/ar1-accuracy/``), where Matern-5/2's twice-differentiable
samples interpolate less accurately.

The factor 2 makes a categorical column count exactly as its one-hot encoding would in a
Euclidean Matern kernel (two one-hot vectors that differ are ``sqrt(2)`` apart), so with one
shared length scale this *is* the paper's kernel on one-hot features, at one column per
parameter instead of one per choice; with ``cat_ard=True`` each categorical parameter gets
its own length scale (a weighted Hamming distance, as in Optuna's GPSampler). GPyTorch's
``MaternKernel`` has no categorical term and BoTorch's ``CategoricalKernel`` is an exponential
kernel that multiplies rather than adds the categorical distance, so this small kernel is ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from gpytorch.kernels import Kernel
from torch import Tensor


class MixedMaternKernel(Kernel):
    """Matern-5/2 over numerical columns plus a Hamming term over categorical columns.

    The Hamming term is computed as a matrix product of weighted one-hot codes,
    ``sum_j w_j [x_j != x'_j] = sum_j w_j - onehot(x) diag(w) onehot(x')^T``, so its cost is
    one small matmul rather than a ``(n, m, |C|)`` comparison.

    Args:
        num_dims: number of feature columns ``d``.
        cat_dims: ``{column: number of choices}`` of the categorical columns (their values
            are choice indices ``0 .. k - 1``).
        ard: one length scale per numerical column (else one shared by them).
        cat_ard: one length scale per categorical column (else one shared by them; with
            neither flag, a single length scale for all columns).
        nu: smoothness, ``2.5`` (Matern-5/2) or ``math.inf`` (squared exponential).
        **kwargs: passed to ``gpytorch.kernels.Kernel`` (``lengthscale_prior``,
            ``lengthscale_constraint``, ...).
    """

    has_lengthscale = True

    def __init__(
        self,
        num_dims: int,
        cat_dims: Mapping[int, int] | None = None,
        ard: bool = True,
        cat_ard: bool = False,
        nu: float = 2.5,
        **kwargs,
    ) -> None:
        if nu not in (2.5, math.inf):
            raise ValueError(f"nu must be 2.5 or math.inf, got {nu!r}.")
        cat_dims = dict(cat_dims or {})
        # Length scale of each column: numerical columns own one each with ``ard``,
        # categorical ones with ``cat_ard``; the others share one per kind.
        groups: dict[object, int] = {}
        owner = []
        for j in range(num_dims):
            is_cat = j in cat_dims
            key = j if (cat_ard if is_cat else ard) else ("cat" if is_cat else "num")
            owner.append(groups.setdefault(key, len(groups)))
        # GPyTorch ties ``ard_num_dims`` to the number of input columns; this kernel has
        # fewer length scales than columns, so its length-scale parameter is sized here.
        super().__init__(**kwargs)
        self.raw_lengthscale = torch.nn.Parameter(torch.zeros(*self.batch_shape, 1, len(groups)))
        self.register_buffer("_owner", torch.tensor(owner, dtype=torch.long))
        cat = sorted(int(j) for j in cat_dims)
        if any(j < 0 or j >= num_dims for j in cat):
            raise ValueError(f"cat_dims {cat} out of range for {num_dims} columns.")
        sizes = [int(cat_dims[j]) for j in cat]
        if any(k < 1 for k in sizes):
            raise ValueError(f"cat_dims must give at least one choice per column, got {cat_dims}.")
        self.num_dims = num_dims
        self.nu = float(nu)
        self._sizes = sizes
        # Column of each one-hot position: which categorical parameter it belongs to.
        self.register_buffer(
            "_onehot_owner", torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
            if sizes else torch.zeros(0, dtype=torch.long)
        )
        self.register_buffer("_cat", torch.tensor(cat, dtype=torch.long))
        # One-hot code of the categorical columns: column j takes positions offset_j .. offset_j + k_j - 1.
        self._code_size = sum(sizes)
        self.register_buffer("_last_choice", torch.tensor([k - 1 for k in sizes], dtype=torch.long))
        self.register_buffer(
            "_code_offset", torch.tensor([sum(sizes[:j]) for j in range(len(sizes))], dtype=torch.long)
        )
        self.register_buffer(
            "_num", torch.tensor([j for j in range(num_dims) if j not in cat], dtype=torch.long)
        )

    def profile(self, r2: Tensor) -> Tensor:
        """``k`` as a function of the squared scaled distance ``r2`` (Matern-5/2 or squared
        exponential, by ``nu``)."""
        return squared_exponential(r2) if self.nu == math.inf else matern52(r2)

    def _lengthscales(self) -> Tensor:
        """``(*batch, 1, d)``: the length scale of every column."""
        return self.lengthscale[..., self._owner]

    def _one_hot(self, c: Tensor) -> Tensor:
        """``(..., n, K)`` one-hot codes of ``(..., n, |C|)`` choice indices (rounded, clipped
        to each parameter's choices): one scatter at each column's offset in the code."""
        idx = torch.minimum(c.round().long().clamp_min(0), self._last_choice) + self._code_offset
        return torch.zeros((*c.shape[:-1], self._code_size), dtype=c.dtype, device=c.device).scatter_(-1, idx, 1.0)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params
    ) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("MixedMaternKernel does not support last_dim_is_batch.")
        return self.profile(self.scaled_sq_dist(self._lengthscales(), x1, x2, diag))

    def same_layout(self, other: object) -> bool:
        """Whether ``other`` is a kernel of this class with the same columns, length-scale
        owners and smoothness (so that their length scales can be stacked,
        :meth:`scaled_sq_dist`)."""
        return (
            isinstance(other, MixedMaternKernel)
            and other.nu == self.nu
            and other.num_dims == self.num_dims
            and other._sizes == self._sizes
            and torch.equal(other._owner, self._owner)
            and torch.equal(other._cat, self._cat)
        )

    def stacked_lengthscales(self, kernels: Sequence[MixedMaternKernel]) -> Tensor:
        """``(len(kernels), 1, d)``: every column's length scale of each of ``kernels``
        (all of :meth:`same_layout` as this one), for :meth:`scaled_sq_dist`."""
        return torch.stack([k._lengthscales() for k in kernels])

    def sq_dist_terms(self, x: Tensor, columns: Sequence[int] | None = None) -> Tensor:
        """``(c, n, n)``: each column's part of ``r^2`` between the rows of ``x`` (``(n, d)``)
        before scaling, for the ``columns`` given (default: all ``d``, in order):
        ``(x_j - x'_j)^2`` for a numerical column, ``2 [x_j != x'_j]`` for a categorical one;
        ``r^2 = sum_j terms_j / l_j^2``. Made once per fit (or per chunk of columns where all
        would not fit in memory), these turn every evaluation of a training covariance into
        one weighted sum (:class:`optuna_mfkd.gp.fitting.ClosedFormObjective`)."""
        cols = list(range(x.shape[-1])) if columns is None else [int(j) for j in columns]
        xs = x[:, cols].transpose(0, 1)  # (c, n)
        terms = (xs[:, :, None] - xs[:, None, :]) ** 2
        cat = set(self._cat.tolist())
        at = [i for i, j in enumerate(cols) if j in cat]
        if at:
            codes = xs[at].round()
            terms[at] = 2.0 * (codes[:, :, None] != codes[:, None, :]).to(x.dtype)
        return terms

    def scaled_sq_dist(self, ls: Tensor, x1: Tensor, x2: Tensor, diag: bool = False) -> Tensor:
        """``r^2(x1, x2)`` (see the module) for column length scales ``ls`` of shape
        ``(*b, 1, d)``: ``(*b, n, m)``, or ``(*b, n)`` with ``diag``. A leading ``b`` of
        several kernels' length scales (:meth:`stacked_lengthscales`) gives all their
        distances in one pass (the AR1 kernel's levels)."""
        r2 = None
        if len(self._num):
            ls_n = ls[..., self._num]
            a, b = x1[..., self._num] / ls_n, x2[..., self._num] / ls_n
            if diag:
                r2 = ((a - b) ** 2).sum(-1)
            else:
                r2 = self.covar_dist(a, b, square_dist=True)
        if len(self._cat):
            w = 2.0 / ls[..., self._cat] ** 2  # (*b, 1, |C|)
            c1, c2 = x1[..., self._cat], x2[..., self._cat]
            if diag:
                term = ((c1 != c2).to(x1.dtype) * w).sum(-1)
            else:
                o1, o2 = self._one_hot(c1), self._one_hot(c2)
                w_cols = w[..., self._onehot_owner]  # (*b, 1, K)
                same = (o1 * w_cols) @ o2.transpose(-1, -2)
                term = w.sum(-1, keepdim=True) - same
            r2 = term if r2 is None else r2 + term
        if r2 is None:  # no columns at all: a constant kernel (r = 0)
            shape = x1.shape[:-1] if diag else (*x1.shape[:-1], x2.shape[-2])
            return torch.zeros((*ls.shape[:-2], *shape), dtype=x1.dtype, device=x1.device)
        return r2

    def against(self, x2: Tensor, ls: Tensor) -> CrossKernel:
        """``x1 -> k(x1, x2)`` for fixed ``x2`` (``(n, d)``) and column length scales ``ls``
        (``(1, d)``, as :meth:`_lengthscales` gives them), for predictions of a fitted model
        (detached ``ls``): a :class:`CrossKernel`."""
        return CrossKernel(self, x2, ls)


class CrossKernel:
    """``k(x1, x2)`` of a :class:`MixedMaternKernel` for a fixed ``x2`` (``(n, d)``) and fixed
    column length scales ``ls`` (``(1, d)``), with its gradient in ``x1`` in closed form.

    ``x2``'s side of ``r^2`` is formed once: its scaled numerical columns ``b_i`` (centred at
    their mean ``c``), ``||b_i||^2`` and its weighted one-hot codes ``onehot(x2) diag(w)``;
    with ``a`` the scaled, centred numerical columns of ``x1``,

        r^2 = ||a||^2 + ||b_i||^2 - 2 a . b_i  +  sum_j w_j - onehot(x1) diag(w) onehot(x2)^T,

        d r^2 / d x1_j = 2 (a_j - b_ij) / l_j   (numerical j; 0 for a categorical column),

    so a value costs two matmuls and the profile, and the pull-back of a gradient ``G`` on
    ``k`` (``(m, n)``) to ``x1`` costs one more:
    ``grad_j = 2 / l_j (a_j sum_i G'_i - sum_i G'_i b_ij)`` with ``G' = G * dk/dr^2``.
    """

    def __init__(self, kernel: MixedMaternKernel, x2: Tensor, ls: Tensor) -> None:
        self.kernel, self.num_train = kernel, len(x2)
        num, cat = kernel._num, kernel._cat
        self.ls_n = ls[..., num]
        self.b = None
        if len(num):
            b = x2[..., num] / self.ls_n
            self.centre = b.mean(-2, keepdim=True)
            self.b = b - self.centre
            self.b_norm = (self.b * self.b).sum(-1)
            self.b_t = self.b.transpose(-1, -2)
        w = 2.0 / ls[..., cat] ** 2
        self.w_sum = w.sum(-1, keepdim=True)
        self.o2w_t = None
        if len(cat):
            self.o2w_t = (kernel._one_hot(x2[..., cat]) * w[..., kernel._onehot_owner]).transpose(-1, -2)

    def sq_dist(self, x1: Tensor) -> tuple[Tensor, Tensor | None]:
        """``r^2(x1, x2)`` (``(m, n)``, unclamped) and ``a`` (``None`` without numerical columns)."""
        kernel = self.kernel
        r2, a = x1.new_zeros(len(x1), self.num_train), None
        if self.b is not None:
            a = x1[..., kernel._num] / self.ls_n - self.centre
            r2 = (a * a).sum(-1, keepdim=True) + self.b_norm - 2.0 * (a @ self.b_t)
        if self.o2w_t is not None:
            r2 = r2 + (self.w_sum - kernel._one_hot(x1[..., kernel._cat]) @ self.o2w_t)
        return r2, a

    def __call__(self, x1: Tensor) -> Tensor:
        return self.kernel.profile(self.sq_dist(x1)[0])

    def value_and_slope(self, x1: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``k``, ``dk/dr^2`` (both ``(m, n)``) and ``a``, for :meth:`pull_back`."""
        r2, a = self.sq_dist(x1)
        k, slope = profile_and_slope(r2, self.kernel.nu)
        return k, slope, a

    def pull_back(self, x1: Tensor, a: Tensor | None, g_r2: Tensor) -> Tensor:
        """``(m, d)``: the gradient in ``x1`` of ``sum(g_r2 * r^2(x1, x2))`` (``g_r2`` the
        gradient on ``r^2``, ``(m, n)``); zero in the categorical columns."""
        grad = torch.zeros_like(x1)
        if a is not None:
            grad[:, self.kernel._num] = 2.0 * (a * g_r2.sum(-1, keepdim=True) - g_r2 @ self.b) / self.ls_n
        return grad


def profile_and_slope(r2: Tensor, nu: float) -> tuple[Tensor, Tensor]:
    """The profile ``k(r^2)`` (:func:`matern52`, or :func:`squared_exponential` for
    ``nu = inf``) and its derivative in ``r^2`` at ``r2`` clamped at 0:
    ``-(5/6)(1 + sqrt(5) r) exp(-sqrt(5) r)`` and ``-k / 2``."""
    r2 = r2.clamp_min(0.0)
    if nu == math.inf:
        k = torch.exp(-0.5 * r2)
        return k, -0.5 * k
    r = r2.sqrt()
    sqrt5 = math.sqrt(5.0)
    e = torch.exp(-sqrt5 * r)
    return (1.0 + sqrt5 * r + (5.0 / 3.0) * r2) * e, (-5.0 / 6.0) * (1.0 + sqrt5 * r) * e


def squared_exponential(r2: Tensor) -> Tensor:
    """``exp(-r^2 / 2)`` of squared distances ``r2`` (clamped at 0)."""
    return torch.exp(-0.5 * r2.clamp_min(0.0))


def matern52(r2: Tensor) -> Tensor:
    """``(1 + sqrt(5) r + 5/3 r^2) exp(-sqrt(5) r)`` of squared distances ``r2`` (clamped at 0)."""
    r2 = r2.clamp_min(0.0)
    r = r2.clamp_min(1e-30).sqrt()
    sqrt5 = math.sqrt(5.0)
    return (1.0 + sqrt5 * r + (5.0 / 3.0) * r2) * torch.exp(-sqrt5 * r)
