"""Build and fit the AR1 co-kriging model (a BoTorch ``MultiTaskGP`` with the AR1 kernel).

Notation (shapes):

- ``X``: ``(n, d)`` float64 encoded inputs (see :mod:`optuna_mfkd.gp.encoding`).
- ``levels``: ``(n,)`` int64 fidelity level of each row, ``0 .. L-1``, cheapest first.
- ``y``: ``(n,)`` float64 observations, larger is better.

Observations are standardised level by level (:mod:`optuna_mfkd.gp.standardisation`: an
affine map per level, the level's mean and standard deviation, or robust). Every level has its own constant mean (``MultitaskMean``) and its own noise variance
(``HadamardGaussianLikelihood``), and the covariance is
:class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel` over one
:class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel` per level. Each length scale has
the log-normal prior ``LogNormal(sqrt(2) + log(d) / 2, sqrt(3))`` (the dimension-scaled
prior of Hvarfner et al. 2024, BoTorch's default for ``SingleTaskGP``); each noise variance
(model units) has the prior ``Gamma(1.1, 30)`` (mean 0.037, as Optuna's GPSampler), since
benchmark and training objectives are nearly deterministic at a fixed seed. The cheapest
level's output scale ``s_0`` (the prior variance of the standardised ``y_0``) has the prior
``Gamma(2, 1)`` (mode 1, mean 2; Optuna's GPSampler puts it on its kernel scale): with a flat
prior the fit of a smooth, wide-ranging function (AugmentedBranin) runs to ``s_0`` of
500-4,000 with long length scales, a posterior variance that swamps the acquisition far from
the data. The discrepancies' scales keep a flat prior (a discrepancy near 0 is a good model
of related levels). Hyperparameters
(length scales and output scales per level, ``rho``, means, noises) are fitted by maximum
marginal likelihood (MAP) with ``botorch.fit.fit_gpytorch_mll``, warm-started from a
previous fit.

Two options of :func:`fit_ar1_model` serve smooth, deterministic objectives
(``benchmarks/results/ar1-accuracy/``): ``kernel="rbf"`` (squared-exponential base kernels,
the Matern family's ``nu -> inf``), ``noise`` (a fixed noise variance instead of the
fitted one) and ``restarts`` (more optimiser starts, from random hyperparameters, keeping the
largest MAP objective: the AR1 likelihood has a local optimum where ``rho`` is near 0 and the
discrepancy explains the top level alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from botorch.models import MultiTaskGP
from botorch.models.model import Model
from botorch.posteriors import GPyTorchPosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import ScaleKernel
from gpytorch.likelihoods import HadamardGaussianLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from optuna_mfkd.gp.ar1_kernel import AR1Kernel
from optuna_mfkd.gp.fitting import fit_map
from optuna_mfkd.gp.mixed_kernel import MixedMaternKernel
from optuna_mfkd.gp.predictive import LevelPredictor
from optuna_mfkd.gp.standardisation import Standardisation, standardise

#: Base kernels of :class:`AR1CoKrigingGP` by name: the smoothness ``nu`` of
#: :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel` (``"rbf"``: squared exponential).
KERNELS = {"matern52": 2.5, "rbf": math.inf}
#: The fixed noise variance (model units) of every level for a deterministic objective
#: (``MFKDSampler(deterministic_objective=True)``; GPSampler's floor there too).
DETERMINISTIC_NOISE = 1e-6

#: Keys of a fitted model's state that carry hyperparameters (not data-dependent buffers).
_HYPER_PREFIXES = ("mean_module.", "covar_module.", "likelihood.")


class AR1CoKrigingGP(MultiTaskGP):
    """AR1 co-kriging GP: ``y_l(x) = rho_{l-1} y_{l-1}(x) + delta_l(x)``.

    A ``MultiTaskGP`` whose task feature (the last input column) is the fidelity level and
    whose covariance is :class:`AR1Kernel` over all levels (BoTorch's own ICM kernel,
    ``data_kernel * PositiveIndexKernel``, cannot express AR1). Posteriors are for the
    top level (``output_tasks = [L - 1]``); pass inputs without the level column.

    Args:
        train_X: ``(n, d + 1)`` inputs; the last column is the level.
        train_Y: ``(n, 1)`` standardised observations.
        num_levels: ``L``; levels without data are allowed (their GP is the prior).
        cat_dims: ``{column: number of choices}`` of the categorical feature columns.
        ard: one length scale per numerical feature (per level) instead of one shared.
        lengthscale_loc: location of the log-normal prior of every length scale (default
            ``sqrt(2) + log(d) / 2``).
        cat_ard: one length scale per categorical feature instead of one shared by them.
        kernel: the base kernels, a key of :data:`KERNELS`.
        noise: a fixed noise variance of every level (model units) instead of one fitted per
            level under the ``Gamma(1.1, 30)`` prior.
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        num_levels: int,
        cat_dims: Mapping[int, int] | None = None,
        ard: bool = True,
        lengthscale_loc: float | None = None,
        cat_ard: bool = False,
        kernel: str = "matern52",
        noise: float | None = None,
    ) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}.")
        if noise is not None and not noise > 0:
            raise ValueError(f"noise must be positive, got {noise!r}.")
        super().__init__(
            train_X,
            train_Y,
            task_feature=-1,
            output_tasks=[num_levels - 1],
            all_tasks=list(range(num_levels)),
            outcome_transform=None,
            likelihood=HadamardGaussianLikelihood(
                num_tasks=num_levels,
                noise_prior=GammaPrior(1.1, 30.0) if noise is None else None,
                noise_constraint=GreaterThan(1e-6, initial_value=0.1 / 30.0)
                if noise is None
                else GreaterThan(0.0),
                task_feature_index=train_X.shape[-1] - 1,
            ),
        )
        self.fixed_noise = noise
        self.reset_noise()
        d = train_X.shape[-1] - 1
        if lengthscale_loc is None:
            lengthscale_loc = default_lengthscale_loc(d)
        kernels = []
        for level in range(num_levels):
            base = MixedMaternKernel(
                max(d, 1),
                cat_dims,
                ard=ard,
                cat_ard=cat_ard,
                nu=KERNELS[kernel],
                lengthscale_prior=LogNormalPrior(lengthscale_loc, math.sqrt(3.0)),
                lengthscale_constraint=GreaterThan(1e-2),
            )
            base.lengthscale = math.exp(lengthscale_loc - 3.0)  # the prior's mode
            scaled = ScaleKernel(base, outputscale_prior=GammaPrior(2.0, 1.0) if level == 0 else None)
            # The discrepancy starts small: the levels are assumed to be related.
            scaled.outputscale = 1.0 if level == 0 else 0.1
            kernels.append(scaled)
        self.covar_module = AR1Kernel(kernels, rho_init=1.0)
        self.to(train_X)

    def reset_noise(self) -> None:
        """With a fixed ``noise``: set every level's noise variance to it, not optimised."""
        if self.fixed_noise is not None:
            noise_covar = self.likelihood.noise_covar
            noise_covar.noise = torch.full_like(noise_covar.noise, self.fixed_noise)
            noise_covar.raw_noise.requires_grad_(False)

    def eval(self) -> AR1CoKrigingGP:
        """Evaluation mode without ``MultiTaskGP.eval``'s step for levels without data.

        That step (present in BoTorch 0.18) copies an ICM task kernel's factors onto unobserved
        tasks; AR1 has no such factors (an unobserved level is defined through ``rho``), so
        the method of ``MultiTaskGP``'s own parents is used instead of touching its private
        bookkeeping.
        """
        return super(MultiTaskGP, self).eval()


def default_lengthscale_loc(d: int) -> float:
    """``sqrt(2) + log(d) / 2``: the dimension-scaled log-normal prior's location."""
    return math.sqrt(2.0) + 0.5 * math.log(max(d, 1))


@dataclass
class FittedModel:
    """A fitted model and the standardisation of its observations.

    ``y_mean`` and ``y_std`` map model units of the top level to observation units,
    ``y = y_mean + y_std * y_model``, exactly above the compressed tail.
    """

    model: AR1CoKrigingGP
    standardisation: Standardisation
    num_levels: int
    cat_dims: dict[int, int]
    ard: bool
    lengthscale_loc: float | None
    cat_ard: bool = False
    kernel: str = "matern52"
    noise: float | None = None
    _cache: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _top: LevelPredictor | None = field(default=None, repr=False)

    @property
    def y_mean(self) -> float:
        return self.standardisation.centre[-1]

    @property
    def y_std(self) -> float:
        return self.standardisation.scale[-1]

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

    def loo_log_density(self, level: int) -> Tensor:
        """Leave-one-out log predictive density of each observation at ``level``, in
        observation units, with the hyperparameters fixed (Rasmussen & Williams, eq. 5.10-5.12).

        With ``K = K_nn + diag(noise)`` over every training row (all levels) and
        ``alpha = K^{-1} (y - m)``, the predictive of row ``i`` given all the others is
        ``N(y_i - alpha_i / [K^{-1}]_ii, 1 / [K^{-1}]_ii)`` in model units; its log density
        at ``y_i`` is

            log p_i = -log(2 pi / [K^{-1}]_ii) / 2 - alpha_i^2 / (2 [K^{-1}]_ii) - log(s),

        ``s`` being the level's standardisation scale (the Jacobian to observation units, so
        that models of the same observations with other standardisations compare).
        """
        L, alpha = self.training_cholesky()
        precision = torch.cholesky_inverse(L).diagonal()
        rows = self.model.train_inputs[0][:, -1].round().long() == level
        p, a = precision[rows], alpha[rows]
        scale = float(self.standardisation.scale[level])
        return -0.5 * torch.log(2.0 * math.pi / p) - 0.5 * a.square() / p - math.log(scale)

    def marginals(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of the top level at ``X`` (``(m, d)``), in model
        units, differentiable in ``X``.

        With ``K_*n`` the cross-covariance of ``X`` (at the top level) with the ``n``
        training rows and ``L, alpha`` from :meth:`training_cholesky`:

            mu(x)      = m(x) + K_*n alpha
            sigma^2(x) = k_LL(x, x) - || L^{-1} K_n* ||^2   (column-wise)

        Only these marginals are formed (``O(m n)`` memory), never the ``m x m`` joint
        covariance or the batched solves a batched GPyTorch posterior would run; the
        query-independent parts (kernel weights, detached length scales) are formed once
        (:class:`~optuna_mfkd.gp.predictive.LevelPredictor`).
        """
        return self.top_predictor().marginals(X)

    def top_predictor(self) -> LevelPredictor:
        """The top level's :class:`~optuna_mfkd.gp.predictive.LevelPredictor`, made once."""
        if self._top is None:
            model = self.model
            L, alpha = self.training_cholesky()
            train_X = model.train_inputs[0]
            top = float(self.num_levels - 1)
            with torch.no_grad():  # the prior mean is constant per level (ConstantMean)
                level = torch.full((1, 1), top, dtype=train_X.dtype)
                prior_mean = float(model.forward(torch.cat([train_X[:1, :-1], level], -1)).mean[0])
            self._top = LevelPredictor(
                model.covar_module, train_X, L, alpha, prior_mean, self.num_levels - 1
            )
        return self._top

    def level_covariance(self, X: Tensor) -> Tensor:
        """Joint posterior covariance of the latent levels ``y_0 .. y_{L-1}`` at each row of
        ``X`` (``(m, d)``): an ``(m, L, L)`` tensor in model units (each level's own
        standardisation).

        With ``Z_i = [(x_i, 0), ..., (x_i, L-1)]``, ``K_{Z_i n}`` its cross-covariance with the
        training rows and ``L L^T`` from :meth:`training_cholesky`:

            Sigma_i = K(Z_i, Z_i) - (L^{-1} K_{n Z_i})^T (L^{-1} K_{n Z_i})
        """
        model = self.model
        chol, _ = self.training_cholesky()
        train_X = model.train_inputs[0]
        m, n_levels = len(X), self.num_levels
        X = X.to(torch.float64)
        lv = torch.arange(n_levels, dtype=X.dtype).repeat(m)
        Z = torch.cat([X.repeat_interleave(n_levels, dim=0), lv.unsqueeze(-1)], dim=-1)
        with torch.no_grad():
            K_zn = model.covar_module(Z, train_X).to_dense()
            prior = model.covar_module(Z.reshape(m, n_levels, -1), Z.reshape(m, n_levels, -1)).to_dense()
            v = torch.linalg.solve_triangular(chol, K_zn.transpose(-1, -2), upper=False)
        v = v.transpose(-1, -2).reshape(m, n_levels, -1)
        return prior - v @ v.transpose(-1, -2)

    def level_means(self, X: Tensor, levels: Tensor) -> Tensor:
        """Posterior mean of level ``levels[i]`` at ``X[i]`` (model units):
        ``m(z) + K_{z n} alpha``."""
        model = self.model
        _, alpha = self.training_cholesky()
        Z = _train_inputs(X, levels)
        with torch.no_grad():
            return model.forward(Z).mean + model.covar_module(Z, model.train_inputs[0]).to_dense() @ alpha

    def as_botorch_model(self) -> TopLevelModel:
        """The top level as a one-output BoTorch model (for acquisition functions)."""
        return TopLevelModel(self)

    def hyperparameters(self) -> dict[str, Tensor]:
        """The fitted hyperparameters (the model's parameters, not its structural buffers),
        usable as ``warm_start`` of the next fit."""
        return {
            k: v.detach().clone()
            for k, v in self.model.named_parameters()
            if k.startswith(_HYPER_PREFIXES)
        }

    @property
    def rho(self) -> Tensor:
        """Fitted ``rho_0 .. rho_{L-2}`` in observation units: with level scales ``s_l``
        and ``rho'_l`` the model's (standardised) coefficient, ``rho_l = rho'_l s_{l+1} / s_l``."""
        scale = torch.tensor(self.standardisation.scale, dtype=torch.float64)
        return self.model_rho * scale[1:] / scale[:-1]

    @property
    def model_rho(self) -> Tensor:
        """Fitted ``rho'_0 .. rho'_{L-2}`` in model units (each level's own standardisation):
        ``y'_{m+1} = rho'_m y'_m + delta'_{m+1}``."""
        return self.model.covar_module.rho.detach().clone()

    def noise_variance(self, level: int) -> float:
        """The fitted (or fixed) observation noise variance of ``level``, in model units."""
        noise = self.model.likelihood.noise_covar.noise.detach().reshape(-1)
        return float(noise[level] if noise.numel() > 1 else noise[0])

    def discrepancy_scales(self) -> Tensor:
        """``xi_1 .. xi_{L-1}``: the prior standard deviation (model units) of each discrepancy
        ``delta'_{m+1}``, ``sqrt(outputscale)`` of its kernel (a ``ScaleKernel`` over a
        unit-variance kernel)."""
        kernels = self.model.covar_module.base_kernels[1:]
        return torch.stack([k.outputscale.detach().reshape(()) for k in kernels]).sqrt()

    def top_targets(self) -> Tensor:
        """Training targets (model units) of the top level."""
        model = self.model
        top = model.train_inputs[0][:, -1].round() == self.num_levels - 1
        return model.train_targets[top]

    def condition_on_pending(self, X_pending: Tensor, levels: Tensor | None = None) -> FittedModel:
        """Kriging believer: this model with pending points added at their posterior mean.

        ``levels`` gives the level of each pending point (default: all at the top
        level). The returned model keeps the hyperparameters and the standardisation; its
        posterior variance shrinks around the pending points, so the acquisition does not
        pick them (or their close neighbours) again while they are being evaluated.
        """
        if len(X_pending) == 0:
            return self
        model = self.model
        top = self.num_levels - 1
        if levels is None:
            levels = torch.full((len(X_pending),), top)
            with torch.no_grad():
                believed = model.posterior(X_pending.to(torch.float64)).mean.reshape(-1)
        else:
            believed = self.level_means(X_pending, levels)
        train_X = model.train_inputs[0]
        X_new = torch.cat([train_X, _train_inputs(X_pending, levels)], dim=0)
        y_new = torch.cat([model.train_targets, believed], dim=0)
        updated = AR1CoKrigingGP(
            X_new, y_new.unsqueeze(-1), self.num_levels, self.cat_dims, self.ard, self.lengthscale_loc,
            self.cat_ard, self.kernel, self.noise,
        )
        _load_hyperparameters(updated, self.hyperparameters())
        updated.eval()
        return FittedModel(
            updated, self.standardisation, self.num_levels, self.cat_dims, self.ard, self.lengthscale_loc,
            self.cat_ard, self.kernel, self.noise,
        )


class TopLevelModel(Model):
    """BoTorch ``Model`` view of a :class:`FittedModel`'s top level, for ``q = 1``.

    ``posterior(X)`` (``X``: ``(..., 1, d)``) returns independent normals with the
    marginals of :meth:`FittedModel.marginals`, which is all analytic acquisition functions
    (``LogExpectedImprovement``, UCB) use; joint posteriors over ``q > 1`` points are not
    offered.
    """

    def __init__(self, fitted: FittedModel) -> None:
        super().__init__()
        self.fitted = fitted

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        if X.shape[-2] != 1:
            raise ValueError(f"TopLevelModel supports q = 1 only, got X of shape {tuple(X.shape)}.")
        flat = X.reshape(-1, X.shape[-1])
        mean, var = self.fitted.marginals(flat)
        shape = X.shape[:-1]
        mvn = MultivariateNormal(mean.reshape(shape), DiagLinearOperator(var.reshape(shape)))
        posterior = GPyTorchPosterior(mvn)
        return posterior_transform(posterior) if posterior_transform is not None else posterior


def _train_inputs(X: Tensor, levels: Tensor) -> Tensor:
    return torch.cat([X.to(torch.float64), levels.to(torch.float64).unsqueeze(-1)], dim=-1)


def _load_hyperparameters(model: AR1CoKrigingGP, state: dict[str, Tensor]) -> None:
    """Load the entries of ``state`` that ``model`` has with the same shape; the bounds of
    constraints (``..._constraint.*``) stay the model's own (they are not fitted)."""
    own = model.state_dict()
    usable = {
        k: v for k, v in state.items() if k in own and own[k].shape == v.shape and "_constraint." not in k
    }
    model.load_state_dict(usable, strict=False)


def fit_ar1_model(
    X: Tensor,
    levels: Tensor,
    y: Tensor,
    num_levels: int,
    *,
    cat_dims: Mapping[int, int] | None = None,
    warm_start: dict[str, Tensor] | None = None,
    max_iter: int = 200,
    gtol: float | None = None,
    lengthscale_loc: float | None = None,
    ard: bool = True,
    cat_ard: bool = False,
    robust: bool = False,
    fit: bool = True,
    kernel: str = "matern52",
    restarts: int = 1,
    noise: float | None = None,
) -> FittedModel:
    """Fit the AR1 co-kriging model to ``(X, levels, y)`` (``y``: larger is better).

    Args:
        cat_dims: ``{column: number of choices}`` of the categorical columns of ``X``.
        warm_start: hyperparameters of a previous fit (:meth:`FittedModel.hyperparameters`);
            the optimiser starts there instead of at the defaults.
        max_iter: L-BFGS-B iteration cap of each fitting attempt.
        gtol: L-BFGS-B's gradient tolerance on the MAP objective summed over the
            observations (``None``: scipy's default on the objective per observation, see
            :func:`optuna_mfkd.gp.fitting.fit_map`).
        ard: one length scale per numerical feature and level.
        cat_ard: one length scale per categorical feature and level.
        robust: robust standardisation (see :func:`standardise`).
        fit: ``False`` keeps the starting hyperparameters (used for cheap updates).
        kernel: ``"matern52"`` (default) or ``"rbf"`` (squared exponential, for very smooth
            objectives), see :data:`KERNELS`.
        restarts: optimiser starts: the first from ``warm_start`` (or the defaults), the
            others from random hyperparameters, drawn from torch's global generator; the fit
            with the largest MAP objective is kept (:func:`optuna_mfkd.gp.fitting.fit_map`).
        noise: a fixed noise variance (model units, e.g. ``1e-6`` for a deterministic
            objective) instead of one fitted per level under the ``Gamma(1.1, 30)`` prior.

    Raises:
        ValueError: when shapes disagree, a level is out of range, ``kernel`` is unknown,
            ``restarts < 1`` or ``noise <= 0``.
        botorch.exceptions.ModelFittingError: when every fitting attempt fails.
    """
    if X.ndim != 2 or levels.shape != (X.shape[0],) or y.shape != (X.shape[0],):
        raise ValueError(
            f"shapes disagree: X {tuple(X.shape)}, levels {tuple(levels.shape)}, y {tuple(y.shape)}"
        )
    if len(levels) and (int(levels.min()) < 0 or int(levels.max()) >= num_levels):
        raise ValueError(f"levels must lie in 0..{num_levels - 1}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    y = y.to(torch.float64)
    levels = levels.long()
    standardisation = standardise(y, levels, num_levels, robust=robust)
    z = standardisation.apply(y, levels)
    cat_dims = {int(j): int(k) for j, k in (cat_dims or {}).items()}
    train_X = _train_inputs(X, levels)

    def build() -> AR1CoKrigingGP:
        return AR1CoKrigingGP(
            train_X, z.unsqueeze(-1), num_levels, cat_dims, ard, lengthscale_loc, cat_ard, kernel, noise
        )

    model = build()
    if warm_start:
        _load_hyperparameters(model, warm_start)
        model.reset_noise()
    if fit:
        model = fit_map(model, build, restarts, max_iter, gtol)
    model.eval()
    return FittedModel(
        model, standardisation, num_levels, cat_dims, ard, lengthscale_loc, cat_ard, kernel, noise
    )
