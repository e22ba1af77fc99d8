"""The sampler suite: a tiny run into SQLite, resumed, and a report checked against the trials."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import load_benchmark
from scipy.stats import mannwhitneyu

from optuna_mfkd.bench import harness
from optuna_mfkd.bench.methods import get_method
from optuna_mfkd.bench.protocols import get_protocol
from optuna_mfkd.bench.runs import FINISHED_ATTR, as_storage, finished_studies
from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS
from optuna_mfkd.fidelity import FIDELITY_ATTR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import suite_settings as suite  # noqa: E402  (benchmarks/suite_settings.py: the suite's settings)

METHODS = ["mfkd", "tpe", "random"]
SEEDS = [0, 1]


def _tiny_problems():
    # Budgets small enough for seconds: MFKDSampler stays in its random warm-up (100 cheap
    # trials, then top-level ones: no top-level incumbent at a quarter of the budget).
    return [dataclasses.replace(SYNTHETIC_PROBLEMS["branin/1-level"](), budget_top_evals=6),
            dataclasses.replace(SYNTHETIC_PROBLEMS["augmented-branin/2-level"](), budget_top_evals=12)]


def _by_hand(study: optuna.Study, top: str, f_star: float, spent: float = math.inf) -> float:
    """log10 simple regret of the best top-level trial among those paid for within ``spent``."""
    paid = np.cumsum([t.user_attrs["cost"] for t in study.trials]) <= spent + 1e-9
    top_values = [t.value for t, ok in zip(study.trials, paid) if ok and t.user_attrs.get(FIDELITY_ATTR, top) == top]
    return math.log10(min(top_values) - f_star) if top_values else math.nan


def _holm_by_hand(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


@pytest.mark.slow
def test_tiny_suite_run_resume_and_report(sqlite_url, tmp_path):
    problems = _tiny_problems()
    runs = suite.specs(problems, METHODS, SEEDS)
    assert [r.name for r in runs[:3]] == [f"branin/1-level/{m}/seed-0" for m in METHODS]  # seed, problem, method
    res = harness.run_specs(sqlite_url, runs, progress=False)
    assert len(res) == 12 and not any(r["skipped"] or "error" in r for r in res)

    # Resume: all skipped; an unfinished study is run again; --redo's forget deletes finished ones.
    assert all(r["skipped"] for r in harness.run_specs(sqlite_url, runs, progress=False))
    storage = optuna.storages.RDBStorage(sqlite_url)
    name = "augmented-branin/2-level/tpe/seed-1"
    storage.set_study_user_attr(storage.get_study_id_from_name(name), FINISHED_ATTR, False)
    again = harness.run_specs(sqlite_url, runs, progress=False)
    assert [r["study"] for r in again if not r["skipped"]] == [name]
    assert harness.forget(sqlite_url, runs, ["random"]) == [r.name for r in runs if r.method == "random"]
    again = harness.run_specs(sqlite_url, runs, progress=False)
    assert sorted(r["study"] for r in again if not r["skipped"]) == sorted(r.name for r in runs if r.method == "random")

    out = tmp_path / "report"
    readme = suite.write_suite_report(sqlite_url, out, command="python benchmarks/sampler_suite.py ...")
    text = readme.read_text()
    assert "## Verdicts: `mfkd` against each method" in text and "reported untouched" in text
    assert text.index("## branin / 1-level") < text.index("## augmented-branin / 2-level")  # the suite's order
    assert (out / "curves-augmented-branin-2-level.png").stat().st_size > 1000

    # The figures against the stored trials.
    table = pd.read_csv(out / "runs.csv")
    assert len(table) == 12 and set(table["metric"]) == {"log10_regret"}
    for p in problems:
        for row in table[(table.protocol == p.name)].itertuples():
            study = optuna.load_study(study_name=f"{p.name}/{p.variant}/{row.method}/seed-{row.seed}", storage=storage)
            assert row.final == pytest.approx(_by_hand(study, p.top_level, p.optimum), abs=1e-12)
            assert row.final == pytest.approx(_by_hand(study, p.top_level, float(p.function.optimal_value)), abs=1e-3)
    summary = pd.read_csv(out / "summary.csv")
    for p in problems:
        grp = summary[summary.protocol == p.name].set_index("method")
        assert list(grp.index) == METHODS  # the suite's order: mfkd first
        finals = {m: table[(table.protocol == p.name) & (table.method == m)].sort_values("seed")["final"].to_numpy()
                  for m in METHODS}
        assert grp.loc["tpe", "mean"] == pytest.approx(finals["tpe"].mean())
        assert grp.loc["tpe", "std"] == pytest.approx(finals["tpe"].std(ddof=1))
        assert grp.loc["random", "median"] == pytest.approx(np.median(finals["random"]))
        raw = [mannwhitneyu(finals["mfkd"], finals[m], alternative="two-sided").pvalue for m in ("tpe", "random")]
        assert [grp.loc[m, "p_vs_mfkd"] for m in ("tpe", "random")] == pytest.approx(raw)
        assert [grp.loc[m, "p_holm_vs_mfkd"] for m in ("tpe", "random")] == pytest.approx(_holm_by_hand(raw))
        # A quarter of the budget, from the trials alone; a seed with no incumbent yet ranks last.
        quarter = {m: np.array([_by_hand(optuna.load_study(study_name=f"{p.name}/{p.variant}/{m}/seed-{s}", storage=storage),
                                         p.top_level, p.optimum, spent=0.25 * p.budget()) for s in SEEDS]) for m in METHODS}
        assert grp.loc["tpe", "mean_at_0.25_budget"] == pytest.approx(np.nanmean(quarter["tpe"]))
        assert grp.loc["mfkd", "n_at_0.25_budget"] == np.sum(~np.isnan(quarter["mfkd"]))
        raw = [mannwhitneyu(np.nan_to_num(quarter["mfkd"], nan=np.inf), np.nan_to_num(quarter[m], nan=np.inf),
                            alternative="two-sided").pvalue for m in ("tpe", "random")]
        assert [grp.loc[m, "p_holm_vs_mfkd_at_0.25"] for m in ("tpe", "random")] == pytest.approx(_holm_by_hand(raw))


def test_problem_names_groups_and_methods():
    assert suite.expand(["hartmann6", "synthetic-mf", "augmented-hartmann"]) == [
        "hartmann6/1-level", "augmented-hartmann/3-level", "augmented-branin/2-level", "wing-weight/4-level"]
    assert len(suite.expand(["all"])) == 17 and suite.expand(["mf3"]) == ["mf3/cifar10"] and suite.expand(["nb201"]) == ["nb201/cifar10", "nb201/cifar100", "nb201/imagenet16"]
    with pytest.raises(ValueError, match="unknown problem 'rosenbrock'"):
        suite.expand(["rosenbrock"])
    assert suite.METHOD_NAMES == ("mfkd", "mfkd-paper", "gp", "tpe", "random")
    # mfkd: the sampler with the problem's levels and nothing else; mfkd-paper: the paper's warm-up.
    hart = SYNTHETIC_PROBLEMS["augmented-hartmann/3-level"]()
    sampler, pruner, _ = get_method("mfkd").build(3, hart.context("mfkd"))
    assert sampler.fidelities == ["s0.5", "s0.75", "s1"] and pruner is None
    paper, _, _ = get_method("mfkd-paper").build(3, hart.context("mfkd-paper"))
    assert paper.n_warmup == {"s0.5": 100, "s0.75": 100, "s1": 20} and paper.beta == 1.0
    one, _, _ = get_method("mfkd-paper").build(0, SYNTHETIC_PROBLEMS["branin/1-level"]().context("mfkd-paper"))
    assert one.fidelities == ["top"] and one.n_warmup == {"top": 20}
    # One name, one meaning: the NB201 protocols' two-level MFKDSampler with the paper's
    # settings is mfkd-paper as well (studies stored as mfkd before: runs.LEGACY_METHODS).
    mf = get_protocol("mf")
    assert "mfkd-paper" in mf.methods and "mfkd" not in mf.methods
    assert mf.check("mfkd-paper", "cifar10") is get_method("mfkd-paper")
    with pytest.raises(ValueError, match="unknown method 'mfkd-suite'"):
        get_method("mfkd-suite")


def test_nb201_problems_run_the_suite_methods(nb201_table_path):
    problem = suite.make_problem("nb201/cifar10", str(nb201_table_path))
    assert (problem.name, problem.variant, problem.methods) == ("nb201", "cifar10", suite.METHOD_NAMES)
    sampler, _, _ = problem.method("mfkd").build(0, problem.context("mfkd"))
    assert sampler.fidelities == ["12ep"]
    mf = suite.make_problem("mf/cifar100", str(nb201_table_path))
    sampler, _, _ = mf.method("mfkd").build(0, mf.context("mfkd"))
    assert sampler.fidelities == ["12ep", "200ep"]
    assert mf.objective("gp").default_level == "200ep" and mf.budget() > 0
    with pytest.raises(ValueError, match="not part of protocol 'nb201'"):
        problem.method("re")


def test_command_line(sqlite_url, tmp_path, monkeypatch):
    mod = load_benchmark("sampler_suite")
    # A study stored before the bad requests below must survive them.
    tiny = _tiny_problems()[0]
    harness.run_specs(sqlite_url, suite.specs([tiny], ["random"], [0]), progress=False)
    for bad in (["--problems", "rosenbrock"], ["--seeds", "x-y"], ["--n-jobs", "0"],
                ["--problems", "branin", "--methods", "re"]):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--storage", sqlite_url, "--out", str(tmp_path / "r"), "--no-progress", *bad])
        assert exc.value.code == 2
    assert "branin/1-level/random/seed-0" in finished_studies(as_storage(sqlite_url))
    assert mod.main(["--storage", sqlite_url, "--problems", "branin", "--report-only", "--out", str(tmp_path / "r")]) == 0
    assert "branin/1-level/random/seed-0" in pd.read_csv(tmp_path / "r" / "runs.csv").pipe(
        lambda d: d.protocol + "/" + d.dataset + "/" + d.method + "/seed-" + d.seed.astype(str)).tolist()


@pytest.mark.slow
def test_report_falls_back_to_mfkd_paper_without_mfkd(sqlite_url, tmp_path):
    # A storage without `mfkd` runs (e.g. before they are added): the methods are compared with
    # `mfkd-paper`, and the report says so; once `mfkd` is there, it is the reference again.
    tiny = _tiny_problems()[0]
    methods = ["mfkd-paper", "tpe", "random"]
    harness.run_specs(sqlite_url, suite.specs([tiny], methods, SEEDS), progress=False)
    notes = tmp_path / "notes.md"
    notes.write_text("## In plain words\n\nA note.\n")
    mod = load_benchmark("sampler_suite")
    out = tmp_path / "report"
    assert mod.main(["--storage", sqlite_url, "--report-only", "--out", str(out), "--title", "Tiny",
                     "--notes", str(notes), "--anytime", "0.5", "1"]) == 0
    text = (out / "README.md").read_text()
    assert text.startswith("# Tiny\n") and "## In plain words\n\nA note." in text
    assert "## Verdicts: `mfkd-paper` against each method" in text and "compared with `mfkd-paper` instead" in text
    assert "| vs mfkd-paper |" in text and "at 1 budget" in text
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    table = pd.read_csv(out / "runs.csv")
    finals = {m: table[table.method == m].sort_values("seed")["final"].to_numpy() for m in methods}
    raw = [mannwhitneyu(finals["mfkd-paper"], finals[m], alternative="two-sided").pvalue for m in ("tpe", "random")]
    assert [summary.loc[m, "p_holm_vs_mfkd-paper"] for m in ("tpe", "random")] == pytest.approx(_holm_by_hand(raw))
    assert "p_vs_mfkd-paper_at_1" in summary.columns

    harness.run_specs(sqlite_url, suite.specs([tiny], ["mfkd"], SEEDS), progress=False)
    text = suite.write_suite_report(sqlite_url, tmp_path / "again").read_text()
    assert "## Verdicts: `mfkd` against each method" in text and "vs mfkd-paper" not in text
    assert "instead" not in text
    assert "p_vs_mfkd" in pd.read_csv(tmp_path / "again" / "summary.csv").columns
