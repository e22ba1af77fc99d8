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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.models import ExactGP


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


def map_objective(mll: ExactMarginalLogLikelihood) -> float:
    """``J(theta)`` at the model's current hyperparameters (leaves the model in train mode)."""
    model = mll.model
    model.train()
    with torch.no_grad():
        return float(mll(model(*model.train_inputs), model.train_targets, *model.train_inputs))


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
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": max_iter}})
        except ModelFittingError as err:
            if restarts == 1:
                raise
            error = err
            continue
        if restarts == 1:
            return candidate
        value = map_objective(mll)
        if best is None or value > best_value:
            best, best_value = candidate, value
    if best is None:
        raise ModelFittingError(f"every one of {restarts} starts failed; the last: {error!r}")
    return best
