"""The incumbent of a run: what a benchmark reports after each trial.

The incumbent is the best COMPLETE trial at the protocol's top level found so far (ties: the
earlier trial). "At the top level" is :func:`optuna_mfkd.fidelity.is_top_level`: the trial's
recorded fidelity, the definition every summary uses. The figure reported is the
incumbent's 200-epoch test accuracy (the user attribute ``test_acc_200ep``, looked up when
the trial was evaluated and never used by the search), against the cumulative cost (user
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


def incumbent_curve(
    trials: Sequence[optuna.trial.FrozenTrial], top_level: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cumulative cost and incumbent test accuracy after each finished trial (by number).

    Returns ``(costs, tests, final_test, final_val)``; tests are NaN until a top-level trial
    completes. Trials that record no fidelity count as top-level trials (:func:`is_top_level`).
    """
    costs, tests = [], []
    total, best_val, best_test = 0.0, -math.inf, math.nan
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in _FINISHED:
            continue
        total += float(t.user_attrs.get(COST_ATTR, 0.0) or 0.0)
        if (
            t.state == TrialState.COMPLETE
            and is_top_level(t, top_level)
            and t.value is not None
            and t.value > best_val
        ):
            best_val, best_test = float(t.value), float(t.user_attrs["test_acc_200ep"])
        costs.append(total)
        tests.append(best_test)
    return np.array(costs), np.array(tests), best_test, (best_val if best_val > -math.inf else math.nan)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def result_record(trials: Sequence[optuna.trial.FrozenTrial], top_level: str) -> dict[str, Any]:
    """JSON-able summary of a finished run (stored with the study so reports need no trials)."""
    costs, tests, final_test, final_val = incumbent_curve(trials, top_level)
    return {
        "n_trials": len(trials),
        "final_test": _none_if_nan(final_test),
        "final_val": _none_if_nan(final_val),
        "cost": [round(float(c), 4) for c in costs],
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
