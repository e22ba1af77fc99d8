"""The learning-curve report's tests against each reference method (``benchmarks/step_mode.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark
from scipy import stats


def test_marks_are_holm_corrected_mann_whitney_against_the_reference():
    sm = load_benchmark("step_mode")
    rng = np.random.default_rng(0)
    good = [list(rng.normal(0.0, 1.0, 30)) for _ in sm.FRACTIONS]
    bad = [list(rng.normal(3.0, 1.0, 30)) for _ in sm.FRACTIONS]
    same = [list(rng.normal(0.0, 1.0, 30)) for _ in sm.FRACTIONS]
    at = {"ref": good, "bad": bad, "same": same}
    marks = sm._marks(at, "ref")
    assert set(marks) == {"bad", "same"} and all(len(v) == len(sm.FRACTIONS) for v in marks.values())
    for k in range(len(sm.FRACTIONS)):
        raw = [stats.mannwhitneyu(good[k], other[k]).pvalue for other in (bad, same)]
        # Holm over the two methods: the smaller p doubled, the larger one at least that.
        p_bad = min(1.0, 2 * min(raw)) if raw[0] <= raw[1] else min(1.0, max(raw[0], 2 * raw[1]))
        assert marks["bad"][k] == f"{p_bad:.2g}+"  # the reference is ahead (lower regret)
        assert not marks["same"][k].endswith(("+", "-"))
    # Against the bad method as the reference, the good one is marked behind-reference ("-").
    assert all(m.endswith("-") for m in sm._marks(at, "bad")["ref"])


@pytest.mark.parametrize("reference", ["mfkd+pruner", "mfkd-levels"])
def test_both_references_are_methods_of_the_comparison(reference):
    sm = load_benchmark("step_mode")
    assert reference in sm.REFERENCES and reference in sm.METHODS
