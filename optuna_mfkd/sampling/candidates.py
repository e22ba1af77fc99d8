"""The points a trial may get: keys, grids, restricted levels, random free points, promotion.

A *key* identifies a point up to equivalence (``point_key`` of its parameters, else its grid
id); a point whose key was evaluated (or is running) at a level is not proposed there again.
A *grid* is a discrete space scored exhaustively: one representative internal row per key,
its features and its keys, cached per search space. A *restricted* level (``level_points``)
evaluates only its own points. Internal rows are Optuna's internal representation
(:class:`~optuna_mfkd.gp.encoding.SearchSpaceEncoder`).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.proposal import unique_representatives
from optuna_mfkd.log import get_logger
from optuna_mfkd.sampling.options import SamplerOptions, params_key

_logger = get_logger("optuna_mfkd.sampler")

#: Two points whose features (:meth:`SearchSpaceEncoder.encode`: numerical parameters scaled to
#: ``[0, 1]``, categorical ones as choice indices) differ by at most this much in every column
#: are the same point to the model: at this distance the kernel's correlation exceeds
#: ``1 - 1e-6`` even at the smallest length scale a model may fit (0.01).
SAME_POINT_TOL = 1e-5
#: A grid: representative internal rows ``(g, p)``, their features, their keys.
Grid = tuple[np.ndarray, torch.Tensor, list[Hashable]]
#: A restricted level's points: internal rows ``(r, p)`` (one per key) and their keys.
Restricted = tuple[np.ndarray, list[Hashable]]


def signature(encoder: SearchSpaceEncoder) -> tuple:
    """Identity of a search space (parameter names and distributions)."""
    return tuple((n, repr(d)) for n, d in zip(encoder.names, encoder.distributions))


class Candidates:
    """Point keys and the sets of points a level may take, with their caches.

    ``rng`` is the sampler's generator (shared with :class:`~optuna_mfkd.sampling.proposer.Proposer`,
    replaced by ``MFKDSampler.reseed_rng``).
    """

    def __init__(self, options: SamplerOptions, rng: np.random.Generator) -> None:
        self.options = options
        self.rng = rng
        self._grids: dict[tuple, Grid] = {}
        self._restricted: dict[tuple, Restricted] = {}

    def keys(self, encoder: SearchSpaceEncoder, internal: np.ndarray) -> list[Hashable]:
        """Identity of each internal row: ``point_key`` of its params, or its grid id."""
        internal = np.atleast_2d(internal)
        if self.options.point_key is None:
            return encoder.point_ids(internal).tolist()
        return [self.options.point_key(encoder.to_params(row)) for row in internal]

    def near(self, encoder: SearchSpaceEncoder, row: np.ndarray, rows: np.ndarray) -> bool:
        """Whether ``row`` is the same point to the model as one of ``rows`` (internal rows):
        every feature within :data:`SAME_POINT_TOL`. Keys tell points of a continuous space
        apart to 12 decimals; the acquisition's optimiser returns the same maximiser again with
        differences of about ``1e-7``, and this test catches those."""
        rows = np.atleast_2d(rows)
        if len(rows) == 0:
            return False
        diff = (encoder.encode(rows) - encoder.encode(row)).abs().amax(dim=-1)
        return bool((diff <= SAME_POINT_TOL).any())

    def grid(self, encoder: SearchSpaceEncoder) -> Grid | None:
        """The grid of a discrete space scored exhaustively, or ``None``: a discrete space is
        exhaustive with ``n_candidates="all"``, or when it has at most ``exhaustive_limit``
        points (``n_candidates=None``) or ``n_candidates`` points."""
        size = encoder.cardinality()
        opts = self.options
        limit = opts.exhaustive_limit if opts.n_candidates is None else opts.n_candidates
        if size is None or (limit != "all" and size > limit):
            return None
        key = signature(encoder)
        if key not in self._grids:
            grid = encoder.enumerate()
            keys = self.keys(encoder, grid)
            rep = unique_representatives(keys)
            self._grids[key] = (grid[rep], encoder.encode(grid[rep]), [keys[i] for i in rep])
        return self._grids[key]

    def restricted(self, encoder: SearchSpaceEncoder, level: int) -> Restricted | None:
        """Internal rows (one per key, first given first) and keys of the points ``level`` is
        restricted to, or ``None`` when it is not restricted. Points outside the space are
        left out."""
        if level not in self.options.level_points:
            return None
        key = (signature(encoder), level)
        if key not in self._restricted:
            points = [p for p in self.options.level_points[level] if encoder.contains(p)]
            rows = np.array([encoder.to_internal(p) for p in points], dtype=float).reshape(-1, len(encoder.names))
            keys = self.keys(encoder, rows) if len(rows) else []
            rep = unique_representatives(keys) if keys else np.zeros(0, dtype=np.int64)
            self._restricted[key] = (rows[rep], [keys[i] for i in rep])
        return self._restricted[key]

    def random_free(
        self, encoder: SearchSpaceEncoder, used: set[Hashable], grid: Grid | None, restricted: Restricted | None = None,
    ) -> np.ndarray | None:
        """A uniformly random point whose key is not ``used`` (``None`` if none is found),
        among the ``restricted`` points where given."""
        if restricted is None and grid is not None:
            restricted = (grid[0], grid[2])
        if restricted is not None:
            rows, keys = restricted
            free = np.flatnonzero([k not in used for k in keys])
            return rows[self.rng.choice(free)] if len(free) else None
        for _ in range(20):
            cand = encoder.sample(64, self.rng)
            for row, k in zip(cand, self.keys(encoder, cand)):
                if k not in used:
                    return row
        return None

    def all_taken(
        self, trial_number: int, encoder: SearchSpaceEncoder, level_name: str, restricted: Restricted | None = None,
    ) -> np.ndarray:
        """A random point when every point was already evaluated at the level (logged)."""
        _logger.warning(
            f"Trial {trial_number}: every point was already evaluated at fidelity "
            f"{level_name!r}; proposing a random point{' of its level_points' if restricted else ''}."
        )
        if restricted is not None and len(restricted[0]):
            return restricted[0][self.rng.integers(len(restricted[0]))]
        return encoder.sample(1, self.rng)[0]

    def promote(
        self, encoder: SearchSpaceEncoder, X: np.ndarray, levels: np.ndarray, y: np.ndarray, level: int,
        used: set[Hashable], restricted: Restricted | None = None,
    ) -> np.ndarray | None:
        """The best point observed at ``level - 1`` whose key is not ``used`` (and is one of
        the ``restricted`` points where given; that point is returned)."""
        below = np.flatnonzero(levels == level - 1)
        keys = self.keys(encoder, X[below])
        allowed = None if restricted is None else {k: i for i, k in enumerate(restricted[1])}
        for i in np.argsort(-y[below], kind="stable"):
            if keys[i] in used:
                continue
            if allowed is None:
                return X[below[i]]
            if keys[i] in allowed:
                return restricted[0][allowed[keys[i]]]
        return None

    def representatives(self, encoder: SearchSpaceEncoder, X: np.ndarray, grid: Grid | None) -> np.ndarray:
        """Rows replaced by their key's representative, so equivalent points are one point of
        the model (exhaustive path with a ``point_key`` only)."""
        if grid is None or self.options.point_key is None or len(X) == 0:
            return X
        rows, _, keys = grid
        where = {k: i for i, k in enumerate(keys)}
        out = X.copy()
        for j, k in enumerate(self.keys(encoder, X)):
            if k in where:
                out[j] = rows[where[k]]
        return out

    def independent_point(self, level: int, used: set[Hashable]) -> dict[str, Any]:
        """A random one of ``level``'s points whose key (:func:`~optuna_mfkd.sampling.options.params_key`)
        is not ``used`` (any one if none is left), for the parameters outside the relative space."""
        points = self.options.level_points[level]
        key = params_key(self.options.point_key)
        free = [p for p in points if key(p) not in used] or points
        return free[self.rng.integers(len(free))]
