"""Build and fit the AR1 co-kriging model (a BoTorch ``MultiTaskGP`` with the AR1 kernel).

Notation (shapes):

- ``X``: ``(n, d)`` float64 encoded inputs (see :mod:`optuna_mfkd.gp.encoding`).
- ``levels``: ``(n,)`` int64 fidelity level of each row, ``0 .. L-1``, cheapest first.
- ``y``: ``(n,)`` float64 observations, larger is better.

The model standardises ``y`` with one mean and one standard deviation shared by all
levels; every level has its own constant mean (``MultitaskMean``) and its own noise
variance (``HadamardGaussianLikelihood``), and the covariance is
:class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel`. Hyperparameters (length scales and
output scales per level, ``rho``, means, noises) are fitted by maximum marginal
likelihood with ``botorch.fit.fit_gpytorch_mll``, warm-started from a previous fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel

#: Keys of a fitted model's state that carry hyperparameters (not data-dependent buffers).
_HYPER_PREFIXES = ("mean_module.", "covar_module.", "likelihood.")


class AR1CoKrigingGP(MultiTaskGP):
    """AR1 co-kriging GP: ``y_l(x) = rho_{l-1} y_{l-1}(x) + delta_l(x)``.

    A ``MultiTaskGP`` whose task feature (the last input column) is the fidelity level and
    whose covariance is :class:`AR1Kernel` over all levels (BoTorch's own ICM kernel,
    ``data_kernel * PositiveIndexKernel``, cannot express AR1). Posteriors are for the
    highest level (``output_tasks = [L - 1]``); pass inputs without the level column.

    Args:
        train_X: ``(n, d + 1)`` inputs; the last column is the level.
        train_Y: ``(n, 1)`` standardised observations.
        num_levels: ``L``; levels without data are allowed (their GP is the prior).
        lengthscale_loc: location of the log-normal prior of every length scale.
        ard: one length scale per input feature (per level) instead of one per level.
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        num_levels: int,
        lengthscale_loc: float = 0.0,
        ard: bool = False,
    ) -> None:
        super().__init__(
            train_X,
            train_Y,
            task_feature=-1,
            output_tasks=[num_levels - 1],
            all_tasks=list(range(num_levels)),
            outcome_transform=None,
        )
        d = train_X.shape[-1] - 1
        kernels = []
        for level in range(num_levels):
            base = MaternKernel(
                nu=2.5,
                ard_num_dims=d if ard else None,
                lengthscale_prior=LogNormalPrior(lengthscale_loc, 1.0),
                lengthscale_constraint=GreaterThan(1e-2),
            )
            base.lengthscale = math.exp(lengthscale_loc)
            scaled = ScaleKernel(base)
            # The discrepancy starts small: the levels are assumed to be related.
            scaled.outputscale = 1.0 if level == 0 else 0.1
            kernels.append(scaled)
        self.covar_module = AR1Kernel(kernels, rho_init=1.0)
        # MultiTaskGP.eval() re-initialises an ICM task kernel for levels without data;
        # AR1 needs no such step (an unobserved level is defined through rho).
        self._unobserved_task_indices = torch.tensor([], dtype=torch.long)
        self.to(train_X)


@dataclass
class FittedModel:
    """A fitted model and the standardisation of its observations.

    ``y_mean`` and ``y_std`` map model units to observation units:
    ``y = y_mean + y_std * y_model``.
    """

    model: AR1CoKrigingGP
    y_mean: float
    y_std: float
    num_levels: int
    lengthscale_loc: float
    ard: bool
    _cache: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    def training_cholesky(self) -> tuple[Tensor, Tensor]:
        """``(L, alpha)`` with ``L L^T = K_nn + diag(noise)`` over the training rows and
        ``alpha = (L L^T)^{-1} (y - m(X))`` (model units), computed once and cached."""
        if self._cache is None:
            model = self.model
            train_X = model.train_inputs[0]
            with torch.no_grad():
                prior = model.forward(train_X)
                noisy = model.likelihood.marginal(prior, train_X)
                K = noisy.covariance_matrix
                L = torch.linalg.cholesky(K + 1e-9 * torch.eye(len(K), dtype=K.dtype))
                resid = (model.train_targets - prior.mean).unsqueeze(-1)
                alpha = torch.cholesky_solve(resid, L).squeeze(-1)
            self._cache = (L, alpha)
        return self._cache

    def hyperparameters(self) -> dict[str, Tensor]:
        """The fitted hyperparameters, usable as ``warm_start`` of the next fit."""
        return {
            k: v.detach().clone()
            for k, v in self.model.state_dict().items()
            if k.startswith(_HYPER_PREFIXES)
        }

    @property
    def rho(self) -> Tensor:
        """Fitted ``rho_0 .. rho_{L-2}``."""
        return self.model.covar_module.rho.detach().clone()


def _train_inputs(X: Tensor, levels: Tensor) -> Tensor:
    return torch.cat([X.to(torch.float64), levels.to(torch.float64).unsqueeze(-1)], dim=-1)


def _standardise(y: Tensor) -> tuple[Tensor, float, float]:
    mean = float(y.mean())
    std = float(y.std()) if len(y) > 1 else 0.0
    if not math.isfinite(std) or std < 1e-12:
        std = 1.0
    return (y - mean) / std, mean, std


def _load_hyperparameters(model: AR1CoKrigingGP, state: dict[str, Tensor]) -> None:
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)


def fit_ar1_model(
    X: Tensor,
    levels: Tensor,
    y: Tensor,
    num_levels: int,
    *,
    warm_start: dict[str, Tensor] | None = None,
    max_iter: int = 200,
    lengthscale_loc: float = 0.0,
    ard: bool = False,
    fit: bool = True,
) -> FittedModel:
    """Fit the AR1 co-kriging model to ``(X, levels, y)``.

    Args:
        warm_start: hyperparameters of a previous fit (:meth:`FittedModel.hyperparameters`);
            the optimiser starts there instead of at the defaults.
        max_iter: L-BFGS-B iteration cap of each fitting attempt.
        fit: ``False`` keeps the starting hyperparameters (used for cheap updates).

    Raises:
        ValueError: when shapes disagree or a level is out of range.
        botorch.exceptions.ModelFittingError: when every fitting attempt fails.
    """
    if X.ndim != 2 or levels.shape != (X.shape[0],) or y.shape != (X.shape[0],):
        raise ValueError(
            f"shapes disagree: X {tuple(X.shape)}, levels {tuple(levels.shape)}, y {tuple(y.shape)}"
        )
    if len(levels) and (int(levels.min()) < 0 or int(levels.max()) >= num_levels):
        raise ValueError(f"levels must lie in 0..{num_levels - 1}")
    y_std_units, y_mean, y_std = _standardise(y.to(torch.float64))
    model = AR1CoKrigingGP(
        _train_inputs(X, levels), y_std_units.unsqueeze(-1), num_levels, lengthscale_loc, ard
    )
    if warm_start:
        _load_hyperparameters(model, warm_start)
    if fit:
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": max_iter}})
    model.eval()
    return FittedModel(model, y_mean, y_std, num_levels, lengthscale_loc, ard)


def condition_on_pending(fitted: FittedModel, X_pending: Tensor) -> FittedModel:
    """Kriging believer: add pending highest-level points at their posterior mean.

    The returned model keeps the hyperparameters and the standardisation of ``fitted``;
    its posterior variance shrinks around the pending points, so the acquisition does not
    pick them (or their close neighbours) again while they are being evaluated.
    """
    if len(X_pending) == 0:
        return fitted
    model = fitted.model
    top = fitted.num_levels - 1
    with torch.no_grad():
        believed = model.posterior(X_pending.to(torch.float64)).mean.reshape(-1)
    train_X = model.train_inputs[0]
    X_new = torch.cat(
        [train_X, _train_inputs(X_pending, torch.full((len(X_pending),), top))], dim=0
    )
    y_new = torch.cat([model.train_targets, believed], dim=0)
    updated = AR1CoKrigingGP(
        X_new, y_new.unsqueeze(-1), fitted.num_levels, fitted.lengthscale_loc, fitted.ard
    )
    _load_hyperparameters(updated, fitted.hyperparameters())
    updated.eval()
    return FittedModel(
        updated, fitted.y_mean, fitted.y_std, fitted.num_levels, fitted.lengthscale_loc, fitted.ard
    )
