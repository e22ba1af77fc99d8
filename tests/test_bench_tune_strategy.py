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


def test_the_summary_leaves_out_problems_without_rows_of_the_variants_asked_for():
    """A problem whose rows are all of other variants gets no section (the summary is written
    after every invocation, when a problem may have rows of earlier variants only)."""
    row = {"at25": -1.0, "at50": -2.0, "at100": -3.0, "trials": 10, "top_trials": 4, "cpu_s": 1.0}
    rows = [
        {"problem": "mf/cifar10", "variant": "old", "seed": 0, **row},
        {"problem": "augmented-hartmann/3-level", "variant": "new", "seed": 0, **row},
        {"problem": "augmented-hartmann/3-level", "variant": "new", "seed": 1, **row, "at100": -5.0},
    ]
    text = tune_strategy.summarise(rows, ["new"])
    assert "## mf/cifar10" not in text
    assert "## augmented-hartmann/3-level" in text
    line = next(t for t in text.splitlines() if t.startswith("| `new` |"))
    assert line.split("|")[2:6] == [" 2 ", " -1.000 ", " -2.000 ", " -4.000 "]
