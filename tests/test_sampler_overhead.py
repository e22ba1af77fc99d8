"""The overhead benchmark's bookkeeping: samplers take turns on the same history, the first
step is kept apart, and the README's ratios are the medians' quotients."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import load_benchmark


@pytest.mark.slow
def test_overhead_rows_and_ratios(tmp_path: Path) -> None:
    so = load_benchmark("sampler_overhead")
    assert so.main(["--sizes", "12", "--steps", "3", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["sampler"] for r in rows} == set(so.NB201_SAMPLERS)
    for r in rows:
        assert r["completed_trials"] == 12 and len(r["steps_s"]) == 3
        assert r["first_step_s"] == r["steps_s"][0]
        # two later steps: their median is their mean
        assert r["median_step_s"] == pytest.approx((r["steps_s"][1] + r["steps_s"][2]) / 2)
    gp = next(r for r in rows if r["sampler"] == "GPSampler")["median_step_s"]
    text = (tmp_path / "README.md").read_text()
    one = next(r for r in rows if r["sampler"].startswith("MFKDSampler (1 level, defaults"))["median_step_s"]
    ratios = text.split("relative to GPSampler")[1]
    ratio_rows = re.findall(r"^\| MFKDSampler \(1 level, defaults, cell_key\) \| ([0-9.]+) \([0-9.]+\) \|$", ratios, re.M)
    assert ratio_rows == [f"{one / gp:.2f}"]


def test_overhead_refuses_one_step(tmp_path: Path) -> None:
    so = load_benchmark("sampler_overhead")
    with pytest.raises(SystemExit):
        so.main(["--steps", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        so.main(["--large-steps", "1", "--out", str(tmp_path)])
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_overhead_on_other_spaces(tmp_path: Path) -> None:
    so = load_benchmark("sampler_overhead")
    argv = ["--space", "continuous:3", "mixed:4", "--sizes", "6", "8", "--steps", "3"]
    argv += ["--large-n", "8", "--large-steps", "2", "--out", str(tmp_path)]
    assert so.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["space"], r["sampler"]) for r in rows} == {(s, n) for s in ("continuous:3", "mixed:4") for n in so.SAMPLERS}
    # Histories of at least --large-n trials are timed with --large-steps steps.
    assert {len(r["steps_s"]) for r in rows if r["completed_trials"] == 6} == {3}
    assert {len(r["steps_s"]) for r in rows if r["completed_trials"] == 8} == {2}
    text = (tmp_path / "README.md").read_text()
    assert "### continuous:3" in text and "### mixed:4" in text
    with pytest.raises(SystemExit):
        so.main(["--space", "weird:3", "--out", str(tmp_path / "x")])


def test_overhead_compare_averages_each_runs_ratio(tmp_path: Path) -> None:
    """The before/after table: per run, MFKDSampler's median step (steps 2..) over GPSampler's
    in that run, then the mean over the runs; the first steps' ratio apart."""
    oc = load_benchmark("overhead_compare")

    def run(name: str, mfkd: list[float], gp: list[float]) -> Path:
        d = tmp_path / name
        d.mkdir()
        rows = [
            {"space": "mixed:4", "completed_trials": 20, "sampler": s, "first_step_s": t[0], "steps_s": t}
            for s, t in (("MFKDSampler (2 levels, defaults)", mfkd), ("GPSampler", gp))
        ]
        (d / "results.json").write_text(json.dumps(rows))
        return d

    before = [run("b1", [4.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0]), run("b2", [2.0, 4.0, 4.0], [1.0, 2.0, 2.0])]
    after = [run("a1", [1.0, 0.5, 0.5], [2.0, 1.0, 1.0])]
    # before: run 1 median(1, 3, 2) / 1 = 2, first 4; run 2: 4 / 2 = 2, first 2 -> 2.00, 3.00
    # after: 0.5 / 1 = 0.5, first 0.5; median steps: (2 + 4) / 2 = 3 and 0.5
    assert oc.table(before, after).splitlines()[-1] == "| mixed:4 | 20 | 2 levels | 3.000 / 0.500 | 2.00 / 0.50 | 3.00 / 0.50 |"
    with pytest.raises(SystemExit):
        oc.main(["--before", str(tmp_path / "nothing"), "--after", str(after[0])])
