"""Choose the next point: maximise an acquisition function over an Optuna search space.

Notation: ``p`` parameters, features as in :mod:`optuna_mfkd.gp.encoding` (one column per
parameter); a *key* identifies a point up to equivalence (its grid id, or a user key such
as the isomorphism class of a NAS-Bench-201 cell); ``excluded`` holds the keys of points
already evaluated or running at the level being proposed for.

Two paths, both pure functions of tensors and the encoder (no storage access):

- **Exhaustive** (:func:`best_of_candidates`): a discrete space small enough is scored point
  by point, one representative per key; excluded keys are never returned, and ties of the
  maximum are broken uniformly at random (a fixed order would favour the first of many
  equal points, e.g. copies of the incumbent).
- **Optimised** (:func:`optimise`): BoTorch's optimisers. Fully continuous spaces use
  ``optimize_acqf``'s search (batched L-BFGS-B from ``num_restarts`` starts chosen among
  ``raw_samples`` Sobol points and perturbations of the best observed points), driven
  directly with LogEI's closed-form value and gradient where the acquisition has them
  (``closed_form``; the same iterates, without an autograd graph per evaluation); spaces with categorical or
  discrete parameters use ``optimize_acqf_mixed_alternating`` (alternating L-BFGS-B over
  the numerical columns and local search over the others, from random starts and
  "spray points" around the best observed points; :data:`MIXED_OPTIONS`), its continuous
  steps batched over the starts on the closed-form value and gradient where the acquisition
  has them (:func:`_mixed_closed_form`, the same points). Integer and stepped parameters with
  more than ``max_discrete_values`` values are relaxed to continuous and snapped by
  :meth:`~optuna_mfkd.gp.encoding.SearchSpaceEncoder.decode`. Ours is only the choice of
  starts and the check that the result is not excluded (else the best non-excluded start,
  else a random point).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.generation.gen import gen_candidates_scipy
from botorch.optim import optimize_acqf
from botorch.optim.batched_lbfgs_b import fmin_l_bfgs_b_batched
from botorch.optim.optimize import OptimizeAcqfInputs
from botorch.optim.optimize_mixed import (
    CONVERGENCE_TOL,
    MAX_BATCH_SIZE,
    discrete_step,
    generate_starting_points,
    optimize_acqf_mixed_alternating,
    round_discrete_dims,
)
from botorch.utils.sampling import draw_sobol_samples

from optuna_mfkd.gp.acquisition import score
from optuna_mfkd.gp.encoding import SearchSpaceEncoder

KeyFn = Callable[[np.ndarray], list[Hashable]]

#: Settings of ``optimize_acqf_mixed_alternating`` (BoTorch's defaults in brackets): starts
#: chosen by Boltzmann sampling among the random points and the spray points around the best
#: observed ones ("random"; [continuous relaxation], a full L-BFGS-B run of the relaxed
#: problem from every start before the alternation begins, which cost about half of a step),
#: then at most 4 [64] alternations of a local search over the discrete columns (4 moves, as
#: the default) and 4 [8] L-BFGS-B iterations over the numerical ones: like Optuna's
#: GPSampler, a few short local searches from good starts.
MIXED_OPTIONS: dict[str, object] = {
    "initialization_strategy": "random",
    "maxiter_alternating": 4,
    "maxiter_continuous": 4,
}


def best_of_candidates(
    acqf: AcquisitionFunction,
    features: torch.Tensor,
    free: np.ndarray,
    rng: np.random.Generator,
    rtol: float = 1e-9,
) -> int:
    """Index (into ``features``) of the best free candidate; ties broken at random.

    Args:
        features: ``(m, p)`` candidate features.
        free: ``(m,)`` bool mask of the candidates that may be returned.
        rtol: scores within ``rtol * (1 + |best|)`` of the best count as ties.

    Raises:
        ValueError: when no candidate is free.
    """
    idx = np.flatnonzero(free)
    if len(idx) == 0:
        raise ValueError("no free candidate to choose from")
    scores = score(acqf, features[torch.from_numpy(idx)]).numpy()
    if not np.isfinite(scores).any():
        raise FloatingPointError("no finite acquisition score")
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    best = scores.max()
    ties = idx[scores >= best - rtol * (1.0 + abs(best))]
    return int(rng.choice(ties))


def optimise(
    acqf: AcquisitionFunction,
    encoder: SearchSpaceEncoder,
    X_best: torch.Tensor,
    rng: np.random.Generator,
    excluded: set[Hashable],
    key_of: KeyFn,
    *,
    raw_samples: int = 512,
    num_restarts: int = 8,
    max_discrete_values: int = 20,
) -> np.ndarray:
    """Maximise ``acqf`` over the space; returns one ``(p,)`` internal row.

    Args:
        X_best: ``(k, p)`` features of the best observed points (starts are drawn around
            them as well as at random).
        rng: seeds BoTorch's random starts (through a forked torch generator).
        excluded: keys that must not be returned.
        key_of: maps ``(n, p)`` internal rows to their keys.
    """
    bounds = encoder.feature_bounds()
    cat = encoder.cat_values()
    discrete = encoder.discrete_values()
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(int(rng.integers(2**31 - 1)))
        if (cat or discrete) and getattr(acqf, "closed_form", False):
            acqf.X_baseline = X_best
            X = _mixed_closed_form(acqf, bounds, discrete, cat, raw_samples, num_restarts, max_discrete_values)
            starts = None
        elif cat or discrete:
            acqf.X_baseline = X_best
            X, _ = optimize_acqf_mixed_alternating(
                acqf,
                bounds=bounds,
                discrete_dims=discrete,
                cat_dims=cat,
                raw_samples=raw_samples,
                num_restarts=num_restarts,
                options=_mixed_options(raw_samples, max_discrete_values),
            )
            starts = None
        else:
            starts = _continuous_starts(acqf, bounds, X_best, raw_samples, num_restarts)
            if getattr(acqf, "closed_form", False):
                X = _lbfgsb_closed_form(acqf, bounds, starts)
            else:
                X, _ = optimize_acqf(
                    acqf,
                    bounds=bounds,
                    q=1,
                    num_restarts=len(starts),
                    batch_initial_conditions=starts.unsqueeze(-2),
                )
    best = encoder.decode(X.reshape(1, -1))
    if key_of(best)[0] not in excluded:
        return best[0]
    # The optimum is a point already taken (possible on small discrete spaces): the best
    # non-excluded random point instead.
    cand = encoder.sample(max(raw_samples, 64), rng)
    free = np.fromiter((k not in excluded for k in key_of(cand)), dtype=bool, count=len(cand))
    if not free.any():
        return cand[0]
    return cand[best_of_candidates(acqf, encoder.encode(cand), free, rng)]


def _mixed_options(raw_samples: int, max_discrete_values: int) -> dict[str, object]:
    """The options of BoTorch's alternating search: :data:`MIXED_OPTIONS`, the relaxation
    limit and the number of spray points."""
    return {"max_discrete_values": max_discrete_values, "num_spray_points": min(64, raw_samples // 4), **MIXED_OPTIONS}


def _lbfgsb_closed_form(acqf: AcquisitionFunction, bounds: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """``optimize_acqf``'s search from given ``starts`` (``(k, p)``), with the acquisition's
    value and gradient from ``acqf.value_and_gradient`` (closed form, no autograd graph)
    instead of BoTorch's autograd wrapper: the same batched L-BFGS-B (BoTorch's
    ``fmin_l_bfgs_b_batched``, one problem per start, ``maxiter`` 2000 as
    ``gen_candidates_scipy``), the results clamped to the bounds and the best by the
    acquisition returned (``(1, p)``)."""
    every = torch.arange(starts.shape[-1])
    cand = _bounded_lbfgsb(acqf, bounds, starts.to(torch.float64), every, 2000)
    return cand[int(torch.argmax(score(acqf, cand)))].reshape(1, -1)


def _mixed_closed_form(
    acqf: AcquisitionFunction,
    bounds: torch.Tensor,
    discrete: dict[int, list[float]],
    cat: dict[int, list[float]],
    raw_samples: int,
    num_restarts: int,
    max_discrete_values: int,
) -> torch.Tensor:
    """``optimize_acqf_mixed_alternating`` with :data:`MIXED_OPTIONS`, its continuous steps
    taken by :func:`_bounded_lbfgsb` on the acquisition's closed-form value and gradient: the
    same starts (BoTorch's ``generate_starting_points``), the same discrete local search
    (``discrete_step``), and per start the same L-BFGS-B over the numerical columns with the
    others fixed, batched over the starts instead of one scipy run per start through
    autograd. Integer columns with more than ``max_discrete_values`` values are relaxed and
    rounded after each continuous step, as BoTorch does. Returns ``(1, p)``."""
    options = {**_mixed_options(raw_samples, max_discrete_values), "batch_limit": MAX_BATCH_SIZE,
               "init_batch_limit": MAX_BATCH_SIZE}
    discrete = {j: sorted(v) for j, v in discrete.items()}
    cat = {j: sorted(v) for j, v in cat.items()}
    relaxed = {j: v for j, v in discrete.items() if len(v) > max_discrete_values}
    discrete = {j: v for j, v in discrete.items() if j not in relaxed}
    inputs = OptimizeAcqfInputs(
        acq_function=acqf, bounds=bounds, q=1, num_restarts=num_restarts, raw_samples=raw_samples,
        options=options, inequality_constraints=None, equality_constraints=None,
        nonlinear_inequality_constraints=None, fixed_features={}, post_processing_func=None,
        batch_initial_conditions=None, return_best_only=False, gen_candidates=gen_candidates_scipy,
        sequential=True, return_acq_values=True,
    )
    cont = torch.tensor([j for j in range(bounds.shape[-1]) if j not in discrete and j not in cat], dtype=torch.long)
    best_X, best_val = generate_starting_points(inputs, discrete, cat, cont)
    done = torch.zeros(len(best_X), dtype=torch.bool)
    for _ in range(int(options["maxiter_alternating"])):
        before = best_val.clone()
        best_X[~done], best_val[~done] = discrete_step(inputs, discrete, cat, best_X[~done])
        if len(cont):
            X = _bounded_lbfgsb(acqf, bounds, best_X[~done], cont, int(options["maxiter_continuous"]))
            if relaxed:
                X = round_discrete_dims(X, relaxed)
            best_X[~done], best_val[~done] = X, score(acqf, X)
        done = done | (best_val - before < CONVERGENCE_TOL)
        if bool(done.all()):
            break
    return best_X[int(torch.argmax(best_val))].unsqueeze(0)


def _bounded_lbfgsb(
    acqf: AcquisitionFunction, bounds: torch.Tensor, X: torch.Tensor, free: torch.Tensor, maxiter: int
) -> torch.Tensor:
    """From each row of ``X`` (``(b, p)``), BoTorch's batched L-BFGS-B (scipy's defaults,
    ``maxiter``) over the columns ``free`` with the others fixed, maximising ``acqf`` by its
    ``value_and_gradient``; the results clamped to the bounds (``(b, p)``)."""
    base = X.detach().clone()
    lo, hi = bounds[0, free], bounds[1, free]

    def value_and_grad(x: np.ndarray, batch_indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = base[batch_indices].clone()
        rows[:, free] = torch.from_numpy(x).reshape(len(batch_indices), -1)
        value, grad = acqf.value_and_gradient(rows)
        if not torch.isfinite(grad).all():
            raise FloatingPointError("the acquisition's gradient is not finite")
        return -value.numpy(), -grad[:, free].reshape(x.shape).numpy()

    xs, _, _ = fmin_l_bfgs_b_batched(
        value_and_grad,
        base[:, free].clamp(lo, hi).numpy().copy(),
        bounds=list(zip(lo.tolist(), hi.tolist())),
        maxiter=maxiter,
        pass_batch_indices=True,
    )
    out = base.clone()
    out[:, free] = torch.from_numpy(np.asarray(xs)).reshape(len(base), -1).clamp(lo, hi)
    return out


def _continuous_starts(
    acqf: AcquisitionFunction,
    bounds: torch.Tensor,
    X_best: torch.Tensor,
    raw_samples: int,
    num_restarts: int,
) -> torch.Tensor:
    """``num_restarts`` starts: the best (by ``acqf``) of ``raw_samples`` Sobol points and
    Gaussian perturbations (sd 0.05 and 0.2 of the range) of the best observed points."""
    raw = draw_sobol_samples(bounds=bounds, n=raw_samples, q=1).squeeze(-2)
    parts = [raw]
    if len(X_best):
        width = bounds[1] - bounds[0]
        for sd in (0.05, 0.2):
            reps = X_best.repeat_interleave(max(1, raw_samples // (8 * len(X_best))), dim=0)
            parts.append(reps + sd * width * torch.randn_like(reps))
    pool = torch.cat(parts).clamp(bounds[0], bounds[1])
    values = score(acqf, pool)
    order = torch.argsort(values, descending=True)
    return pool[order[:num_restarts]]


def unique_representatives(keys: Sequence[Hashable]) -> np.ndarray:
    """Indices of the first row of each distinct key, in order."""
    seen: set[Hashable] = set()
    out = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            out.append(i)
    return np.asarray(out, dtype=np.int64)
