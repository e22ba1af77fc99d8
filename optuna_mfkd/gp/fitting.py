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
:func:`map_closure` evaluates ``J`` by :class:`RawObjective`, a pure function of the raw
parameters the optimiser moves: each column's squared differences of the training rows are
made once, so an evaluation weighs them by the length scales (one matrix product for all
levels) instead of forming distances again, and the modules' properties, constraints and
prior closures are looked up once per fit instead of at every evaluation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.utils import get_parameters
from gpytorch.constraints import Interval
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.models import ExactGP
from gpytorch.priors import GammaPrior, LogNormalPrior, Prior
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel, coefficients

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
#: The most squared differences :class:`ClosedFormObjective` holds at once (``d n^2``; 64 MB
#: in float64): above it they are made again per chunk of columns at each evaluation.
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


def log_density(prior: Prior) -> Callable[[Tensor], Tensor]:
    """``v -> log p(v)`` of ``prior``, summed over ``v``'s elements. The model's two kinds are
    written out as torch forms them (the same rounding, without a distribution object per
    call):

        LogNormal(mu, s):  log p(v) = -(log v - mu)^2 / (2 s^2) - log s - log sqrt(2 pi) - log v
        Gamma(a, b):       log p(v) = a log b + (a - 1) log v - b v - log Gamma(a)

    Any other prior uses its ``log_prob``.
    """
    if isinstance(prior, LogNormalPrior):
        mu, s = prior.loc.detach(), prior.scale.detach()
        two_var, log_s = 2 * s**2, s.log()  # in the prior's own precision, as torch's Normal

        def density(v: Tensor) -> Tensor:
            log_v = torch.log(v)
            return ((-((log_v - mu) ** 2) / two_var - log_s - _LOG_SQRT_2PI) - log_v).sum()
    elif isinstance(prior, GammaPrior):
        a, b = prior.concentration.detach(), prior.rate.detach()
        a_log_b, lgamma_a = torch.xlogy(a, b), torch.lgamma(a)

        def density(v: Tensor) -> Tensor:
            return (a_log_b + torch.xlogy(a - 1, v) - b * v - lgamma_a).sum()
    else:
        def density(v: Tensor) -> Tensor:
            return prior.log_prob(v).sum()
    return density


def log_priors(model: ExactGP) -> list[Callable[[], Tensor]]:
    """One function per prior of the model: ``log p(theta_p)`` (summed over its elements) at
    the current hyperparameters (:func:`log_density`). The priors are looked up once
    (walking the modules costs more than the densities)."""
    terms = []
    for _, module, prior, closure, _ in model.named_priors():
        density = log_density(prior)
        terms.append(lambda module=module, closure=closure, density=density: density(closure(module)))
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
    K = model.covar_module.forward(X, X)
    z = model.train_targets
    levels = X[:, -1].round().long()
    means = torch.stack([m.constant.reshape(()) for m in model.mean_module.base_means])
    noise = model.likelihood.noise_covar.noise.reshape(-1)
    value = _log_marginal(K, noise[levels], z - means[levels])
    for term in log_priors(model) if priors is None else priors:
        value = value + term()
    return value / len(z)


def _log_marginal(K: Tensor, noise: Tensor, r: Tensor) -> Tensor:
    """``log N(r; 0, K + diag(noise))``: ``-1/2 r^T alpha - sum_i log C_ii - n/2 log(2 pi)``.

    Raises:
        linear_operator.utils.errors.NotPSDError: see :func:`map_objective`.
    """
    chol = psd_safe_cholesky(K + torch.diag(noise))
    w = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False)  # r^T alpha = ||C^{-1} r||^2
    return -0.5 * (w * w).sum() - chol.diagonal().log().sum() - 0.5 * len(r) * math.log(2.0 * math.pi)


#: Above this raw value torch's (and GPyTorch's) softplus is the identity.
_LINEAR_ABOVE = 20.0
#: Where each prior of the AR1 model sits: its name in ``named_priors`` -> what it is on.
_PRIOR_SITES = (
    (re.compile(r"likelihood\.noise_covar\.noise_prior"), "noise"),
    (re.compile(r"covar_module\.base_kernels\.(\d+)\.outputscale_prior"), "scale"),
    (re.compile(r"covar_module\.base_kernels\.(\d+)\.base_kernel\.lengthscale_prior"), "lengthscale"),
)


def _softplus_bound(module: torch.nn.Module, name: str) -> float | None:
    """The lower bound ``b`` of ``module``'s raw parameter ``name`` when its value is
    ``softplus(raw) + b`` (GPyTorch's ``GreaterThan``/``Positive``), ``-inf`` when it has no
    constraint (the value is the raw number), ``None`` for any other constraint."""
    constraint = getattr(module, f"{name}_constraint", None)
    if constraint is None or not constraint.enforced:
        return -math.inf
    transform = constraint._transform if isinstance(constraint, Interval) else None
    softplus = transform is torch.nn.functional.softplus or (
        isinstance(transform, torch.nn.Softplus) and transform.beta == 1.0 and transform.threshold == _LINEAR_ABOVE
    )
    if softplus and math.isinf(float(constraint.upper_bound)):
        return float(constraint.lower_bound)
    return None


def _prior_density(prior: Prior) -> Callable[[np.ndarray], tuple[float, np.ndarray]] | None:
    """``v -> (sum log p(v), d/dv log p(v))`` of a log-normal or Gamma prior (the forms of
    :func:`log_density`); ``None`` for other priors."""
    # The constants in the prior's own precision, as torch forms them (:func:`log_density`).
    if isinstance(prior, LogNormalPrior):
        mu = float(prior.loc)
        two_var, log_s = float(2 * prior.scale.detach() ** 2), float(prior.scale.detach().log())

        def density(v: np.ndarray) -> tuple[float, np.ndarray]:
            log_v = np.log(v)
            return (
                float(np.sum(-((log_v - mu) ** 2) / two_var - log_s - _LOG_SQRT_2PI - log_v)),
                (-2.0 * (log_v - mu) / two_var - 1.0) / v,
            )
    elif isinstance(prior, GammaPrior):
        a, b = float(prior.concentration), float(prior.rate)
        constant = float(torch.xlogy(prior.concentration.detach(), prior.rate.detach()) - torch.lgamma(prior.concentration.detach()))

        def density(v: np.ndarray) -> tuple[float, np.ndarray]:
            return float(np.sum(constant + (a - 1.0) * np.log(v) - b * v)), (a - 1.0) / v - b
    else:
        return None
    return density


class ClosedFormObjective:
    """``J(theta)`` (see the module) of an AR1 model and its gradient in closed form, on the
    raw parameters the optimiser moves, for :func:`map_closure`.

    Forward, with ``terms_j`` each column's squared differences of the training rows
    (:meth:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel.sq_dist_terms`, made once),
    ``l_{k,j}`` level ``k``'s length scale of column ``j``, ``a_k`` the AR1 coefficients of
    the rows (:func:`~optuna_mfkd.gp.ar1_kernel.coefficients`) and ``P`` the kernel's profile:

        R_k = sum_j terms_j / l_{k,j}^2,   K = sum_k s_k^2 (a_k a_k^T) o P(R_k),
        Sigma = K + diag(noise_{l_i}),     alpha = Sigma^{-1} (z - m_{l_i}).

    Backward (Rasmussen & Williams, eq. 5.9), with ``G = (alpha alpha^T - Sigma^{-1}) / 2``:

        dJ/dSigma = G,   dJ/dm_l = sum_{l_i = l} alpha_i,   dJ/dnoise_l = sum_{l_i = l} G_ii,
        dJ/ds_k^2 = sum(G o W_k o P(R_k)),   W_k = a_k a_k^T,
        dJ/d(1/l_{k,j}^2) = sum(H_k o terms_j),   H_k = s_k^2 G o W_k o P'(R_k),
        dJ/da_k = 2 s_k^2 (G o P(R_k)) a_k,   then the chain rule through ``a_k(rho)``,

    plus the priors' derivatives, and ``d value / d raw = sigmoid(raw)`` where the value is
    ``softplus(raw) + bound``. At ``n`` = 20 one evaluation costs a few NumPy operations on
    ``n x n`` arrays instead of the hundred-odd autograd nodes of :func:`map_objective`,
    whose value and gradient it equals to rounding (tested). Made by :meth:`of`.
    """

    def __init__(self, model: ExactGP, bases: list, priors: list, bounds: dict[int, float]) -> None:
        X = model.train_inputs[0]
        covar = model.covar_module
        L = covar.num_levels
        self._num_levels = L
        self._nu = bases[0].base_kernel.nu
        self._kernel = bases[0].base_kernel
        owner = self._kernel._owner.numpy()
        levels = X[:, -1].round().long().numpy()
        self._levels = levels
        self._onehot = np.eye(L)[levels]  # (n, L)
        self._all_levels = torch.arange(L)
        self._z = model.train_targets.detach().numpy()
        self._priors = priors
        # The columns' squared differences, (c, n * n) per chunk of columns: made here once
        # where all fit in MAX_TERMS numbers, else per chunk at each evaluation.
        x, d, n = X[:, :-1].detach(), X.shape[-1] - 1, X.shape[-2]
        per_chunk = max(1, MAX_TERMS // max(n * n, 1))
        self._chunks = [list(range(j, min(j + per_chunk, d))) for j in range(0, d, per_chunk)]
        self._x = x
        self._terms = self._chunk_terms(self._chunks[0]) if len(self._chunks) == 1 else None
        # Every raw parameter as a slice of one flat vector: the noises, the means, rho, the
        # output scales, then each level's length scales.
        noise = model.likelihood.noise_covar.raw_noise
        tensors = [noise, *(m.raw_constant for m in model.mean_module.base_means), covar.rho]
        tensors += [k.raw_outputscale for k in bases] + [k.base_kernel.raw_lengthscale for k in bases]
        self._tensors = tensors
        sizes = [t.numel() for t in tensors]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._slices = {id(t): (int(offsets[i]), int(offsets[i + 1]), tuple(t.shape)) for i, t in enumerate(tensors)}
        lower = np.full(int(offsets[-1]), -math.inf)
        for t in tensors:
            if id(t) in bounds:
                a, b, _ = self._slices[id(t)]
                lower[a:b] = bounds[id(t)]
        self._constrained = np.isfinite(lower)
        self._lower = lower[self._constrained]
        self._noise = slice(*self._slices[id(noise)][:2])
        self._means = slice(self._slices[id(tensors[1])][0], self._slices[id(tensors[L])][1])
        self._rho = slice(*self._slices[id(covar.rho)][:2])
        self._scales = slice(self._slices[id(tensors[L + 2])][0], self._slices[id(tensors[2 * L + 1])][1])
        ls_starts = [self._slices[id(k.base_kernel.raw_lengthscale)][0] for k in bases]
        self._ls = [slice(a, a + k.base_kernel.raw_lengthscale.numel()) for a, k in zip(ls_starts, bases)]
        self._ls_cols = np.array([[a + owner[j] for j in range(d)] for a in ls_starts], dtype=int)  # (L, d)

    @classmethod
    def of(cls, model: ExactGP) -> ClosedFormObjective | None:
        """The objective of ``model``; ``None`` where the model is not of that form (the
        covariance not an :class:`AR1Kernel` over stacked bases, a prior other than
        log-normal or Gamma or elsewhere than on the noises, output scales and length scales,
        a constraint other than ``softplus(raw) + bound``, batched inputs; then
        :func:`map_objective` serves)."""
        covar = model.covar_module
        bases = covar.stacked_bases() if isinstance(covar, AR1Kernel) else None
        X = model.train_inputs[0]
        if bases is None or X.dim() != 2:
            return None
        priors = []
        for name, _, prior, _, _ in model.named_priors():
            site = next(((what, m) for pattern, what in _PRIOR_SITES if (m := pattern.fullmatch(name))), None)
            density = _prior_density(prior)
            if site is None or density is None:
                return None
            what, match = site
            priors.append((what, int(match.group(1)) if match.groups() else 0, density))
        noise_covar = model.likelihood.noise_covar
        owners = [(noise_covar, "raw_noise")]
        owners += [(mean, "raw_constant") for mean in model.mean_module.base_means]
        owners += [(kernel, "raw_outputscale") for kernel in bases]
        owners += [(kernel.base_kernel, "raw_lengthscale") for kernel in bases]
        bounds = {}
        for module, name in owners:
            bound = _softplus_bound(module, name)
            if bound is None:
                return None
            bounds[id(getattr(module, name))] = bound
        return cls(model, bases, priors, bounds)

    def _chunk_terms(self, columns: list[int]) -> np.ndarray:
        terms = self._kernel.sq_dist_terms(self._x, columns)
        return terms.reshape(len(columns), -1).numpy()

    def _terms_by_chunk(self) -> Iterator[tuple[list[int], np.ndarray]]:
        """``(columns, terms (c, n * n))`` of each chunk of columns."""
        if self._terms is not None:
            yield self._chunks[0], self._terms
            return
        for columns in self._chunks:
            yield columns, self._chunk_terms(columns)

    def covers(self, parameters: Iterable[Tensor]) -> bool:
        """Whether :meth:`__call__` gives the gradient of each of ``parameters``."""
        return all(id(p) in self._slices for p in parameters)

    def __call__(self) -> tuple[float, dict[int, np.ndarray]]:
        """``J`` at the model's current hyperparameters and its gradient: ``{id(raw
        parameter): dJ/d raw}`` for every raw parameter of the model (``rho`` included).

        Raises:
            linear_operator.utils.errors.NotPSDError: as :func:`map_objective`.
        """
        L, lv, n = self._num_levels, self._levels, len(self._z)
        raw = np.concatenate([t.detach().numpy().reshape(-1) for t in self._tensors])
        val, dval = raw.copy(), np.ones_like(raw)
        # softplus(raw) + bound and its derivative, the sigmoid; linear above torch's threshold
        x = raw[self._constrained]
        linear = x > _LINEAR_ABOVE
        val[self._constrained] = np.where(linear, x, np.logaddexp(0.0, np.where(linear, 0.0, x))) + self._lower
        dval[self._constrained] = np.where(linear, 1.0, 0.5 * (1.0 + np.tanh(0.5 * x)))
        noise, means, rho, scales = val[self._noise], val[self._means], val[self._rho], val[self._scales]
        ls_cols = val[self._ls_cols]  # (L, d)
        # a_k(l) of each level l (rows) and k (columns); the training rows' by their level
        A = self._onehot @ coefficients(torch.from_numpy(rho), self._all_levels, L).numpy()  # (n, L)
        inv_sq = ls_cols**-2  # (L, d)
        R = np.zeros((L, n * n))
        for columns, terms in self._terms_by_chunk():
            R += inv_sq[:, columns] @ terms
        R = R.reshape(L, n, n)
        P, dP = _profile(R, self._nu)
        W = A.T[:, :, None] * A.T[:, None, :]  # (L, n, n)
        WP = W * P
        K = np.tensordot(scales, WP, axes=1)
        Sigma = torch.from_numpy(K + np.diag(noise[lv]))
        chol = psd_safe_cholesky(Sigma)
        r = self._z - means[lv]
        alpha = torch.cholesky_solve(torch.from_numpy(r).unsqueeze(-1), chol).numpy()[:, 0]
        inv = torch.cholesky_inverse(chol).numpy()
        value = -0.5 * r @ alpha - float(chol.diagonal().log().sum()) - 0.5 * n * math.log(2.0 * math.pi)
        G = 0.5 * (np.outer(alpha, alpha) - inv)
        # The likelihood's gradient with respect to each value.
        g = np.zeros_like(val)
        g[self._means] = self._onehot.T @ alpha
        g[self._noise] = self._onehot.T @ np.diag(G)
        g_scales = (WP * G).reshape(L, -1).sum(1)
        H = (scales[:, None, None] * G) * W * dP
        g_inv_sq = np.zeros_like(inv_sq)  # (L, d)
        for columns, terms in self._terms_by_chunk():
            g_inv_sq[:, columns] = H.reshape(L, -1) @ terms.T
        np.add.at(g, self._ls_cols, g_inv_sq * (-2.0) * ls_cols**-3)
        GP = G * P  # (L, n, n)
        g_A = 2.0 * scales[None, :] * np.einsum("kij,jk->ik", GP, A)  # (n, L)
        g[self._rho] = _rho_gradient(rho, self._onehot.T @ g_A, L)
        # The priors' (summed into the same gradients).
        for what, k, density in self._priors:
            at = self._noise if what == "noise" else self._ls[k] if what == "lengthscale" else None
            if at is None:
                logp, dlogp = density(scales[k : k + 1])
                g_scales[k] += dlogp[0]
            else:
                logp, dlogp = density(val[at])
                g[at] += dlogp
            value += logp
        g[self._scales] = g_scales
        g *= dval / n
        return value / n, {i: g[a:b].reshape(shape) for i, (a, b, shape) in self._slices.items()}


def _profile(R: np.ndarray, nu: float) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's profile ``P(R)`` of squared distances and ``dP/dR``
    (:meth:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel.profile`):

        Matern-5/2:  P = (1 + sqrt(5) r + 5/3 R) e^{-sqrt(5) r},  dP/dR = -5/6 (1 + sqrt(5) r) e^{-sqrt(5) r}
        squared exponential:  P = e^{-R/2},  dP/dR = -P / 2      (r = sqrt(R))
    """
    R = np.maximum(R, 0.0)
    if nu == math.inf:
        P = np.exp(-0.5 * R)
        return P, -0.5 * P
    s5r = math.sqrt(5.0) * np.sqrt(np.maximum(R, 1e-30))
    e = np.exp(-s5r)
    return (1.0 + s5r + (5.0 / 3.0) * R) * e, -(5.0 / 6.0) * (1.0 + s5r) * e


def _rho_gradient(rho: np.ndarray, S: np.ndarray, L: int) -> np.ndarray:
    """``dJ/drho_j = sum_{k <= j < l} S[l, k] prod_{m=k, m != j}^{l-1} rho_m``: the chain rule
    through ``a_k(l) = prod_{m=k}^{l-1} rho_m``, with ``S[l, k]`` the sum of ``dJ/da_k`` over
    the rows at level ``l``."""
    out = np.zeros(max(L - 1, 0))
    for j in range(L - 1):
        for k in range(j + 1):
            for level in range(j + 1, L):
                out[j] += S[level, k] * math.prod(rho[m] for m in range(k, level) if m != j)
    return out


def map_closure(
    mll: ExactMarginalLogLikelihood, closed_form: bool = True,
) -> Callable[[], tuple[Tensor, tuple[Tensor | None, ...]]]:
    """BoTorch's closure of ``-J`` and its gradient over the parameters BoTorch's fit
    optimises (``get_parameters(mll, requires_grad=True)``, in its order), for
    ``fit_gpytorch_mll(mll, closure=...)``: :class:`ClosedFormObjective` where the model is of
    its form and ``closed_form``, else :func:`map_objective` with autograd."""
    model = mll.model
    parameters = get_parameters(mll, requires_grad=True)
    closed = ClosedFormObjective.of(model) if closed_form else None
    if closed is None or not closed.covers(parameters.values()):
        priors = log_priors(model)

        def forward() -> Tensor:
            return -map_objective(model, priors)

        return ForwardBackwardClosure(forward=forward, parameters=parameters)

    def closure() -> tuple[Tensor, tuple[Tensor, ...]]:
        value, grads = closed()
        return torch.tensor(-value, dtype=torch.float64), tuple(
            torch.from_numpy(np.negative(grads[id(p)], out=np.empty(p.shape))) for p in parameters.values()
        )

    return closure


def fit_map(
    model: ExactGP, build: Callable[[], ExactGP], restarts: int, max_iter: int, gtol: float | None = None,
) -> ExactGP:
    """Fit ``model`` (the first start) and, for ``restarts > 1``, ``restarts - 1`` fresh models
    from ``build`` at :func:`random_start`; return the one with the largest :func:`map_objective`.

    With ``restarts == 1`` this is one ``fit_gpytorch_mll`` call (its errors propagate);
    otherwise failed starts are skipped and ``ModelFittingError`` is raised only when all fail.
    ``gtol``: L-BFGS-B stops where every component of the gradient of ``n J`` (the objective
    summed over the ``n`` observations, as Optuna's ``GPSampler`` fits it) is at most ``gtol``,
    i.e. scipy's ``gtol = gtol / n`` on ``J``; ``None``: scipy's default (``1e-5`` on ``J``).
    """
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    options: dict[str, float] = {"maxiter": max_iter}
    if gtol is not None:
        options["gtol"] = gtol / max(len(model.train_targets), 1)
    best, best_value, error = None, -math.inf, None
    for start in range(restarts):
        candidate = model if start == 0 else build()
        if start > 0:
            random_start(candidate)
        mll = ExactMarginalLogLikelihood(candidate.likelihood, candidate)
        try:
            fit_gpytorch_mll(
                mll, closure=map_closure(mll), optimizer_kwargs={"options": options}
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
