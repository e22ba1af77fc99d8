"""Which level a trial is evaluated at, and where the strategy chooses it, its point.

A strategy turns a :class:`~optuna_mfkd.sampling.history.History` into a :class:`Plan`:

- :class:`PaperStrategy` (the paper's Algorithm 1): warm-up trials per level, then every
  trial at the top level; the point is proposed later, in ``sample_relative``.
- :class:`LearningCurveStrategy`: the step mode; rungs of reported values are the levels,
  every trial a whole run that a pruner may stop (:mod:`optuna_mfkd.pruning`).
- :class:`CostAwareStrategy`: a warm-up sized by cost (random points at the cheapest level,
  then the best points promoted level by level), then the point that maximises the top
  level's acquisition, evaluated at the cheapest level where it is still more uncertain than
  what that level can tell (MF-GP-UCB's rule, :mod:`optuna_mfkd.gp.fidelity_choice`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from optuna_mfkd.gp.acquisition import build_acquisition
from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.fidelity_choice import cheap_warmup_size, choose_level, within_budget
from optuna_mfkd.gp.information import (
    choose_level_by_information,
    information_gains,
    max_value_quantiles,
)
from optuna_mfkd.gp.model import FittedModel
from optuna_mfkd.gp.proposal import best_of_candidates
from optuna_mfkd.log import get_logger
from optuna_mfkd.sampling.candidates import Candidates, Grid, signature
from optuna_mfkd.sampling.history import History, Observations
from optuna_mfkd.sampling.options import (
    COST_AWARE_WARMUP,
    MAX_PER_RUNG,
    REFIT_GROWTH,
    STEP_REFIT_GROWTH,
    SamplerOptions,
)
from optuna_mfkd.sampling.proposer import Proposer, torch_threads, used_keys, warn_failed

_logger = get_logger("optuna_mfkd.sampler")


@dataclass(frozen=True)
class Plan:
    """A trial's level, and the point chosen with it (internal row of the search space with
    ``signature``), or ``None`` when ``sample_relative`` proposes the point."""

    level: int
    point: np.ndarray | None = None
    signature: tuple | None = None
    how: str | None = None


class Strategy:
    """Warm-up and level choice. Subclasses set :attr:`promotes` (warm-up points of a level
    are the best of the level below) and :attr:`refit_growth` (see
    :class:`~optuna_mfkd.sampling.proposer.Proposer`) and may override :meth:`after_warmup`
    and :meth:`warmup_stages`."""

    promotes: bool = False
    refit_growth: float = 0.0
    #: Whether a GP of the top level alone may replace the AR1 model where it predicts the top
    #: level better (:mod:`optuna_mfkd.gp.model_choice`), with ``model_check=True``.
    checks_top_only: bool = False
    #: Whether trials carry their level as user attributes (not in the step mode, where every
    #: trial is one training run and its rungs are its reported steps).
    records_level: bool = True
    #: Whether PRUNED trials are observations (their reported steps, in the step mode).
    with_pruned: bool = False

    def __init__(self, options: SamplerOptions, candidates: Candidates) -> None:
        self.options = options
        self.candidates = candidates
        self.proposer = Proposer(
            options, candidates, self.refit_growth, check_top_only=self.checks_top_only and options.model_check
        )

    def warmup_stages(self, history: History) -> list[Mapping[str, int]]:
        """Warm-up trials per level, in stages done one after the other."""
        return [self.options.n_warmup]

    def plan(self, history: History, trial_number: int, study_key: int) -> Plan:
        """The level of a new trial: the cheapest level short of its warm-up target in the
        first unfinished stage, else :meth:`after_warmup`."""
        self.proposer.adopt(study_key, history.fits())
        counts = history.counts()
        stages = self.warmup_stages(history)
        for targets in stages:
            for level, name in enumerate(self.options.names):
                if counts[level] < targets[name]:
                    return Plan(level)
        return self.after_warmup(history, trial_number, study_key, stages[-1])

    def after_warmup(self, history: History, trial_number: int, study_key: int, warmup: Mapping[str, int]) -> Plan:
        """The plan once the warm-up is done: the top level, its point proposed later."""
        return Plan(self.options.top)

    def propose(
        self, history: History, trial_number: int, study_key: int, encoder: SearchSpaceEncoder, level: int
    ) -> tuple[np.ndarray, str]:
        """A point for a trial at ``level`` (:meth:`Proposer.propose`)."""
        self.proposer.adopt(study_key, history.fits())
        obs = history.observations(encoder)
        key = (study_key, tuple(encoder.names))
        return self.proposer.propose(
            key, trial_number, encoder, obs, level, self.promotes, exclusive=history.space_is_whole()
        )


class PaperStrategy(Strategy):
    """The paper's Algorithm 1: ``n_warmup`` random trials per level, then the top level."""


class CostAwareStrategy(Strategy):
    """Warm-up sized by cost, then the point and its level chosen together (see the module)."""

    promotes = True
    refit_growth = REFIT_GROWTH
    checks_top_only = True
    #: How the level is chosen, recorded in the trial's ``how`` (e.g. ``logei+cost``).
    level_rule = "cost"
    _warned_timed = False

    def warmup_stages(self, history: History) -> list[Mapping[str, int]]:
        """``n_warmup``, or for the default warm-up (:data:`COST_AWARE_WARMUP`) a probe
        (random points at the cheapest level, one promotion per level) and then the full
        warm-up, whose cheapest-level count is sized by the costs once every level's cost is
        known (given, or a COMPLETE trial at the level)."""
        opts = self.options
        if not opts.cost_sized:
            return [opts.n_warmup]
        cheapest, top = opts.names[0], opts.names[-1]
        probe = min(int(COST_AWARE_WARMUP["probe"]), opts.n_warmup[cheapest])
        first = {n: probe if i == 0 else min(1, opts.n_warmup[n]) for i, n in enumerate(opts.names)}
        full = dict(opts.n_warmup)
        seen = history.seen_levels()
        if all(n in opts.costs or n in seen for n in (cheapest, top)):
            costs = history.costs(opts.costs)
            full[cheapest] = cheap_warmup_size(
                costs[cheapest], costs[top], COST_AWARE_WARMUP["worth"], most=full[cheapest], least=probe
            )
        return [first, full]

    def after_warmup(self, history: History, trial_number: int, study_key: int, warmup: Mapping[str, int]) -> Plan:
        """The top level's acquisition maximiser and the level chosen for it; the top level
        (point proposed later) when there is nothing to choose or the model fails."""
        opts, cands = self.options, self.candidates
        top = opts.top
        space = history.search_space()
        if top == 0 or not space:
            return Plan(top)
        encoder = SearchSpaceEncoder(space)
        with torch_threads(opts.torch_threads):
            obs = history.observations(encoder)
            levels, running = obs.levels, obs.running
            if not (levels == top).any():
                return Plan(top)
            exclusive = history.space_is_whole()
            used = [used_keys(cands, encoder, obs, lv, exclusive) for lv in range(top + 1)]
            grid = cands.grid(encoder)
            if grid is not None and not any(k not in used[top] for k in grid[2]):
                return Plan(top)
            try:
                row, fitted, single = self.proposer.model_step(
                    (study_key, tuple(encoder.names)), encoder, obs, grid, used[top], every_level_pending=True
                )
                # The top level's freedom is not consulted (it is always allowed): no test there.
                near_test = exclusive and not encoder.is_discrete
                taken = [_rows_at(obs, lv) if near_test and lv < top else None for lv in range(top + 1)]
                points, free = self._level_points(fitted, encoder, grid, row, used, taken)
                feats = encoder.encode(cands.representatives(encoder, np.stack(points), grid))
                counts = np.bincount(levels, minlength=top + 1) + np.bincount(
                    np.array([lv for lv, _ in running], dtype=np.int64), minlength=top + 1
                )
                allowed = [
                    free[lv] and counts[lv] < warmup[opts.names[lv]] + opts.screen * counts[lv + 1]
                    for lv in range(top)
                ] + [True]
                costs = history.costs(opts.costs)
                level_costs = [costs[n] for n in opts.names]
                if (budget := history.budget(costs)) is not None:
                    allowed = within_budget(allowed, level_costs, *budget)
                self._warn_if_timed(history)
                level = self.choose_level(fitted, feats, level_costs, allowed)
            except Exception as err:  # numerical failures must not stop the study
                warn_failed(trial_number, "choosing the level with the co-kriging model", err,
                            "evaluating at the top level")
                return Plan(top)
        # "+top-only": the top level's own GP chose the point (model check), AR1 its level.
        how = f"{opts.acquisition}+{self.level_rule}" + ("+top-only" if single is not None else "")
        return Plan(level, points[level], signature(encoder), how)

    def choose_level(self, fitted: FittedModel, feats: torch.Tensor, costs: list[float], allowed: list[bool]) -> int:
        """MF-GP-UCB's level (:func:`~optuna_mfkd.gp.fidelity_choice.choose_level`) for the
        points ``feats`` (encoded, one per level: the point each level would evaluate)."""
        covar_all = fitted.level_covariance(feats)
        std = torch.stack([covar_all[m, m, m] for m in range(len(costs))]).clamp_min(0.0).sqrt()
        return choose_level(std, fitted.model_rho, fitted.discrepancy_scales(), costs, allowed, self.options.xi_min)

    def _warn_if_timed(self, history: History) -> None:
        """Say once that a level's cost is learned from the objective's wall time."""
        timed = history.timed_levels(self.options.costs)
        if timed and not self._warned_timed:
            self._warned_timed = True
            _logger.warning(
                f"MFKDSampler: the trials of fidelities {timed} carry no numeric 'cost' user attribute and "
                "costs= does not name them, so their costs are learned from the objective's wall time; set "
                "trial.set_user_attr('cost', ...) in the objective or pass costs={...} for the level choice."
            )

    def _level_points(
        self, fitted: FittedModel, encoder: SearchSpaceEncoder, grid: Grid | None, row: np.ndarray,
        used: list[set[Hashable]], taken: list[np.ndarray | None],
    ) -> tuple[list[np.ndarray], list[bool]]:
        """The point the level choice considers at each level, and whether it is free there:
        ``row`` (the top-level acquisition's maximiser) at unrestricted levels, not free where
        its key is ``used`` or it is the same point as one of the level's ``taken`` rows
        (:meth:`Candidates.near`; ``None``: keys only); at a level with ``level_points``,
        ``row``'s own entry when its key is one of them, else the level's free point that
        maximises the same acquisition."""
        opts, cands = self.options, self.candidates
        key = cands.keys(encoder, row)[0]
        points, free = [], []
        acqf = None
        for lv in range(len(opts.names)):
            restricted = cands.restricted(encoder, lv)
            if restricted is None:
                points.append(row)
                free.append(key not in used[lv] and (taken[lv] is None or not cands.near(encoder, row, taken[lv])))
                continue
            rows, keys = restricted
            if key in keys and key not in used[lv]:
                points.append(rows[keys.index(key)])
                free.append(True)
                continue
            mask = np.fromiter((k not in used[lv] for k in keys), dtype=bool, count=len(keys))
            if not mask.any():
                points.append(row)
                free.append(False)
                continue
            if acqf is None:
                acqf = build_acquisition(opts.acquisition, fitted, opts.beta)
            feats = encoder.encode(cands.representatives(encoder, rows, grid))
            points.append(rows[best_of_candidates(acqf, feats, mask, cands.rng)])
            free.append(True)
        return points, free


def _rows_at(obs: Observations, level: int) -> np.ndarray:
    """Internal rows observed or running at ``level``."""
    return np.concatenate([obs.X[obs.levels == level], *(pt[None] for lv, pt in obs.running if lv == level)])


class InformationStrategy(CostAwareStrategy):
    """The cost-aware strategy with the level of largest information about the top level's
    maximum per unit cost (MF-MES, :mod:`optuna_mfkd.gp.information`) instead of MF-GP-UCB's
    threshold; the maximum's quantiles come from the top level's posterior at the training
    points and the candidate points."""

    level_rule = "mf-mes"

    def choose_level(self, fitted: FittedModel, feats: torch.Tensor, costs: list[float], allowed: list[bool]) -> int:
        top = len(costs) - 1
        covar_all = fitted.level_covariance(feats)
        with torch.no_grad():
            pool = torch.cat([fitted.model.train_inputs[0][:, :-1], feats.to(torch.float64)])
            mean, var = fitted.marginals(pool)
        max_values = max_value_quantiles(mean, var.clamp_min(0.0).sqrt())
        noise = [fitted.noise_variance(m) for m in range(top + 1)]
        start = len(mean) - len(feats)  # level m is weighed at its own point, feats[m]
        gains = [
            float(information_gains(covar_all[m], noise, float(mean[start + m]), max_values, levels=[m])[0])
            for m in range(top + 1)
        ]
        return choose_level_by_information(gains, costs, allowed)


class LearningCurveStrategy(Strategy):
    """The step (learning-curve) mode, ``MFKDSampler(steps=[...])``: every trial is one
    training run that reports ``trial.report(value, step)`` and may be pruned; rung ``m`` is
    the value reported at ``steps[m]`` (:meth:`History.rung_observations`), the top rung the
    final value. COMPLETE, PRUNED and RUNNING trials all give their rungs to the AR1 model,
    and each new trial gets the top level's acquisition maximiser (RUNNING trials pending at
    the top). :meth:`improvement_probability` serves the pruner
    (:class:`~optuna_mfkd.pruning.MFKDPruner`)."""

    records_level = False
    with_pruned = True
    refit_growth = STEP_REFIT_GROWTH

    def plan(self, history: History, trial_number: int, study_key: int) -> Plan:
        """Every trial is a whole run: the top level, its point proposed later."""
        return Plan(self.options.top)

    def _observe(self, history: History, encoder: SearchSpaceEncoder) -> Observations:
        return history.rung_observations(encoder, self.options.steps, MAX_PER_RUNG)

    def _warming_up(self, history: History) -> bool:
        return len(history.trials) < self.options.n_warmup[self.options.names[-1]]

    def propose(
        self, history: History, trial_number: int, study_key: int, encoder: SearchSpaceEncoder, level: int
    ) -> tuple[np.ndarray, str]:
        """A random point during the warm-up (counted in trials of any state), else the top
        level's acquisition maximiser; points of earlier trials are not proposed again."""
        self.proposer.adopt(study_key, history.fits())
        obs = self._observe(history, encoder)
        exclusive = history.space_is_whole()
        used: set[Hashable] = set()
        if exclusive:  # every trial's point, also those the per-rung cap keeps out of the model
            taken = history.points(encoder)
            used = set(self.candidates.keys(encoder, taken)) if len(taken) else set()
        return self.proposer.propose(
            (study_key, tuple(encoder.names)), trial_number, encoder, obs, self.options.top, False,
            exclusive=exclusive, warm=self._warming_up(history), used=used,
        )

    def improvement_probability(self, history: History, study_key: int, params: Mapping[str, object]) -> float | None:
        """``P(y_top(x) > f*)`` for the trial at ``params``: the AR1 posterior of its final
        value given everything observed, its own rungs included, against the best final value
        ``f*`` (model units; the latent posterior plus the top level's noise). ``None`` during
        the warm-up, before any final value, or when ``params`` lie outside the modelled space."""
        space = history.search_space()
        if self._warming_up(history) or not space:
            return None
        encoder = SearchSpaceEncoder(space)
        if not encoder.contains(params):
            return None
        obs = self._observe(history, encoder)
        if not (obs.levels == self.options.top).any():
            return None
        self.proposer.adopt(study_key, history.fits())
        with torch_threads(self.options.torch_threads):
            grid = self.candidates.grid(encoder)
            X = self.candidates.representatives(encoder, obs.X, grid)
            fitted = self.proposer.fit((study_key, tuple(encoder.names)), encoder, X, obs.levels, obs.y)
            x = encoder.encode(self.candidates.representatives(encoder, encoder.to_internal(params)[None], grid))
            with torch.no_grad():
                mean, var = fitted.marginals(x)
            best = float(fitted.top_targets().max())
            noise = fitted.noise_variance(self.options.top) if OBSERVED_IMPROVEMENT else 0.0
        return probability_of_improvement(float(mean[0]), float(var[0]) + noise, best)


#: The pruner's probability is of the trial's reported final value (the posterior of the latent
#: value plus the top level's noise) beating the best reported one.
OBSERVED_IMPROVEMENT = True


def probability_of_improvement(mean: float, var: float, best: float) -> float:
    """``P(y > best)`` for ``y ~ N(mean, var)``: ``Phi((mean - best) / sqrt(var))`` (1 or 0 at
    ``var = 0``, as ``mean`` is above ``best`` or not)."""
    if var <= 0.0:
        return float(mean > best)
    return float(torch.special.ndtr(torch.tensor((mean - best) / math.sqrt(var), dtype=torch.float64)))


#: Strategy name -> class.
STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    "paper": PaperStrategy, "cost-aware": CostAwareStrategy, "mf-mes": InformationStrategy,
    "steps": LearningCurveStrategy,
}


def make_strategy(options: SamplerOptions, candidates: Candidates) -> Strategy:
    """The strategy named by ``options.strategy``."""
    return STRATEGY_CLASSES[options.strategy](options, candidates)
