"""From observations to a point: fit (with the refit schedule) -> pending points -> maximise
-> fallback. The one copy of this sequence; the strategies call it.

Every function here is over arrays, tensors and the encoder; the observations come from
:class:`~optuna_mfkd.sampling.history.History` and nothing here reads or writes storage.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Iterator

import numpy as np
import torch

from optuna_mfkd.gp import model as gp_model
from optuna_mfkd.gp.acquisition import build_acquisition
from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.model import FittedModel
from optuna_mfkd.gp.model_choice import MIN_TOP_POINTS, prefer_single
from optuna_mfkd.gp.proposal import best_of_candidates, optimise
from optuna_mfkd.log import get_logger
from optuna_mfkd.sampling.candidates import Candidates, Grid
from optuna_mfkd.sampling.history import Observations, StoredFit
from optuna_mfkd.sampling.options import SamplerOptions

_logger = get_logger("optuna_mfkd.sampler")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: unchanged), restored afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warn_failed(trial_number: int, doing: str, err: Exception, instead: str) -> None:
    """Log that a numerical step failed and what the trial does instead (the study goes on)."""
    _logger.warning(f"Trial {trial_number}: {doing} failed ({err!r}); {instead} for this trial.")


def used_keys(
    candidates: Candidates, encoder: SearchSpaceEncoder, obs: Observations, level: int, exclusive: bool = True
) -> set[Hashable]:
    """Keys of the points observed or running at ``level``; none when not ``exclusive`` (a
    point of a conditional space's shared part may be taken again with other parameters)."""
    if not exclusive:
        return set()
    X, levels, running = obs.X, obs.levels, obs.running
    used = set(candidates.keys(encoder, X[levels == level])) if (levels == level).any() else set()
    used.update(candidates.keys(encoder, pt)[0] for lv, pt in running if lv == level)
    return used


def model_key(key: tuple) -> str:
    """The name of a model in storage: its key without the study's (e.g. the parameter names,
    and ``"constraint", j`` for a constraint's model)."""
    return repr(key[1:])


def _tensors(state: dict[str, object]) -> dict[str, torch.Tensor] | None:
    """A stored state as tensors; ``None`` when an entry is not a numeric (nested) list."""
    try:
        return {str(k): torch.tensor(v, dtype=torch.float64) for k, v in state.items()}
    except (TypeError, ValueError, RuntimeError):
        return None


class Proposer:
    """Fits the AR1 model and maximises the top level's acquisition.

    Hyperparameters are re-optimised once ``refit_every`` observations (and, with
    ``refit_growth > 0``, that fraction of the data of the last fit) were added since the last
    fit, which then starts from the previous optimum; in between only the data are updated.
    The fitted hyperparameters are kept per (study, parameter names); new fits are handed out
    by :meth:`take_fits` for the study to store, and the fits stored in a study
    (:meth:`adopt`) take the place of older ones, so a new sampler (another worker, a resumed
    process) goes on from the study's latest fit as the one that made it would.
    """

    def __init__(
        self, options: SamplerOptions, candidates: Candidates, refit_growth: float = 0.0, check_top_only: bool = False,
    ) -> None:
        self.options = options
        self.candidates = candidates
        self.refit_growth = refit_growth
        self.check_top_only = check_top_only
        self._last_fit: dict[tuple, tuple[int, dict[str, torch.Tensor]]] = {}
        self._stored: dict[object, dict[str, StoredFit]] = {}
        self._new: dict[str, StoredFit] = {}

    def adopt(self, study_key: object, stored: dict[str, StoredFit]) -> None:
        """The fits stored in study ``study_key`` (``History.fits``), used by :meth:`fit`
        where they were made on more observations than this proposer's own."""
        self._stored[study_key] = stored

    def take_fits(self) -> dict[str, StoredFit]:
        """The fits made since the last call, to store with the trial they were made for."""
        new, self._new = self._new, {}
        return new

    def fit(
        self, key: tuple, encoder: SearchSpaceEncoder, X: np.ndarray, levels: np.ndarray, y: np.ndarray,
        num_levels: int | None = None,
    ) -> FittedModel:
        """The AR1 model of ``(X, levels, y)`` (internal rows) over ``num_levels`` levels
        (default: the sampler's), refitted on the schedule."""
        opts = self.options
        n_fit_last, hyper = self._last_fit.get(key, (-(10**9), None))
        stored = self._stored.get(key[0], {}).get(model_key(key))
        if stored is not None and stored[0] > n_fit_last and (state := _tensors(stored[1])) is not None:
            n_fit_last, hyper = stored[0], state
            self._last_fit[key] = (n_fit_last, hyper)
        every = opts.refit_every
        if self.refit_growth > 0:
            every = max(every, math.ceil(self.refit_growth * max(n_fit_last, 0)))
        refit = len(y) - n_fit_last >= every or hyper is None
        with torch.random.fork_rng():
            torch.manual_seed(int(self.candidates.rng.integers(2**31 - 1)))
            fitted = gp_model.fit_ar1_model(
                encoder.encode(X),
                torch.from_numpy(levels),
                torch.from_numpy(y),
                len(opts.names) if num_levels is None else num_levels,
                cat_dims=encoder.cat_dims,
                warm_start=hyper,
                max_iter=opts.max_fit_iter,
                gtol=opts.fit_gtol,
                ard=opts.ard,
                cat_ard=opts.cat_ard,
                robust=opts.robust,
                fit=refit,
                kernel=opts.kernel,
                noise=gp_model.DETERMINISTIC_NOISE if opts.deterministic_objective else None,
            )
        if refit:
            self._last_fit[key] = (len(y), fitted.hyperparameters())
            self._new[model_key(key)] = (len(y), {k: v.tolist() for k, v in self._last_fit[key][1].items()})
        return fitted

    def fit_constraints(
        self, key: tuple, encoder: SearchSpaceEncoder, obs: Observations, grid: Grid | None,
    ) -> list[tuple[FittedModel, float]]:
        """One AR1 model of ``-c_j`` per constraint (on the rows that have it), each with the
        value 0 in its model units of the top level (for
        :class:`~optuna_mfkd.gp.acquisition.ConstrainedAcquisition`)."""
        if obs.constraints is None:
            return []
        X = self.candidates.representatives(encoder, obs.X, grid)
        top = torch.tensor([self.options.top])
        out = []
        for j, c in enumerate(obs.constraints.T):
            has = np.isfinite(c)
            if has.any():
                fitted = self.fit((*key, "constraint", j), encoder, X[has], obs.levels[has], -c[has])
                zero = fitted.standardisation.apply(torch.zeros(1, dtype=torch.float64), top)
                out.append((fitted, float(zero[0])))
        return out

    def _best_feasible(self, fitted: FittedModel, obs: Observations) -> float | None:
        """LogEI's incumbent under constraints: the best feasible top-level value in model
        units (``-inf`` when none is feasible); ``None`` without constraints."""
        if obs.constraints is None:
            return None
        feasible = (obs.levels == self.options.top) & np.all(obs.constraints <= 0, axis=1)
        if not feasible.any():
            return float("-inf")
        z = fitted.standardisation.apply(torch.from_numpy(obs.y[feasible]), torch.from_numpy(obs.levels[feasible]))
        return float(z.max())

    def maximise(
        self, fitted: FittedModel, encoder: SearchSpaceEncoder, grid: Grid | None, used: set[Hashable], obs: Observations,
        constraints: list[tuple[FittedModel, float]] = (),
    ) -> np.ndarray:
        """The point maximising the top level's acquisition (times the probability of
        feasibility under ``constraints``) among points whose key is not ``used``
        (exhaustive, the paper's random candidates, or BoTorch's optimisers, started from
        the best observed points)."""
        opts, cands = self.options, self.candidates
        X, levels, y = obs.X, obs.levels, obs.y
        best_f = self._best_feasible(fitted, obs) if constraints else None
        acqf = build_acquisition(opts.acquisition, fitted, opts.beta, constraints, best_f)
        if grid is not None:
            rows, feats, keys = grid
            free = np.fromiter((k not in used for k in keys), dtype=bool, count=len(keys))
            return rows[best_of_candidates(acqf, feats, free, cands.rng)]
        if isinstance(opts.n_candidates, int):
            # The paper's rule: the best of n_candidates uniformly random points.
            cand = encoder.sample(opts.n_candidates, cands.rng)
            free = np.fromiter((k not in used for k in cands.keys(encoder, cand)), dtype=bool, count=len(cand))
            if not free.any():
                raise ValueError("every random candidate was already evaluated")
            return cand[best_of_candidates(acqf, encoder.encode(cand), free, cands.rng)]
        at_top = levels == opts.top
        top_rows, top_y = (X[at_top], y[at_top]) if at_top.any() else (X, y)
        best = top_rows[np.argsort(-top_y, kind="stable")[:5]]
        return optimise(acqf, encoder, encoder.encode(best), cands.rng, used, lambda rows: cands.keys(encoder, rows))

    def model_step(
        self, key: tuple, encoder: SearchSpaceEncoder, obs: Observations, grid: Grid | None, used: set[Hashable],
        every_level_pending: bool,
    ) -> tuple[np.ndarray, FittedModel, FittedModel | None]:
        """Fit (the objective, and each constraint), condition on the running points
        (kriging believer), maximise.

        ``every_level_pending``: the running points of every level enter at their level's
        posterior mean; otherwise those of the top level only, at the top level's.
        With ``check_top_only`` (and no constraints), a GP of the top level's observations
        alone takes the AR1 model's place in the acquisition where it predicts them better
        (:mod:`optuna_mfkd.gp.model_choice`); only the top level's running points enter it.
        Returns the point, the conditioned AR1 model (for the level choice), and the top
        level's GP when it chose the point (else ``None``); numerical errors propagate.
        """
        cands = self.candidates
        X, levels, y, running = obs.X, obs.levels, obs.y, obs.running
        fitted = self.fit(key, encoder, cands.representatives(encoder, X, grid), levels, y)
        top = self.options.top
        at_top = levels == top
        single = None
        if self.check_top_only and top > 0 and obs.constraints is None and int(at_top.sum()) >= MIN_TOP_POINTS:
            single = self.fit(
                (*key, "top-only"), encoder, cands.representatives(encoder, X[at_top], grid),
                np.zeros(int(at_top.sum()), dtype=levels.dtype), y[at_top], num_levels=1,
            )
            if not prefer_single(fitted, single):
                single = None
        constraints = self.fit_constraints(key, encoder, obs, grid)
        top_pending = [pt for lv, pt in running if lv == top]
        if every_level_pending and running:
            P = cands.representatives(encoder, np.stack([pt for _, pt in running]), grid)
            lv_p = torch.tensor([lv for lv, _ in running], dtype=torch.long)
            fitted = fitted.condition_on_pending(encoder.encode(P), lv_p)
        elif not every_level_pending and top_pending:
            P = cands.representatives(encoder, np.stack(top_pending), grid)
            fitted = fitted.condition_on_pending(encoder.encode(P))
        if single is not None:
            if top_pending:
                P = cands.representatives(encoder, np.stack(top_pending), grid)
                single = single.condition_on_pending(encoder.encode(P))
            return self.maximise(single, encoder, grid, used, obs), fitted, single
        return self.maximise(fitted, encoder, grid, used, obs, constraints), fitted, None

    def propose(
        self, key: tuple, trial_number: int, encoder: SearchSpaceEncoder, obs: Observations, level: int, promote: bool,
        exclusive: bool = True, warm: bool | None = None, used: set[Hashable] | None = None,
    ) -> tuple[np.ndarray, str]:
        """A point for a trial at ``level`` and how it was chosen.

        During the warm-up (a cheaper level, fewer top-level trials than its warm-up, or no
        observation yet): with ``promote``, the best point of the level below not yet taken
        at ``level`` (``"promote"``), else a random free point (``"random"``). After it: the
        top level's acquisition (its name), or a random point when the fit fails
        (``"fallback"``, logged) or when every point was taken (``"random"``, logged).
        ``exclusive``: points observed or running at ``level`` are not proposed again
        (:func:`used_keys`). ``warm`` and ``used`` replace the warm-up test and the keys not
        to propose where the caller knows better (the step mode).
        """
        opts, cands = self.options, self.candidates
        X, levels, y, running = obs.X, obs.levels, obs.y, obs.running
        used = used_keys(cands, encoder, obs, level, exclusive) if used is None else used
        grid = cands.grid(encoder)
        restricted = cands.restricted(encoder, level)
        n_top = int((levels == opts.top).sum()) + sum(1 for lv, _ in running if lv == opts.top)
        if warm is None:
            warm = level != opts.top or n_top < opts.n_warmup[opts.names[opts.top]] or len(y) == 0
        if warm:
            if promote and 0 < level and (levels == level - 1).any():
                row = cands.promote(encoder, X, levels, y, level, used, restricted)
                if row is not None:
                    return row, "promote"
            row = cands.random_free(encoder, used, grid, restricted)
            if row is None:
                row = cands.all_taken(trial_number, encoder, opts.names[level], restricted)
            return row, "random"
        if grid is not None and not any(k not in used for k in grid[2]):
            return cands.all_taken(trial_number, encoder, opts.names[level]), "random"
        try:
            row, _, single = self.model_step(key, encoder, obs, grid, used, every_level_pending=False)
            return row, opts.acquisition + ("+top-only" if single is not None else "")
        except Exception as err:  # numerical failures must not stop the study
            warn_failed(trial_number, "fitting or optimising the co-kriging model", err, "using a random point")
            row = cands.random_free(encoder, used, grid, restricted)
            if row is None:
                row = cands.all_taken(trial_number, encoder, opts.names[level], restricted)
            return row, "fallback"
