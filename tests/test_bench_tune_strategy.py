"""benchmarks/tune_strategy.py: a variant's rows taken from finished suite runs (``--reuse``)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tune_strategy  # noqa: E402


def _record(study: str, costs: list[float], metrics: list[float | None]) -> dict:
    result = {"n_trials": len(costs), "final_test": metrics[-1], "final_val": 0.0, "cost": costs, "test": metrics}
    meta = {"budget": 10.0, "cpu_seconds": 3.21}
    return {"study": study, "direction": "minimize",
            "user_attrs": {"bench:finished": True, "bench:meta": meta, "bench:result": result}}


def test_reused_rows_take_the_incumbent_after_the_last_trial_within_each_fraction(tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [
        # cumulative cost 1, 2, 4, 6, 10: 25% of 10 -> the trial at cost 2, 50% -> cost 4
        _record("augmented-hartmann/3-level/mfkd-mes/seed-3", [1, 2, 4, 6, 10], [None, -1.0, -1.5, -2.0, -2.5]),
        # an incumbent only after 25% of the budget: NaN there
        _record("augmented-hartmann/3-level/mfkd-mes/seed-4", [3, 5, 10], [None, -0.5, -0.7]),
        _record("augmented-hartmann/3-level/gp/seed-3", [1, 2], [-9.0, -9.0]),  # another method
        _record("wing-weight/4-level/mfkd-mes/seed-3", [1, 2], [-9.0, -9.0]),  # another problem
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    rows = tune_strategy.reused_rows(path, "mfkd-mes", "old", ["augmented-hartmann/3-level"], [3, 4, 5])
    by_seed = {r["seed"]: r for r in rows}
    assert sorted(by_seed) == [3, 4]
    assert (by_seed[3]["at25"], by_seed[3]["at50"], by_seed[3]["at100"]) == (-1.0, -1.5, -2.5)
    assert math.isnan(by_seed[4]["at25"]) and by_seed[4]["at50"] == -0.5 and by_seed[4]["at100"] == -0.7
    assert all(r["variant"] == "old" and r["cpu_s"] == pytest.approx(3.2) for r in rows)
    assert by_seed[3]["trials"] == 5 and math.isnan(by_seed[3]["top_trials"])
