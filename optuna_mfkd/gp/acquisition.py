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
"""

from __future__ import annotations

import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement
from botorch.acquisition.analytic import AnalyticAcquisitionFunction
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor

from optuna_mfkd.gp.model import FittedModel

ACQUISITIONS = ("logei", "ucb")


class VarianceUCB(AnalyticAcquisitionFunction):
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


def build_acquisition(name: str, fitted: FittedModel, beta: float = 1.0) -> AcquisitionFunction:
    """The acquisition ``name`` (see :data:`ACQUISITIONS`) on ``fitted``'s top level."""
    model = fitted.as_botorch_model()
    if name == "ucb":
        return VarianceUCB(model, beta)
    if name == "logei":
        top = fitted.top_targets()
        if len(top):
            best = float(top.max())
        else:  # no top-level data yet: the best posterior mean at the observed points
            X = fitted.model.train_inputs[0][:, :-1]
            with torch.no_grad():
                best = float(fitted.marginals(X)[0].max())
        return LogExpectedImprovement(model, best_f=best)
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
