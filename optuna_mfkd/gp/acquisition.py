"""Acquisition functions on the top level of the fitted co-kriging model.

All scores are in **model units of the top level**: observations of that level
standardised by :func:`optuna_mfkd.gp.model.standardise` (centre ``m_L``, scale ``s_L``), so
with ``mu`` and ``sigma^2`` the posterior mean and variance of ``y_L(x)`` in those units:

- ``"ucb"``, the paper's rule (Algorithm 1): ``mu(x) + beta * sigma^2(x)``. ``beta``
  multiplies the **variance**, not the standard deviation (BoTorch's
  ``UpperConfidenceBound`` computes ``mu + sqrt(beta) * sigma`` instead), and it is defined
  on the standardised outputs of the top level.
- ``"logei"``: BoTorch's ``LogExpectedImprovement`` over the best observed top-level
  value ``f*``: ``log E[max(y_L(x) - f*, 0)]``, computed stably in log space.

Both are BoTorch ``AcquisitionFunction`` objects over the model's features (without the
level column), on :class:`~optuna_mfkd.gp.model.TopLevelModel`, so BoTorch's optimisers
can use them; :func:`score` evaluates one over many candidates in chunks without gradients.

With inequality constraints ``c_j(x) <= 0`` (:class:`ConstrainedAcquisition`), each constraint
has its own AR1 model of ``-c_j`` and the acquisition becomes

    log a(x) + sum_j log P(c_j(x) <= 0),   P(c_j(x) <= 0) = Phi((mu_j(x) - t_j) / sigma_j(x)),

with ``mu_j, sigma_j`` the top level's posterior of ``-c_j`` and ``t_j`` the value 0 in that
model's units; for ``"logei"`` this is the log of EI times the probability of feasibility
(Gardner et al., 2014; BoTorch's constrained EI and Optuna's GPSampler do the same), with
``f*`` the best **feasible** top-level value. Without a feasible top-level value yet, only the
probability of feasibility is maximised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement
from botorch.acquisition.analytic import AnalyticAcquisitionFunction, _log_ei_helper
from botorch.utils.probability.utils import log_ndtr
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor

from optuna_mfkd.gp.model import FittedModel, TopLevelModel

ACQUISITIONS = ("logei", "ucb")


class _TopLevelMoments(AnalyticAcquisitionFunction):
    """Reads ``mu`` and ``sigma`` of a :class:`~optuna_mfkd.gp.model.TopLevelModel` straight
    from :meth:`FittedModel.marginals` (BoTorch's default builds a posterior object, a
    multivariate normal over a diagonal operator, at every evaluation); any other model goes
    through BoTorch's path."""

    def _mean_and_sigma(
        self, X: Tensor, compute_sigma: bool = True, min_var: float = 1e-12
    ) -> tuple[Tensor, Tensor | None]:
        if not isinstance(self.model, TopLevelModel) or self.posterior_transform is not None:
            return super()._mean_and_sigma(X, compute_sigma, min_var)
        if X.shape[-2] != 1:
            raise ValueError(f"q = 1 only, got X of shape {tuple(X.shape)}.")
        mean, var = self.model.fitted.marginals(X.reshape(-1, X.shape[-1]))
        shape = (*X.shape[:-2], 1)  # BoTorch's: batch x outputs
        sigma = var.clamp_min(min_var).sqrt().reshape(shape) if compute_sigma else None
        return mean.reshape(shape), sigma


class TopLevelLogEI(_TopLevelMoments, LogExpectedImprovement):
    """BoTorch's ``LogExpectedImprovement`` with the moments read as in :class:`_TopLevelMoments`
    and, on a :class:`~optuna_mfkd.gp.model.TopLevelModel`, its gradient in closed form
    (:func:`log_ei_of_moments`; :meth:`value_and_gradient` without autograd)."""

    @property
    def closed_form(self) -> bool:
        """Whether :meth:`value_and_gradient` applies (the top level of an AR1 model, maximised)."""
        return isinstance(self.model, TopLevelModel) and self.posterior_transform is None and self.maximize

    def forward(self, X: Tensor) -> Tensor:
        if not self.closed_form:
            return super().forward(X)
        return self._of_moments(X)

    @t_batch_mode_transform(expected_q=1)
    def _of_moments(self, X: Tensor) -> Tensor:
        if X.shape[-2] != 1:
            raise ValueError(f"q = 1 only, got X of shape {tuple(X.shape)}.")
        mean, var = self.model.fitted.marginals(X.reshape(-1, X.shape[-1]))
        best_f = self.best_f.to(mean)
        if mean.requires_grad or var.requires_grad:
            value = _LogEIOfMoments.apply(mean, var, best_f)
        else:
            value = log_ei_of_moments(mean, var, best_f, slopes=False)[0]
        return value.reshape(X.shape[:-2])

    def value_and_gradient(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """LogEI and its gradient at the rows of ``X`` (``(m, d)``), in closed form without
        autograd (the inner loop of :func:`optuna_mfkd.gp.proposal.optimise`); needs
        :attr:`closed_form`."""
        mean, var, pull_back = self.model.fitted.top_predictor().marginals_and_pull_back(X)
        value, d_mean, d_var = log_ei_of_moments(mean, var, self.best_f.to(mean))
        return value, pull_back(d_mean, d_var)


def log_ei_of_moments(
    mean: Tensor, var: Tensor, best_f: Tensor, slopes: bool = True
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``log EI = log h(u) + log sigma`` of posterior means and variances, ``u = (mu - f*) /
    sigma``, ``sigma^2 = max(var, 1e-12)``, ``h(u) = phi(u) + u Phi(u)`` (BoTorch's stable
    ``_log_ei_helper``), and (with ``slopes``) its derivatives in closed form: ``d log h / du =
    Phi(u) / h(u)``, so with ``r = exp(log Phi(u) - log h(u))``

        d logEI / d mu = r / sigma,    d logEI / d sigma = (1 - u r) / sigma,

    and ``d sigma / d var = 1 / (2 sigma)`` (0 where the floor acts). Returns the value and
    the two derivatives (``None`` without ``slopes``)."""
    sigma = var.clamp_min(1e-12).sqrt()
    u = (mean - best_f) / sigma
    log_h = _log_ei_helper(u)
    value = log_h + sigma.log()
    if not slopes:
        return value, None, None
    r = torch.exp(log_ndtr(u) - log_h)
    d_var = torch.where(var > 1e-12, (1.0 - u * r) / (2.0 * sigma * sigma), 0.0)
    return value, r / sigma, d_var


class _LogEIOfMoments(torch.autograd.Function):
    """:func:`log_ei_of_moments` with its closed-form derivatives as the backward."""

    @staticmethod
    def forward(ctx, mean: Tensor, var: Tensor, best_f: Tensor) -> Tensor:
        value, d_mean, d_var = log_ei_of_moments(mean, var, best_f)
        ctx.save_for_backward(d_mean, d_var)
        return value

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        d_mean, d_var = ctx.saved_tensors
        return grad * d_mean, grad * d_var, None


class VarianceUCB(_TopLevelMoments):
    """``mu(x) + beta * sigma^2(x)`` (MF-KD, Algorithm 1) for ``q = 1``.

    Args:
        model: a BoTorch model with one output (here the top level).
        beta: weight of the posterior variance, ``>= 0``.
    """

    def __init__(self, model, beta: float) -> None:
        super().__init__(model=model)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        mean, sigma = self._mean_and_sigma(X)
        return (mean + self.beta * sigma**2).squeeze(-1)


class ConstrainedAcquisition(AcquisitionFunction):
    """``log a(x) + sum_j log P(c_j(x) <= 0)`` for ``q = 1`` (see the module).

    Args:
        base: the acquisition ``a`` (LogEI gives ``log EI`` already), or ``None`` to maximise
            the probability of feasibility alone.
        constraints: per constraint, the fitted model of ``-c_j`` and ``t_j``, the value 0 of
            ``-c_j`` in that model's units of the top level.
    """

    def __init__(self, base: AcquisitionFunction | None, constraints: Sequence[tuple[FittedModel, float]]) -> None:
        super().__init__(model=constraints[0][0].as_botorch_model() if base is None else base.model)
        self.base = base
        self.constraints = list(constraints)

    def log_feasibility(self, X: Tensor) -> Tensor:
        """``sum_j log P(c_j(x) <= 0)`` at each row of ``X`` (``(m, d)``)."""
        out = torch.zeros(len(X), dtype=torch.float64)
        for fitted, threshold in self.constraints:
            mean, var = fitted.marginals(X)
            out = out + log_ndtr((mean - threshold) / var.sqrt())
        return out

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        flat = X.reshape(-1, X.shape[-1])
        out = self.log_feasibility(flat).reshape(X.shape[:-2])
        return out if self.base is None else out + self.base(X)

    @property
    def closed_form(self) -> bool:
        """Whether :meth:`value_and_gradient` applies (no base, or a closed-form LogEI)."""
        return self.base is None or bool(getattr(self.base, "closed_form", False))

    def value_and_gradient(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """The acquisition and its gradient at the rows of ``X`` (``(m, d)``) without autograd:
        with ``z_j = (mu_j - t_j) / sigma_j`` and ``q_j = exp(log phi(z_j) - log Phi(z_j))``,
        ``d log Phi(z_j) / d mu_j = q_j / sigma_j`` and ``d / d sigma_j^2 = -z_j q_j / (2 sigma_j^2)``;
        needs :attr:`closed_form`."""
        value, grad = (
            self.base.value_and_gradient(X) if self.base is not None else (X.new_zeros(len(X)), torch.zeros_like(X))
        )
        for fitted, threshold in self.constraints:
            mean, var, pull_back = fitted.top_predictor().marginals_and_pull_back(X)
            sigma = var.sqrt()
            z = (mean - threshold) / sigma
            log_cdf = log_ndtr(z)
            q = torch.exp(-0.5 * z * z - 0.5 * math.log(2.0 * math.pi) - log_cdf)
            value = value + log_cdf
            grad = grad + pull_back(q / sigma, -z * q / (2.0 * var))
        return value, grad


def build_acquisition(
    name: str, fitted: FittedModel, beta: float = 1.0, constraints: Sequence[tuple[FittedModel, float]] = (),
    best_f: float | None = None,
) -> AcquisitionFunction:
    """The acquisition ``name`` (see :data:`ACQUISITIONS`) on ``fitted``'s top level.

    ``constraints``: see :class:`ConstrainedAcquisition`; ``best_f``: LogEI's incumbent in
    model units (default: the best top-level target), ``-inf`` when no point is feasible yet
    (then only the probability of feasibility is maximised).
    """
    if constraints:
        if best_f is not None and best_f == float("-inf"):
            return ConstrainedAcquisition(None, constraints)
        return ConstrainedAcquisition(build_acquisition(name, fitted, beta, best_f=best_f), constraints)
    model = fitted.as_botorch_model()
    if name == "ucb":
        return VarianceUCB(model, beta)
    if name == "logei":
        top = fitted.top_targets()
        if best_f is not None:
            best = float(best_f)
        elif len(top):
            best = float(top.max())
        else:  # no top-level data yet: the best posterior mean at the observed points
            X = fitted.model.train_inputs[0][:, :-1]
            with torch.no_grad():
                best = float(fitted.marginals(X)[0].max())
        return TopLevelLogEI(model, best_f=best)
    raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {name!r}")


def score(acqf: AcquisitionFunction, X: Tensor, chunk_size: int = 2048) -> Tensor:
    """``acqf`` at each row of ``X`` (``(m, d)`` features), in chunks, without gradients."""
    out = []
    with torch.no_grad():
        for start in range(0, len(X), chunk_size):
            out.append(acqf(X[start : start + chunk_size].to(torch.float64).unsqueeze(-2)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def posterior_mean_var(
    fitted: FittedModel, X: Tensor, chunk_size: int = 4096
) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance of the top level at ``X`` (``(m, d)``), in
    observation units (exact above the compressed tail of the standardisation), in chunks
    of :meth:`FittedModel.marginals`."""
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, len(X), chunk_size):
            mean, var = fitted.marginals(X[start : start + chunk_size])
            means.append(mean)
            variances.append(var)
    mean = torch.cat(means) if means else torch.zeros(0, dtype=torch.float64)
    var = torch.cat(variances) if variances else torch.zeros(0, dtype=torch.float64)
    return fitted.y_mean + fitted.y_std * mean, fitted.y_std**2 * var
