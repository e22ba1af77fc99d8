"""MFKDSampler: multi-fidelity search with AR1 co-kriging (MF-KD), the Optuna adapter only.
``before_trial`` reads the study once (:mod:`optuna_mfkd.sampling.history`) and asks the
strategy (:mod:`optuna_mfkd.sampling.strategies`) for a plan: the level, and the point where
the strategy chose one; ``sample_relative`` returns that point or asks the proposer
(:mod:`optuna_mfkd.sampling.proposer`). Options: :mod:`optuna_mfkd.sampling.options`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd import defaults
from optuna_mfkd.fidelity import FIDELITY_ATTR, FIDELITY_LEVEL_ATTR, fidelity_of
from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.fidelity_choice import XI_MIN
from optuna_mfkd.sampling import history as hist
from optuna_mfkd.sampling.candidates import Candidates, signature
from optuna_mfkd.sampling.history import HOW_ATTR, POINT_ATTR, History
from optuna_mfkd.sampling.options import (
    COST_AWARE_WARMUP,
    EXHAUSTIVE_LIMIT,
    PAPER_SETTINGS,
    SCREEN_RATIO,
    SamplerOptions,
    build_options,
    params_key,
)
from optuna_mfkd.sampling.proposer import torch_threads
from optuna_mfkd.sampling.strategies import Plan, make_strategy

__all__ = ["COST_AWARE_WARMUP", "HOW_ATTR", "MFKDSampler", "PAPER_SETTINGS", "POINT_ATTR"]


class MFKDSampler(BaseSampler):
    """Multi-fidelity sampler with AR1 co-kriging (MF-KD).

    Each trial gets a level before the objective runs (user attributes ``"fidelity"``,
    ``"fidelity_level"`` (0 = cheapest) and the level's settings; the objective reads it with
    :func:`optuna_mfkd.fidelity_of`). All state is in storage, so a resumed study or another
    process continues the search. 1. Warm-up: while a level is short of its warm-up trials,
    new trials go to the cheapest such level at a random point not yet taken there.
    2. Search: the AR1 model ``y_{m+1}(x) = rho_m y_m(x) + delta_{m+1}(x)``
    (:class:`~optuna_mfkd.gp.ar1_kernel.AR1Kernel`) is fitted to the COMPLETE trials of all
    levels and the top level's acquisition is maximised (:mod:`optuna_mfkd.gp.proposal`),
    exhaustively over a discrete space of at most ``exhaustive_limit`` points, else by
    BoTorch's optimisers; points taken at a level are not proposed there again (unless the
    space is conditional) and running ones enter at their posterior mean.

    ``strategy="paper"`` (Algorithm 1) evaluates every trial after the warm-up at the top
    level. ``"mf-mes"`` (default) evaluates the acquisition's maximiser at the level of most
    information on the top level's maximum per unit cost, ``argmax_m I(y_m(x); f*) / c_m``
    (:mod:`optuna_mfkd.gp.information`); ``"cost-aware"`` at the cheapest level where it is more
    uncertain than ``sqrt(cost ratio) x`` its discrepancy with the level above (MF-GP-UCB,
    :mod:`~optuna_mfkd.gp.fidelity_choice`). Both spend the last tenth of a recorded budget at
    the top level, size the warm-up by cost (:data:`~optuna_mfkd.sampling.options.COST_AWARE_WARMUP`),
    keep a cheaper level to its warm-up plus ``screen`` trials per trial of the level above, and
    take ``costs`` where given, else learn them (:func:`optuna_mfkd.fidelity.level_costs`).

    Acquisitions (:mod:`optuna_mfkd.gp.acquisition`), in standardised top-level units:
    ``"logei"`` (default, BoTorch's ``LogExpectedImprovement``), ``"ucb"`` (the paper's
    ``mu + beta * sigma^2``); :data:`PAPER_SETTINGS` are the paper's. One level (the default:
    ``MFKDSampler()`` is single-fidelity GP BO on any objective) has no level choice. FAILED
    and PRUNED trials are left out; a failed fit logs a warning and gives a random point.

    Args:
        fidelities: level names ordered from cheapest to most expensive, or a dict
            ``{name: settings}`` whose settings (e.g. ``{"epochs": 1, "kd_loss": "nst"}``)
            are recorded as user attributes of the trials at that level. Default: one level,
            ``"high"`` (single-fidelity; declare levels for multi-fidelity search).
        n_warmup: warm-up trials per level (given counts are kept exactly, levels not named
            get 0). Default: 10 for one level; mf-mes, cost-aware: sized by cost; paper:
            100 per cheaper level and 20 at the top.
        n_candidates: ``None`` (default): exhaustive over discrete spaces of at most
            ``exhaustive_limit`` points, else optimised. ``"all"``: exhaustive over any
            discrete space. An integer: the paper's rule, the best of that many uniformly
            random points (every point when the space is discrete and not larger).
        beta: UCB trade-off (``>= 0``), see above; unused by ``"logei"``.
        seed: seed of the warm-up draws, the optimiser's starts and the fit's restarts.
        acquisition, exhaustive_limit: ``"logei"`` or ``"ucb"`` (see above); see ``n_candidates``.
        refit_every: re-optimise the hyperparameters (from the last optimum) once this many
            observations were added; in between only the data are updated.
        max_fit_iter, fit_gtol: a fit's L-BFGS-B iteration cap, and gradient tolerance on the MAP
            objective summed over the observations (``None``: scipy's ``1e-5`` per observation).
        kernel, deterministic_objective: ``"matern52"`` (default) or ``"rbf"`` (squared exponential,
            for very smooth objectives); every level's noise fixed at ``1e-6``, not fitted.
        ard, cat_ard: one length scale per numerical (default) / categorical parameter and level.
        robust: per-level median and scaled MAD, lower tail compressed, not mean and standard
            deviation (:func:`optuna_mfkd.gp.model.standardise`; tolerates broken runs).
        torch_threads: torch threads inside a step (restored after; ``None``: untouched).
        point_key: params -> key; points with equal keys are one point (e.g. isomorphic NB201
            cells, :func:`optuna_mfkd.nasbench201.space.cell_key`). Default: all the values.
        strategy: ``"paper"``, ``"mf-mes"`` (default) or ``"cost-aware"``; see above.
        costs: ``{level: cost of one evaluation}`` for the level choice; levels not
            named are learned from the trials.
        screen, xi_min: see the level choice above (positive); the cost-aware rule's smallest
            discrepancy scale (``>= 0``).
        level_points: ``{level: [params, ...]}``: the only points a cheaper level can
            evaluate (e.g. a cached low-fidelity pool); its warm-up draws from them, only they
            are promoted to it, and the level choice weighs it at the acquisition's best of
            them (docs/method.md).
        constraints_func: ``trial -> [c_1, ...]``, feasible when every ``c_j <= 0`` (as
            Optuna's samplers; ``trial.set_constraint(name, value)`` in the objective works
            too). The acquisition is multiplied by the probability of feasibility at the top
            level, each constraint modelled across the levels
            (:class:`~optuna_mfkd.gp.acquisition.ConstrainedAcquisition`).
        steps: the step (learning-curve) mode, e.g. ``[1, 3, 9, 27]``: the objective reports
            ``trial.report(value, step)`` and needs no levels; rung ``m`` is the value at the
            largest reported step in ``(steps[m-1], steps[m]]``, the last the final value; every
            trial (COMPLETE, PRUNED, RUNNING) gives its rungs; pair it with any Optuna pruner.
        model_check: a GP of the top level alone chooses the point (not its level) where it
            predicts the top level's observations better (:mod:`optuna_mfkd.gp.model_choice`).
    """

    def __init__(
        self,
        fidelities: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
        n_warmup: Mapping[str, int] | None = None,
        n_candidates: int | str | None = None,
        beta: float = defaults.UCB_BETA,
        seed: int | None = None,
        *,
        acquisition: str = "logei",
        exhaustive_limit: int = EXHAUSTIVE_LIMIT,
        refit_every: int = 1,
        max_fit_iter: int = 50,
        fit_gtol: float | None = None,
        ard: bool = True,
        cat_ard: bool = False,
        robust: bool = False,
        torch_threads: int | None = 1,
        point_key: Callable[[dict[str, Any]], Hashable] | None = None,
        strategy: str | None = None,
        costs: Mapping[str, float] | None = None,
        screen: float = SCREEN_RATIO,
        xi_min: float = XI_MIN,
        level_points: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
        steps: Sequence[float] | None = None,
        model_check: bool = True, kernel: str = "matern52", deterministic_objective: bool = False,
    ) -> None:
        self._options = build_options(
            fidelities, n_warmup, n_candidates, beta, seed, acquisition=acquisition, exhaustive_limit=exhaustive_limit,
            refit_every=refit_every, max_fit_iter=max_fit_iter, fit_gtol=fit_gtol, ard=ard, cat_ard=cat_ard, robust=robust,
            torch_threads=torch_threads, point_key=point_key, strategy=strategy, costs=costs, screen=screen,
            xi_min=xi_min, level_points=level_points, constraints_func=constraints_func, steps=steps, model_check=model_check,
            kernel=kernel, deterministic_objective=deterministic_objective,
        )
        self._names = list(self._options.names)
        self._candidates = Candidates(self._options, np.random.default_rng(seed))
        self._strategy = make_strategy(self._options, self._candidates)
        self._random_sampler = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._registered: set[int] = set()
        self._plans: dict[int, Plan] = {}  # trial id -> the plan of before_trial
        self._histories: dict[int, History] = {}  # trial id -> the history of its latest hook
        self._independent: dict[int, dict[str, Any]] = {}  # trial id -> its restricted level's point

    @property
    def fidelities(self) -> list[str]:
        """Level names, cheapest first."""
        return list(self._names)

    @property
    def n_warmup(self) -> dict[str, int]:
        """Warm-up trials per level."""
        return dict(self._options.n_warmup)

    @property
    def beta(self) -> float:
        """UCB trade-off (multiplies the variance in standardised top-level units)."""
        return self._options.beta

    @property
    def acquisition(self) -> str:
        """The acquisition's name (``"logei"`` or ``"ucb"``)."""
        return self._options.acquisition

    @property
    def strategy(self) -> str:
        """``"paper"``, ``"cost-aware"``, ``"mf-mes"`` or ``"steps"`` (the step mode)."""
        return self._options.strategy

    def reseed_rng(self) -> None:
        self._candidates.rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    def _level_of(self, trial: FrozenTrial) -> int | None:
        name = fidelity_of(trial)
        return self._names.index(name) if name in self._names else None

    @property
    def options(self) -> SamplerOptions:
        """The checked options (read by :class:`~optuna_mfkd.pruning.MFKDPruner`)."""
        return self._options

    def _history(self, study: optuna.Study, trial: FrozenTrial, keep: bool = True) -> History:
        """A new scan of the study for ``trial``'s hook, kept for the rest of the hook."""
        history = History(study, trial, self._names, self._strategy.with_pruned)
        if keep:
            self._histories[hist.trial_id(trial)] = history
        return history

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        hist.record_heartbeat(study, trial)
        hist.admit(study, trial, self._names, register=hist.study_id(study) not in self._registered)
        self._registered.add(hist.study_id(study))
        level = self._level_of(trial)  # enqueued or retried trials keep their level
        if level is None:
            with self._lock:
                plan = self._strategy.plan(self._history(study, trial), trial.number, hist.study_id(study))
            level = plan.level
            if plan.point is not None:
                hist.record_point(study, trial, plan.point, plan.how, self._strategy.proposer.take_fits())
                self._plans[hist.trial_id(trial)] = plan
        name = self._names[level]
        if self._strategy.records_level:
            hist.record_level(study, trial, {FIDELITY_ATTR: name, FIDELITY_LEVEL_ATTR: level, **self._options.settings[name]})

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if hist.is_multi_objective(study):
            return {}
        return self._history(study, trial).search_space()

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        hist.require_single_objective(study)
        level = self._level_of(trial)
        if level in self._options.level_points:
            # A restricted level takes every parameter outside the relative space (e.g. all
            # of them in the first trial) from one of its points.
            point = self._independent_point(study, trial, level)
            if param_name in point and hist.distribution_contains(param_distribution, point[param_name]):
                return point[param_name]
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def _independent_point(self, study: optuna.Study, trial: FrozenTrial, level: int) -> dict[str, Any]:
        """A random one of ``level``'s points not yet evaluated or running there (any one if
        none is left), the same for every parameter of ``trial``."""
        tid = hist.trial_id(trial)
        with self._lock:
            if tid not in self._independent:
                history = self._histories.get(tid) or self._history(study, trial)
                names = set().union(*self._options.level_points[level])
                used = history.used_point_keys(level, names, params_key(self._options.point_key))
                self._independent[tid] = self._candidates.independent_point(level, used)
            return self._independent[tid]

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        hist.require_single_objective(study)
        if not search_space:
            hist.record_objective_start(study, trial)
            return {}
        encoder = SearchSpaceEncoder(search_space)
        level = self._options.top if (known := self._level_of(trial)) is None else known
        tid = hist.trial_id(trial)
        plan = self._plans.pop(tid, None)
        with self._lock, torch_threads(self._options.torch_threads):
            history = self._histories.pop(tid, None) or self._history(study, trial, keep=False)
            exclusive = history.space_is_whole()  # a conditional space's points are shared
            if plan is not None and plan.signature == signature(encoder):
                if not (exclusive and self._claimed(study, trial, encoder, level, plan.point)):
                    hist.record_objective_start(study, trial)
                    return encoder.to_params(plan.point)
            for _ in range(3):
                internal, how = self._strategy.propose(history, trial.number, hist.study_id(study), encoder, level)
                hist.record_point(study, trial, internal, how, self._strategy.proposer.take_fits())
                # Another process holds the same point: propose again (hist.claimed_elsewhere).
                if not (exclusive and self._claimed(study, trial, encoder, level, internal)):
                    break
                history = self._history(study, trial, keep=False)
        hist.record_objective_start(study, trial)
        return encoder.to_params(internal)

    def _claimed(
        self, study: optuna.Study, trial: FrozenTrial, encoder: SearchSpaceEncoder, level: int, internal: np.ndarray
    ) -> bool:
        name = self._names[level] if self._strategy.records_level else None  # the step mode has no levels
        key = partial(lambda enc, row: self._candidates.keys(enc, row)[0], encoder)  # row -> point key
        return hist.claimed_elsewhere(study, trial, name, len(internal), key(internal), key)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        if self._options.constraints_func is not None:
            hist.record_constraints(study, trial, state, self._options.constraints_func)
        for cache in (self._independent, self._plans, self._histories):
            cache.pop(hist.trial_id(trial), None)
