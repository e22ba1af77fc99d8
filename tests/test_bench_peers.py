"""The peer adapters (DEHB, Syne Tune, SMAC3) on a tiny problem, and through the harness."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import load_benchmark
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optuna_mfkd.bench import harness, report
from optuna_mfkd.bench.methods import METHODS, MethodContext
from optuna_mfkd.bench.peers import EXTRA_HINT, PEERS
from optuna_mfkd.bench.peers.common import BUDGET_ATTR, PEER_TRIAL_ATTR, Levels, SearchSpace
from optuna_mfkd.bench.protocols import get_protocol
from optuna_mfkd.bench.runs import META_ATTR, RESULT_ATTR
from optuna_mfkd.cli import report as report_cli
from optuna_mfkd.fidelity import FIDELITY_ATTR, FIDELITY_LEVEL_ATTR, MaxCostCallback, fidelity_of

#: Package each peer's adapter imports.
PACKAGES = {
    "dehb": "dehb",
    "syne-bohb": "syne_tune",
    "syne-asha": "syne_tune",
    "smac-mf": "smac",
    "smac-hb": "smac",
}


def _need(method: str) -> None:
    module = PACKAGES[method]
    if importlib.util.find_spec(module) is None:
        from conftest import _skip

        _skip(f"{module} is not installed (the optional extra 'peers': {EXTRA_HINT})")


# A tiny problem with three geometric levels (resources 1, 3, 9: eta = 3) and one
# parameter of each kind. value = 2 x + [a, b, c] -> [0, 1, 2] + n / 4 - 3 / resource,
# cost = resource x (1 + n).
SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "op": CategoricalDistribution(["a", "b", "c"]),
    "n": IntDistribution(1, 4),
}
RESOURCES = {"r1": 1.0, "r3": 3.0, "r9": 9.0}
OP_SCORE = {"a": 0.0, "b": 1.0, "c": 2.0}


def _value(params: dict, resource: float) -> float:
    return 2 * params["x"] + OP_SCORE[params["op"]] + params["n"] / 4 - 3 / resource


def _cost(params: dict, resource: float) -> float:
    return resource * (1 + params["n"])


def _objective(trial: optuna.Trial) -> float:
    params = {
        "x": trial.suggest_float("x", 0.0, 1.0),
        "op": trial.suggest_categorical("op", ["a", "b", "c"]),
        "n": trial.suggest_int("n", 1, 4),
    }
    resource = RESOURCES[fidelity_of(trial)]
    trial.set_user_attr("cost", _cost(params, resource))
    return _value(params, resource)


def _run(method: str, budget: float, seed: int = 0) -> tuple[optuna.Study, object]:
    context = MethodContext(single_level="r9", search_space=SPACE, level_resources=RESOURCES)
    sampler, pruner, _ = METHODS[method].build(seed, context)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(_objective, n_trials=2000, callbacks=[MaxCostCallback(budget)])
    return study, sampler


@pytest.mark.parametrize("method", list(PEERS))
def test_adapter_records_levels_costs_and_stops_at_the_budget(method):
    _need(method)
    budget = 400.0
    study, sampler = _run(method, budget)
    trials = study.trials
    assert len(trials) >= 5
    costs = []
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        level = t.user_attrs[FIDELITY_ATTR]
        resource = RESOURCES[level]
        assert t.user_attrs[FIDELITY_LEVEL_ATTR] == list(RESOURCES).index(level)
        assert t.user_attrs[BUDGET_ATTR] == pytest.approx(
            resource, rel=1e-6
        )  # the peer's own budget
        assert set(t.params) == set(SPACE) and t.distributions == SPACE
        assert t.value == pytest.approx(_value(t.params, resource))
        assert t.user_attrs["cost"] == pytest.approx(_cost(t.params, resource))
        costs.append(t.user_attrs["cost"])
    total = np.cumsum(costs)
    assert total[-1] >= budget > total[-2]  # stops on the first trial past the budget
    assert {t.user_attrs[FIDELITY_ATTR] for t in trials} >= {"r1", "r9"}
    # The peer saw every result: each adapter's peer keeps its own count.
    if method == "dehb":
        assert sampler._dehb._tell_counter == len(trials)
    elif method.startswith("smac"):
        assert len(sampler._smac.runhistory) == len(trials)
    else:  # Syne Tune's bracket records every result below the top level at its rung
        rungs = dict(sampler._scheduler.brackets[0].rungs)
        recorded = {r: len(v) for r, v in rungs.items() if r < 9 - 1e-6}
        low = {
            r: sum(1 for t in trials if t.user_attrs[BUDGET_ATTR] == pytest.approx(r))
            for r in recorded
        }
        assert recorded == low
    meta = sampler.bench_meta["peer"]
    assert meta["method"] == method and all(meta["versions"].values())
    assert meta["settings"]["eta"] == pytest.approx(3.0)


@pytest.mark.parametrize("method", ["syne-asha", "dehb"])
def test_promotions_follow_lower_rungs(method):
    # A configuration evaluated above the lowest level of a bracket that starts there was
    # evaluated one level lower first (successive halving's promotions).
    _need(method)
    study, _ = _run(method, 300.0)
    seen: dict[tuple, set[str]] = {}
    for t in study.trials:
        key = (t.user_attrs.get("peer:bracket"), t.user_attrs[PEER_TRIAL_ATTR])
        seen.setdefault(key, set()).add(t.user_attrs[FIDELITY_ATTR])
    promoted = [levels for levels in seen.values() if len(levels) > 1]
    assert promoted
    for levels in promoted:
        ks = sorted(list(RESOURCES).index(lv) for lv in levels)
        assert ks == list(range(ks[0], ks[-1] + 1))


@pytest.mark.parametrize("method", list(PEERS))
def test_same_seed_same_run(method):
    _need(method)
    runs = [
        [(t.params, t.user_attrs[FIDELITY_ATTR]) for t in _run(method, 150.0, seed=s)[0].trials]
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_missing_package_names_the_extra(monkeypatch, capsys, sqlite_url):
    monkeypatch.setitem(sys.modules, "dehb", None)  # import dehb -> ImportError
    context = MethodContext(single_level="r9", search_space=SPACE, level_resources=RESOURCES)
    with pytest.raises(ImportError) as info:
        METHODS["dehb"].build(0, context)
    message = str(info.value)
    assert (
        "\n" not in message
        and "'dehb'" in message
        and "pip install 'optuna-mfkd[peers]'" in message
    )
    # The command line checks before running anything: one line, exit code 2, nothing stored.
    from optuna_mfkd.cli import main

    code = main(
        [
            "benchmark",
            "--storage",
            sqlite_url,
            "--protocol",
            "mf",
            "--methods",
            "random",
            "dehb",
            "--seeds",
            "0",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "'dehb'" in err and "pip install 'optuna-mfkd[peers]'" in err
    assert optuna.storages.RDBStorage(sqlite_url).get_all_studies() == []


def test_levels_eta_and_budgets():
    nb201 = Levels.from_mapping({"200ep": 200, "12ep": 12})
    assert nb201.names == ("12ep", "200ep") and nb201.eta == 200 / 12
    assert nb201.min * nb201.eta == pytest.approx(200.0, rel=1e-12)
    assert nb201.index_of(12.000000000000002) == 0 and nb201.index_of(200.0) == 1
    with pytest.raises(ValueError, match="none of the levels"):
        nb201.index_of(66.7)
    assert Levels.from_mapping({"a": 1, "b": 10, "c": 100}).eta == pytest.approx(10.0)
    with pytest.raises(ValueError, match="not geometric"):
        Levels.from_mapping({"a": 1, "b": 5, "c": 100})
    with pytest.raises(ValueError, match="at least two levels"):
        Levels.from_mapping({"a": 12})


@pytest.mark.parametrize("method", ["dehb", "syne-asha", "smac-hb"])
def test_rungs_equal_levels_where_rounding_loses_one(method):
    # Levels 1, 10, 100: log(1 / 100) / log(10) is -1.9999999999999996 with the C library's
    # log and -2.0 with numpy's vectorised log on some CPUs, so DEHB (which truncates that
    # ratio with numpy) builds two rungs (10, 100) on some machines and three on others; where
    # it loses one the adapter lowers its eta by 1e-9. SMAC (log(100) / log(10) = 2.0) and
    # Syne Tune need no change. Either way the rungs below must be exactly the levels.
    _need(method)
    context = MethodContext(
        single_level="c", search_space=SPACE, level_resources={"a": 1.0, "b": 10.0, "c": 100.0}
    )
    sampler, _, _ = METHODS[method].build(0, context)
    if method == "dehb":
        assert sampler.eta in (10.0, pytest.approx(10.0 * (1 - 1e-9), rel=1e-13))
    else:
        assert sampler.eta == 10.0
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        (
            trial.suggest_float("x", 0.0, 1.0),
            trial.suggest_categorical("op", ["a", "b", "c"]),
            trial.suggest_int("n", 1, 4),
        )
        return trial.number % 7

    study.optimize(objective, n_trials=6)
    resources = {"a": 1.0, "b": 10.0, "c": 100.0}
    assert study.trials[0].user_attrs[FIDELITY_ATTR] == "a"  # the lowest rung exists
    for t in study.trials:
        assert t.user_attrs[BUDGET_ATTR] == pytest.approx(
            resources[t.user_attrs[FIDELITY_ATTR]], rel=1e-6
        )


def test_search_space_round_trip():
    pytest.importorskip("ConfigSpace", reason=f"ConfigSpace is not installed ({EXTRA_HINT})")
    space = SearchSpace(
        {
            **SPACE,
            "lr": FloatDistribution(1e-4, 1e-1, log=True),
            "flag": CategoricalDistribution([True, False, None]),
        }
    )
    cs = space.configspace(seed=0)
    for config in cs.sample_configuration(50):
        params = space.decode(dict(config))
        for name, dist in space.distributions.items():
            assert dist._contains(dist.to_internal_repr(params[name]))
    assert {space.decode(dict(c))["flag"] for c in cs.sample_configuration(60)} == {
        True,
        False,
        None,
    }


def test_stepped_parameters_become_ordinal_grids():
    pytest.importorskip("ConfigSpace", reason=f"ConfigSpace is not installed ({EXTRA_HINT})")
    pytest.importorskip("syne_tune", reason=f"syne-tune is not installed ({EXTRA_HINT})")
    space = SearchSpace(
        {"k": IntDistribution(-5, -1, step=2), "f": FloatDistribution(0.0, 1.0, step=0.25)}
    )
    seen_k, seen_f = set(), set()
    for config in space.configspace(seed=0).sample_configuration(60):
        params = space.decode(dict(config))
        seen_k.add(params["k"])
        seen_f.add(params["f"])
    assert seen_k == {-5, -3, -1} and seen_f == {0.0, 0.25, 0.5, 0.75, 1.0}
    synetune = space.synetune()
    assert sorted(
        {space.decode({"k": synetune["k"].sample(), "f": 0.5})["k"] for _ in range(60)}
    ) == [-5, -3, -1]


def test_protocols_accept_peers_only_when_named():
    mf = get_protocol("mf")
    assert not set(PEERS) & set(mf.methods)  # not run by default: the extra is optional
    for name in PEERS:
        assert mf.check(name, "cifar10") is METHODS[name]
    with pytest.raises(ValueError, match="not part of protocol 'nb201'"):
        get_protocol("nb201").check("dehb", "cifar10")
    ctx = mf.context("dehb")
    assert ctx.level_resources == {"12ep": 12.0, "200ep": 200.0}
    assert sorted(ctx.search_space) == sorted(
        f"edge_{i}->{j}" for i, j in [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    )


@pytest.mark.slow
def test_peers_through_the_harness_and_report(sqlite_url, nb201_table_path, tmp_path):
    methods = [m for m in PEERS if importlib.util.find_spec(PACKAGES[m]) is not None]
    if len(methods) < len(PEERS):
        _need(next(m for m in PEERS if m not in methods))
    # mf with a budget of 3 median 200-epoch runs: a bracket or two per peer.
    tiny = dataclasses.replace(get_protocol("mf"), name="mf-tiny", budget_median_top_evals=3.0)
    res = harness.run_benchmark(
        sqlite_url,
        tiny,
        ["cifar10"],
        methods + ["random"],
        [0],
        table_path=str(nb201_table_path),
        progress=False,
    )
    assert not any("error" in r for r in res), res
    from optuna_mfkd.nasbench201.table import load_table

    table = load_table(str(nb201_table_path))
    budget = tiny.budget(table, "cifar10")
    storage = optuna.storages.RDBStorage(sqlite_url)
    for method in methods:
        study = optuna.load_study(study_name=f"mf-tiny/cifar10/{method}/seed-0", storage=storage)
        meta = study.user_attrs[META_ATTR]
        assert meta["peer"]["method"] == method and all(meta["peer"]["versions"].values())
        costs = []
        for t in study.trials:
            epochs = {"12ep": 12, "200ep": 200}[t.user_attrs[FIDELITY_ATTR]]
            index = t.user_attrs["nb201_index"]
            assert t.user_attrs["cost"] == pytest.approx(
                epochs * table.seconds_per_epoch("cifar10", index)
            )
            assert t.value == pytest.approx(table.val_acc("cifar10", index, epochs))
            costs.append(t.user_attrs["cost"])
        assert sum(costs) >= budget > sum(costs[:-1])
        top = [t for t in study.trials if t.user_attrs[FIDELITY_ATTR] == "200ep"]
        best = max(top, key=lambda t: (t.value, -t.number)) if top else None
        record = study.user_attrs[RESULT_ATTR]
        assert record["final_test"] == (
            None if best is None else pytest.approx(best.user_attrs["test_acc_200ep"])
        )
    # The report (command line): anytime columns up to the whole budget with their tests, a
    # title and notes, and the versions each study recorded.
    notes = tmp_path / "notes.md"
    notes.write_text("## Summary\n\nPeers side by side.\n")
    out = tmp_path / "report"
    assert (
        report_cli.main(
            [
                "--storage",
                sqlite_url,
                "--out",
                str(out),
                "--anytime",
                "0.5",
                "1",
                "--anytime-tests",
                "--title",
                "Peers",
                "--notes",
                str(notes),
            ]
        )
        == 0
    )
    text = (out / "README.md").read_text()
    assert text.startswith("# Peers\n") and "## Summary\n\nPeers side by side." in text
    assert "at 0.5 budget" in text and "at 1 budget" in text and "## Methods" in text
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    for method in methods:
        assert f"`{method}`" in text and f"{PACKAGES[method].replace('_', '-')} " in text
        study = optuna.load_study(study_name=f"mf-tiny/cifar10/{method}/seed-0", storage=storage)
        cum = np.cumsum([t.user_attrs["cost"] for t in study.trials])
        for frac in (0.5, 1.0):
            fit = [
                t
                for t, c in zip(study.trials, cum)
                if c <= frac * budget and t.user_attrs[FIDELITY_ATTR] == "200ep"
            ]
            best = (
                max(fit, key=lambda t: (t.value, -t.number)).user_attrs["test_acc_200ep"]
                if fit
                else math.nan
            )
            assert summary.loc[method, f"mean_at_{frac:g}_budget"] == pytest.approx(
                best, nan_ok=True
            )
    with pytest.raises(ValueError, match="anytime fractions"):
        report.write_report(sqlite_url, tmp_path / "bad", anytime=(0.5, 1.5))

    # The command line runs a peer on the real mf protocol.
    from optuna_mfkd.cli import main

    assert (
        main(
            [
                "benchmark",
                "--storage",
                sqlite_url,
                "--protocol",
                "mf",
                "--methods",
                "dehb",
                "--seeds",
                "0",
                "--table",
                str(nb201_table_path),
                "--no-progress",
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="mf/cifar10/dehb/seed-0", storage=storage)
    assert {t.user_attrs[FIDELITY_ATTR] for t in study.trials} == {"12ep", "200ep"}
    assert sum(t.user_attrs["cost"] for t in study.trials) >= get_protocol("mf").budget(
        table, "cifar10"
    )


def test_peer_evaluations_counts_levels_costs_and_repeats():
    run_stats = load_benchmark("peer_evaluations").run_stats

    def trial(index, level, cost):
        return optuna.trial.create_trial(
            value=0.0, user_attrs={"nb201_index": index, "evaluated_at": level, "cost": cost}
        )

    trials = [
        trial(5, "12ep", 10.0),
        trial(5, "200ep", 150.0),
        trial(7, "12ep", 20.0),
        trial(5, "200ep", 150.0),
        trial(7, "12ep", 20.0),
    ]
    stats = run_stats(trials)
    assert stats["evals_12ep"] == 3 and stats["evals_200ep"] == 2
    assert stats["cost_share_12ep"] == pytest.approx(50 / 350) and stats[
        "cost_share_200ep"
    ] == pytest.approx(300 / 350)
    assert stats["repeated_share"] == pytest.approx(2 / 5)  # (5, 200ep) and (7, 12ep) again
    # Without an NB201 index (the synthetic problems) a point is the trial's params.
    dist = {"x": FloatDistribution(0.0, 1.0)}
    points = [
        optuna.trial.create_trial(
            value=0.0,
            params={"x": x},
            distributions=dist,
            user_attrs={"evaluated_at": lv, "cost": c},
        )
        for x, lv, c in [
            (0.5, "s0.5", 0.1),
            (0.5, "s1", 1.0),
            (0.5, "s0.5", 0.1),
            (0.25, "s0.5", 0.1),
        ]
    ]
    stats = run_stats(points)
    assert (
        stats["evals_s0.5"] == 3
        and stats["evals_s1"] == 1
        and stats["repeated_share"] == pytest.approx(1 / 4)
    )


# ------------------------------------------------------------------ synthetic multi-fidelity problems
def _tiny_synthetic(pid: str, budget: float):
    from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

    return dataclasses.replace(SYNTHETIC_PROBLEMS[pid](), budget_top_evals=budget)


def test_synthetic_problems_give_the_peers_space_and_levels():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import suite_settings as suite

    from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

    for pid in suite.GROUPS["synthetic-mf"]:
        problem = SYNTHETIC_PROBLEMS[pid]()
        assert problem.methods == suite.METHOD_NAMES  # the suite's default list is unchanged
        ctx = problem.context("dehb")
        assert ctx.level_resources == {lv.name: lv.cost for lv in problem.levels}
        assert list(ctx.level_resources) == list(ctx.levels)
        levels = Levels.from_mapping(ctx.level_resources)  # geometric: eta 10, rungs = levels
        assert levels.names == ctx.levels and levels.eta == pytest.approx(10.0)
        assert ctx.search_space == {
            p.name: FloatDistribution(p.low, p.high) for p in problem.params
        }
        # The distributions are those the objective suggests.
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(problem.objective("random"), n_trials=1)
        assert study.trials[0].distributions == ctx.search_space
        for name in PEERS:
            assert problem.method(name) is METHODS[name]
    # ackley-mixed's binary inputs are categorical over [0, 1].
    mixed = SYNTHETIC_PROBLEMS["ackley-mixed/1-level"]()
    assert mixed.context("random").search_space["b0"] == CategoricalDistribution([0.0, 1.0])
    assert mixed.context("random").level_resources is None


@pytest.mark.parametrize("pid", ["branin/1-level", "hartmann6/1-level", "ackley-mixed/1-level"])
def test_single_level_problems_refuse_the_peers(pid, sqlite_url, capsys):
    from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

    problem = SYNTHETIC_PROBLEMS[pid]()
    for name in PEERS:
        with pytest.raises(ValueError) as info:
            problem.method(name)
        message = str(info.value)
        assert (
            "\n" not in message
            and f"'{pid}'" in message
            and f"'{name}'" in message
            and "one level" in message
        )
    with pytest.raises(ValueError, match="one level"):
        dataclasses.replace(problem, extra_methods=tuple(PEERS))
    # The suite's command line: one line, exit code 2, nothing run.
    mod = load_benchmark("sampler_suite")
    with pytest.raises(SystemExit) as exit_info:
        mod.main(
            [
                "--storage",
                sqlite_url,
                "--problems",
                pid.split("/")[0],
                "--methods",
                "dehb",
                "--seeds",
                "0",
                "--no-progress",
                "--out",
                str(Path(sqlite_url[len("sqlite:///") :]).parent / "report"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"'{pid}'" in err and "'dehb'" in err
    assert optuna.storages.RDBStorage(sqlite_url).get_all_studies() == []


@pytest.mark.parametrize("method", list(PEERS))
@pytest.mark.parametrize(
    ("pid", "budget"), [("augmented-branin/2-level", 5.0), ("augmented-hartmann/3-level", 3.5)]
)
def test_peer_on_a_synthetic_mf_problem(method, pid, budget):
    # Through the harness, as the suite runs it: every trial's level is one of the problem's,
    # its cost that level's, its value the function at that level (evaluated here again), its
    # params inside the bounds; the run stops on the first trial that reaches the budget.
    _need(method)
    problem = _tiny_synthetic(pid, budget)
    storage = optuna.storages.InMemoryStorage()
    res = harness.run_one(harness.RunSpec(problem, method, 0), storage)
    study = optuna.load_study(study_name=res["study"], storage=storage)
    trials = study.trials
    assert len(trials) >= 5
    levels = {lv.name: lv for lv in problem.levels}
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        level = t.user_attrs[FIDELITY_ATTR]
        assert level in levels and t.user_attrs["evaluated_at"] == level
        assert t.user_attrs[FIDELITY_LEVEL_ATTR] == list(levels).index(level)
        assert t.user_attrs["cost"] == levels[level].cost
        assert t.user_attrs[BUDGET_ATTR] == pytest.approx(levels[level].cost, rel=1e-6)
        assert list(t.params) == [p.name for p in problem.params]
        x = [t.params[p.name] for p in problem.params]
        assert all(isinstance(v, float) and p.low <= v <= p.high for p, v in zip(problem.params, x))
        assert t.value == problem.evaluate(x, level)
        if level == problem.top_level:
            assert t.user_attrs["log10_regret"] == pytest.approx(problem.log10_regret(t.value))
    total = np.cumsum([t.user_attrs["cost"] for t in trials])
    assert total[-1] >= budget > total[-2]
    assert {t.user_attrs[FIDELITY_ATTR] for t in trials} >= {
        problem.levels[0].name,
        problem.top_level,
    }
    meta = study.user_attrs[META_ATTR]
    assert meta["method"] == method and all(meta["peer"]["versions"].values())
    assert meta["peer"]["settings"]["eta"] == pytest.approx(10.0)
    assert meta["peer"]["settings"]["min_budget"] == problem.levels[0].cost
