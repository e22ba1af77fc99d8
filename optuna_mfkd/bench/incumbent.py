"""The incumbent of a run: what a benchmark reports after each trial.

The incumbent is the best COMPLETE feasible trial at the problem's top level found so far, in
the study's direction (ties: the earlier trial). A trial is feasible unless its user attribute
``feasible`` (:data:`FEASIBLE_ATTR`, recorded by problems with constraints) is false. "At the top level" is
:func:`optuna_mfkd.fidelity.is_top_level`: the trial's recorded fidelity, the definition every
summary uses. The figure reported is its metric attribute (NB201: the 200-epoch test accuracy
``test_acc_200ep``; synthetic problems: the log10 simple regret ``log10_regret``), recorded
when the trial was evaluated and never used by the search, against the cumulative cost (user
attribute ``cost``) of all finished trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from optuna_mfkd.fidelity import COST_ATTR, is_top_level

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: The user attribute of a trial of a constrained problem: whether it met the constraints.
FEASIBLE_ATTR = "feasible"


def incumbent_curve(
    trials: Sequence[optuna.trial.FrozenTrial],
    top_level: str,
    metric_attr: str = "test_acc_200ep",
    direction: str = "maximize",
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cumulative cost and the incumbent's metric after each finished trial (by number).

    Returns ``(costs, metrics, final_metric, final_value)``; metrics are NaN until a
    feasible top-level trial completes. Trials that record no fidelity count as top-level
    trials (:func:`is_top_level`); infeasible trials (user attribute ``feasible`` false)
    never become the incumbent. ``direction``: the study's (``"maximize"`` or ``"minimize"``).
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}.")
    sign = 1.0 if direction == "maximize" else -1.0
    costs, metrics = [], []
    total, best_val, best_metric = 0.0, -math.inf, math.nan
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in _FINISHED:
            continue
        total += float(t.user_attrs.get(COST_ATTR, 0.0) or 0.0)
        if (
            t.state == TrialState.COMPLETE
            and is_top_level(t, top_level)
            and t.user_attrs.get(FEASIBLE_ATTR, True)
            and t.value is not None
            and sign * t.value > best_val
        ):
            best_val, best_metric = sign * float(t.value), float(t.user_attrs[metric_attr])
        costs.append(total)
        metrics.append(best_metric)
    final_val = sign * best_val if best_val > -math.inf else math.nan
    return np.array(costs), np.array(metrics), best_metric, final_val


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def result_record(
    trials: Sequence[optuna.trial.FrozenTrial],
    top_level: str,
    metric_attr: str = "test_acc_200ep",
    direction: str = "maximize",
) -> dict[str, Any]:
    """JSON-able summary of a finished run (stored with the study so reports need no trials).

    Keys: ``n_trials``, ``final_test`` (the final incumbent's metric; the name is kept from
    when every metric was a test accuracy), ``final_val`` (its objective value), ``cost``
    and ``test`` (cumulative cost and the incumbent's metric after each finished trial).
    """
    costs, tests, final_test, final_val = incumbent_curve(trials, top_level, metric_attr, direction)
    return {
        "n_trials": len(trials),
        "final_test": _none_if_nan(final_test),
        "final_val": _none_if_nan(final_val),
        "cost": [round(float(c), 6) for c in costs],
        "test": [_none_if_nan(float(x)) for x in tests],
    }


def from_record(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """Inverse of :func:`result_record`: ``(costs, tests, final_test, final_val, n_trials)``."""
    def num(x: Any) -> float:
        return math.nan if x is None else float(x)

    return (
        np.array(record["cost"], dtype=float),
        np.array([num(x) for x in record["test"]], dtype=float),
        num(record["final_test"]),
        num(record["final_val"]),
        int(record["n_trials"]),
    )
