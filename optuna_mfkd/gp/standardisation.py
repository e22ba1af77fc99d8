"""Per-level standardisation of the observations: the one place where it happens.

An affine map per level keeps the AR1 relation linear (``rho`` and the level means absorb it).
The default is each level's mean and standard deviation; ``robust=True`` uses the median and
scaled MAD and compresses the lower tail, so a few very bad points (diverged runs, broken
cells) do not squash the top of the range, at the price of a scale that collapses when most of
a level's points sit in one tight cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Standardisation:
    """Per-level affine maps (and the tail compression) from observations to model units.

    ``centre[l]`` and ``scale[l]`` map level ``l``: ``z = (y - centre[l]) / scale[l]``; with
    ``tail`` set, values below ``-tail`` become ``-tail - log1p(-tail - z)`` (continuous,
    increasing, unchanged above ``-tail``).
    """

    centre: tuple[float, ...]
    scale: tuple[float, ...]
    tail: float | None

    def apply(self, y: Tensor, levels: Tensor) -> Tensor:
        centre = torch.tensor(self.centre, dtype=y.dtype)[levels]
        scale = torch.tensor(self.scale, dtype=y.dtype)[levels]
        z = (y - centre) / scale
        if self.tail is not None:
            t = self.tail
            z = torch.where(z < -t, -t - torch.log1p((-t - z).clamp_min(0.0)), z)
        return z


def standardise(
    y: Tensor, levels: Tensor, num_levels: int, robust: bool = False
) -> Standardisation:
    """The map of :class:`Standardisation` for observations ``y`` at ``levels``.

    Each level with at least 3 observations gets its own centre and scale (mean and standard
    deviation; with ``robust``, the median and ``1.4826 x`` the median absolute deviation,
    falling back to the standard deviation when that is 0); other levels use those of all
    observations. ``robust`` also compresses the lower tail beyond 2 scales (observations are
    maximised, so only the bad tail is compressed).
    """

    def centre_scale(v: Tensor) -> tuple[float, float]:
        if len(v) == 0:
            return 0.0, 1.0
        if robust:
            med = float(v.median())
            scale = 1.4826 * float((v - med).abs().median())
            centre = med
        else:
            centre, scale = float(v.mean()), 0.0
        if not math.isfinite(scale) or scale < 1e-12:
            scale = float(v.std()) if len(v) > 1 else 0.0
        if not math.isfinite(scale) or scale < 1e-12:
            scale = 1.0
        return centre, scale

    pooled = centre_scale(y)
    centres, scales = [], []
    for level in range(num_levels):
        v = y[levels == level]
        c, sc = centre_scale(v) if len(v) >= 3 else pooled
        centres.append(c)
        scales.append(sc)
    return Standardisation(tuple(centres), tuple(scales), 2.0 if robust else None)
