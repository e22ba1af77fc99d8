"""Optuna search space <-> tensors.

Notation (shapes):

- ``p``: number of parameters in the search space (in the order given).
- ``features``: one column per parameter: a categorical takes its choice index (compared
  for equality by :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel`, which with one
  shared length scale equals a Matern kernel on the paper's one-hot encoding), a numerical
  one its value scaled to ``[0, 1]`` (on the log scale when the distribution is ``log``).
  ``features`` is the ``(n, p)`` float64 tensor given to the Gaussian process.
- ``internal``: ``(n, p)`` float array of Optuna internal representations
  (``distribution.to_internal_repr``): the choice index for a categorical, the value
  itself for a number.

Everything here is a pure function of the search space and arrays; no storage access.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def _grid_size(dist: BaseDistribution) -> int | None:
    """Number of values a distribution can take, or ``None`` when it is continuous."""
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, FloatDistribution):
        if dist.low == dist.high:
            return 1
        if dist.step is not None:
            return int(round((dist.high - dist.low) / dist.step)) + 1
        return None
    raise ValueError(f"unsupported distribution {dist!r}")


def _grid_values(dist: BaseDistribution) -> np.ndarray:
    """All internal values of a discrete distribution, in grid order."""
    if isinstance(dist, CategoricalDistribution):
        return np.arange(len(dist.choices), dtype=float)
    if isinstance(dist, IntDistribution):
        return np.arange(dist.low, dist.high + 1, dist.step, dtype=float)
    assert isinstance(dist, FloatDistribution)
    if dist.low == dist.high:
        return np.array([dist.low], dtype=float)
    n = _grid_size(dist)
    assert n is not None and dist.step is not None
    return np.minimum(dist.low + dist.step * np.arange(n, dtype=float), dist.high)


class SearchSpaceEncoder:
    """Encode points of an Optuna search space as Gaussian-process features.

    Args:
        search_space: parameter name -> distribution. Supported: ``CategoricalDistribution``,
            ``IntDistribution`` and ``FloatDistribution`` (linear or log, with or without step).

    Raises:
        ValueError: naming the parameter, for any other distribution.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]) -> None:
        for name, dist in search_space.items():
            if not isinstance(dist, (CategoricalDistribution, IntDistribution, FloatDistribution)):
                raise ValueError(
                    f"parameter {name!r}: unsupported distribution {type(dist).__name__}; "
                    "MFKDSampler supports CategoricalDistribution, IntDistribution and "
                    "FloatDistribution."
                )
        self.names: list[str] = list(search_space)
        self.distributions: list[BaseDistribution] = [search_space[n] for n in self.names]
        self._grid_sizes = [_grid_size(d) for d in self.distributions]
        self.num_features: int = len(self.names)

    # ----------------------------------------------------------------------------- sizes
    @property
    def is_discrete(self) -> bool:
        """Whether every parameter takes finitely many values."""
        return all(n is not None for n in self._grid_sizes)

    def cardinality(self) -> int | None:
        """Number of points of the space, or ``None`` when a parameter is continuous."""
        if not self.is_discrete:
            return None
        return math.prod(n for n in self._grid_sizes if n is not None)

    # --------------------------------------------------------------- internal <-> params
    def to_internal(self, params: Mapping[str, Any]) -> np.ndarray:
        """``(p,)`` internal representation of a parameter dict (Optuna external values)."""
        return np.array(
            [d.to_internal_repr(params[n]) for n, d in zip(self.names, self.distributions)],
            dtype=float,
        )

    def to_params(self, internal: np.ndarray) -> dict[str, Any]:
        """Parameter dict (external values, Python scalars) of one ``(p,)`` internal row."""
        params: dict[str, Any] = {}
        for name, dist, value in zip(self.names, self.distributions, internal):
            if isinstance(dist, CategoricalDistribution):
                params[name] = dist.to_external_repr(int(round(float(value))))
            elif isinstance(dist, IntDistribution):
                params[name] = int(round(float(value)))
            else:
                params[name] = float(min(max(float(value), dist.low), dist.high))
        return params

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` has a value inside every distribution of the space."""
        try:
            return all(
                n in params and d._contains(d.to_internal_repr(params[n]))
                for n, d in zip(self.names, self.distributions)
            )
        except (ValueError, TypeError):
            return False

    # ---------------------------------------------------------------------- candidates
    def enumerate(self) -> np.ndarray:
        """``(cardinality, p)`` internal rows of every point of a discrete space.

        Row order is the mixed-radix order of :meth:`point_ids` (last parameter fastest).
        """
        if not self.is_discrete:
            raise ValueError("enumerate() needs a discrete search space.")
        grids = [_grid_values(d) for d in self.distributions]
        mesh = np.meshgrid(*grids, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, p)`` internal rows drawn uniformly (log-uniformly for ``log`` numbers)."""
        cols = []
        for dist, size in zip(self.distributions, self._grid_sizes):
            if isinstance(dist, CategoricalDistribution):
                cols.append(rng.integers(0, size, n).astype(float))
            elif isinstance(dist, IntDistribution) and dist.log:
                u = rng.uniform(math.log(dist.low - 0.5), math.log(dist.high + 0.5), n)
                cols.append(np.clip(np.round(np.exp(u)), dist.low, dist.high))
            elif isinstance(dist, FloatDistribution) and dist.log and dist.low < dist.high:
                cols.append(np.exp(rng.uniform(math.log(dist.low), math.log(dist.high), n)))
            elif size is not None:
                cols.append(_grid_values(dist)[rng.integers(0, size, n)])
            else:
                cols.append(rng.uniform(dist.low, dist.high, n))
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def point_ids(self, internal: np.ndarray) -> np.ndarray:
        """Hashable id of each row: a mixed-radix grid index (discrete spaces) or bytes.

        Two rows get the same id exactly when they denote the same point.
        """
        internal = np.atleast_2d(np.asarray(internal, dtype=float))
        if not self.is_discrete:
            return np.array([row.tobytes() for row in np.round(internal, 12)], dtype=object)
        ids = np.zeros(len(internal), dtype=np.int64)
        for j, (dist, size) in enumerate(zip(self.distributions, self._grid_sizes)):
            assert size is not None
            if isinstance(dist, CategoricalDistribution):
                pos = internal[:, j]
            elif isinstance(dist, IntDistribution):
                pos = (internal[:, j] - dist.low) / dist.step
            elif dist.low == dist.high:
                pos = np.zeros(len(internal))
            else:
                assert dist.step is not None
                pos = (internal[:, j] - dist.low) / dist.step
            ids = ids * size + np.clip(np.round(pos), 0, size - 1).astype(np.int64)
        return ids

    # ------------------------------------------------------------------------ features
    @property
    def cat_dims(self) -> dict[int, int]:
        """``{feature column: number of choices}`` of the categorical parameters."""
        return {
            j: len(d.choices)
            for j, d in enumerate(self.distributions)
            if isinstance(d, CategoricalDistribution)
        }

    def encode(self, internal: np.ndarray) -> torch.Tensor:
        """``(n, p)`` float64 features of ``(n, p)`` internal rows, one column per parameter.

        Categorical: the choice index (the kernel compares indices for equality, see
        :class:`~optuna_mfkd.gp.mixed_kernel.MixedMaternKernel`). Numerical:
        ``(t(v) - t(low)) / (t(high) - t(low))`` with ``t = log`` for log distributions and
        the identity otherwise (log integers use ``low - 0.5 .. high + 0.5``); a distribution
        with ``low == high`` encodes as 0.5.
        """
        internal = np.atleast_2d(np.asarray(internal, dtype=float))
        out = np.array(internal, dtype=float, copy=True).reshape(len(internal), len(self.names))
        for j, dist in enumerate(self.distributions):
            if isinstance(dist, CategoricalDistribution):
                out[:, j] = np.round(out[:, j])
                continue
            low, high = self._scale_range(dist)
            if low == high:
                out[:, j] = 0.5
            elif dist.log:
                out[:, j] = (np.log(out[:, j]) - math.log(low)) / (math.log(high) - math.log(low))
            else:
                out[:, j] = (out[:, j] - low) / (high - low)
        return torch.from_numpy(out)

    def decode(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode`: ``(n, p)`` internal rows, snapped onto each
        distribution (choice index, integer step, float step, bounds)."""
        feats = np.atleast_2d(np.asarray(features.detach() if isinstance(features, torch.Tensor) else features, dtype=float))
        out = np.empty_like(feats)
        for j, dist in enumerate(self.distributions):
            col = feats[:, j]
            if isinstance(dist, CategoricalDistribution):
                out[:, j] = np.clip(np.round(col), 0, len(dist.choices) - 1)
                continue
            low, high = self._scale_range(dist)
            if low == high:
                value = np.full(len(col), float(dist.low))
            elif dist.log:
                value = np.exp(math.log(low) + np.clip(col, 0.0, 1.0) * (math.log(high) - math.log(low)))
            else:
                value = low + np.clip(col, 0.0, 1.0) * (high - low)
            out[:, j] = self._snap(dist, value)
        return out

    def feature_bounds(self) -> torch.Tensor:
        """``(2, p)`` lower and upper bounds of every feature column."""
        lower, upper = [], []
        for j, dist in enumerate(self.distributions):
            if isinstance(dist, CategoricalDistribution):
                lower.append(0.0)
                upper.append(float(len(dist.choices) - 1))
            elif j in self.discrete_values():
                values = self.discrete_values()[j]
                lower.append(values[0])
                upper.append(values[-1])
            else:
                lower.append(0.0)
                upper.append(1.0)
        return torch.tensor([lower, upper], dtype=torch.float64).reshape(2, len(self.names))

    def discrete_values(self, max_values: int = 1000) -> dict[int, list[float]]:
        """Feature values of each numerical parameter on a grid (int, or float with step)
        of at most ``max_values`` points: ``{column: sorted encoded values}``. Larger grids
        are left out (optimised as continuous and snapped by :meth:`decode`)."""
        out: dict[int, list[float]] = {}
        for j, (dist, size) in enumerate(zip(self.distributions, self._grid_sizes)):
            if isinstance(dist, CategoricalDistribution) or size is None or size > max_values:
                continue
            rows = np.zeros((size, len(self.names)))
            rows[:, j] = _grid_values(dist)
            for k, other in enumerate(self.distributions):
                if k != j:
                    rows[:, k] = _grid_values(other)[0] if self._grid_sizes[k] else other.low
            out[j] = sorted(set(self.encode(rows)[:, j].tolist()))
        return out

    def cat_values(self) -> dict[int, list[float]]:
        """``{column: [0, 1, ..., k - 1]}`` for every categorical column."""
        return {
            j: [float(i) for i in range(len(d.choices))]
            for j, d in enumerate(self.distributions)
            if isinstance(d, CategoricalDistribution)
        }

    @staticmethod
    def _scale_range(dist: BaseDistribution) -> tuple[float, float]:
        low, high = float(dist.low), float(dist.high)
        if low != high and dist.log and isinstance(dist, IntDistribution):
            low, high = low - 0.5, high + 0.5
        return low, high

    @staticmethod
    def _snap(dist: BaseDistribution, value: np.ndarray) -> np.ndarray:
        low, high = float(dist.low), float(dist.high)
        if isinstance(dist, IntDistribution):
            value = low + np.round((value - low) / dist.step) * dist.step
        elif dist.step is not None:
            # Rounded to 12 decimals so 0.05 * 7 reads 0.35, not 0.35000000000000003.
            value = np.round(low + np.round((value - low) / dist.step) * dist.step, 12)
        return np.clip(value, low, high)
