"""Which level to evaluate a chosen point at: the MF-GP-UCB rule on the AR1 model.

The cost-aware strategy of :class:`~optuna_mfkd.sampler.MFKDSampler` first picks the point
``x*`` that maximises the acquisition of the top level, then the level to evaluate it
at, with the rule of MF-GP-UCB (Kandasamy et al., "Gaussian Process Bandit Optimisation
with Multi-fidelity Evaluations", NeurIPS 2016): evaluate the cheapest level ``m`` at which
``x*`` is still uncertain by more than what level ``m`` can tell about the level above it,

    m* = min { m : |rho_m| sigma_m(x*) > sqrt(c_m / c_{m+1}) xi_m }   (else the top level),

where, in the AR1 model ``y_{m+1} = rho_m y_m + delta_{m+1}`` (model units of each level):

- ``sigma_m(x*)``: posterior standard deviation of level ``m`` at ``x*`` (so
  ``|rho_m| sigma_m`` is what is unknown about ``y_{m+1}`` through level ``m``);
- ``xi_m``: the prior standard deviation of the discrepancy ``delta_{m+1}`` (its output
  scale), the part of level ``m + 1`` that level ``m`` cannot reveal; in the paper it is
  the bound ``zeta`` on the gap between fidelities, here it is fitted, but never taken
  below ``xi_min`` (:data:`XI_MIN` by default): a handful of points at the higher level
  often fit a discrepancy of zero, which would keep every evaluation at the cheapest level;
- ``c_m / c_{m+1}``: the ratio of the costs of one evaluation.

A cheap level is chosen while the point is still unexplored there; once it was observed at
(or close to) ``x*``, ``sigma_m`` is small and the next level up is chosen, so every point
climbs the levels as long as it stays the best by the acquisition. ``beta`` of the paper is
1 here (the acquisition that chose ``x*`` does the exploration). Levels that are not cheaper
than the level above them are never chosen, nor are levels at which ``x*`` is already
evaluated or running.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

#: Smallest discrepancy scale ``xi_m`` used (model units: level scales are about 1).
XI_MIN = 0.5


def level_thresholds(costs: Sequence[float], xi: Sequence[float]) -> list[float]:
    """``sqrt(c_m / c_{m+1}) * xi_m`` for ``m = 0 .. L-2`` (``inf`` where ``c_m >= c_{m+1}``).

    Raises:
        ValueError: when a cost is not positive or the lengths disagree.
    """
    if len(xi) != len(costs) - 1:
        raise ValueError(f"need one discrepancy scale per pair of levels, got {len(xi)} for {len(costs)} levels.")
    if any(not (c > 0 and math.isfinite(c)) for c in costs):
        raise ValueError(f"level costs must be positive and finite, got {list(costs)}.")
    return [
        math.sqrt(costs[m] / costs[m + 1]) * float(xi[m]) if costs[m] < costs[m + 1] else math.inf
        for m in range(len(costs) - 1)
    ]


def choose_level(
    level_std: Tensor | Sequence[float],
    rho: Tensor | Sequence[float],
    xi: Tensor | Sequence[float],
    costs: Sequence[float],
    allowed: Sequence[bool],
    xi_min: float = XI_MIN,
) -> int:
    """The MF-GP-UCB level for one point (see the module docstring).

    Args:
        level_std: ``(L,)`` posterior standard deviation of every level at the point.
        rho: ``(L-1,)`` AR1 coefficients (model units).
        xi: ``(L-1,)`` prior standard deviations of the discrepancies ``delta_1 .. delta_{L-1}``.
        costs: ``(L,)`` cost of one evaluation per level.
        allowed: ``(L,)`` whether the point may be evaluated at each level (the top
            level always may).
        xi_min: lower bound of every ``xi_m``.

    Returns:
        The level, ``0 .. L-1``.
    """
    n = len(costs)
    if len(level_std) != n or len(allowed) != n or len(rho) != n - 1:
        raise ValueError(
            f"level_std, allowed need {n} entries and rho {n - 1}, got {len(level_std)}, {len(allowed)}, {len(rho)}."
        )
    thresholds = level_thresholds(costs, [max(float(v), xi_min) for v in xi])
    for m in range(n - 1):
        if allowed[m] and abs(float(rho[m])) * float(level_std[m]) > thresholds[m]:
            return m
    return n - 1


#: With a known budget (:class:`~optuna_mfkd.fidelity.MaxCostCallback`), the last share of it
#: in which only the top level is evaluated (:func:`within_budget`).
TOP_LEVEL_SHARE = 0.1


def within_budget(
    allowed: Sequence[bool], costs: Sequence[float], budget: float, spent: float, share: float = TOP_LEVEL_SHARE
) -> list[bool]:
    """``allowed`` with the levels below the top switched off where a budget ends: in its last
    ``share`` (``spent >= (1 - share) budget``), and for a level ``m`` whose evaluation would
    leave no room for one at the top (``spent + c_m + c_top > budget``). A cheaper evaluation
    pays only through later top-level ones; the incumbent is the best top-level value.
    """
    top = len(costs) - 1
    late = spent >= (1.0 - share) * budget
    return [
        ok and (m == top or (not late and spent + costs[m] + costs[top] <= budget))
        for m, ok in enumerate(allowed)
    ]


def cheap_warmup_size(cost_cheapest: float, cost_top: float, worth: float, most: int, least: int = 0) -> int:
    """Random warm-up points at the cheapest level: as many as cost ``worth`` evaluations of
    the top level, kept between ``least`` and ``most``,

        n = min(most, max(least, ceil(worth * c_top / c_0))).

    With NB201's 12- and 200-epoch levels (``c_top / c_0 = 200 / 12``) and ``worth = 6`` this
    is the paper's n1 = 100; a level half as dear as the top gets 12 points, not 100.

    Raises:
        ValueError: when a cost is not positive and finite, ``worth`` is negative or
            ``least > most``.
    """
    for name, c in (("cost_cheapest", cost_cheapest), ("cost_top", cost_top)):
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"{name} must be a positive finite number, got {c!r}.")
    if not (math.isfinite(worth) and worth >= 0):
        raise ValueError(f"worth must be a finite number >= 0, got {worth!r}.")
    if least > most:
        raise ValueError(f"least ({least}) must not exceed most ({most}).")
    # The small tolerance keeps an exact ratio (6 x 200 / 12 = 100) from rounding up.
    n = math.ceil(worth * cost_top / cost_cheapest - 1e-9)
    return int(min(most, max(least, n)))
