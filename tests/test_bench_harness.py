from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pandas as pd
import pytest

from optuna_mfkd.bench import bulk_copy, harness, report, results, statistics
from optuna_mfkd.bench import runs as bench_runs
from optuna_mfkd.bench.incumbent import incumbent_curve
from optuna_mfkd.bench.protocols import get_protocol


@pytest.fixture
def tiny_protocol():
    # About 7 queries per run: the smoke test takes seconds.
    return dataclasses.replace(get_protocol("nb201"), name="tiny", budgets={"cifar10": 1500.0})


def _best_test(study, spent=float("inf")):
    """Test accuracy of the best trial among those whose cumulative cost is <= ``spent``."""
    done = np.cumsum([t.user_attrs["cost"] for t in study.trials]) <= spent
    trials = [t for t, ok in zip(study.trials, done) if ok]
    if not trials:
        return float("nan")
    best = max(trials, key=lambda t: (t.value, -t.number))
    return best.user_attrs["test_acc_200ep"]


def test_smoke_run_resume_and_report(sqlite_url, nb201_table_path, tiny_protocol, tmp_path):
    table = str(nb201_table_path)
    res = harness.run_benchmark(sqlite_url, tiny_protocol, ["cifar10"], ["random", "re"], [0, 1], table_path=table, progress=False)
    assert sorted(r["study"] for r in res) == sorted(
        f"tiny/cifar10/{m}/seed-{s}" for m in ("random", "re") for s in (0, 1)
    )
    assert not any(r["skipped"] for r in res)
    storage = optuna.storages.RDBStorage(sqlite_url)
    finals, halves = {}, {}
    for name in (r["study"] for r in res):
        study = optuna.load_study(study_name=name, storage=storage)
        assert study.user_attrs[bench_runs.FINISHED_ATTR] is True
        costs = [t.user_attrs["cost"] for t in study.trials]
        assert sum(costs) >= 1500 > sum(costs[:-1])  # stops on the first trial past the budget
        finals[name] = _best_test(study)
        halves[name] = _best_test(study, spent=750.0)

    # Resume: finished studies are skipped; an unfinished one is deleted and run again.
    again = harness.run_benchmark(sqlite_url, tiny_protocol, ["cifar10"], ["random", "re"], [0, 1], table_path=table, progress=False)
    assert all(r["skipped"] for r in again)
    partial = optuna.create_study(study_name="tiny/cifar10/random/seed-2", storage=storage, direction="maximize")
    partial.enqueue_trial({})
    partial.optimize(lambda t: 0.0, n_trials=1)
    res2 = harness.run_benchmark(sqlite_url, tiny_protocol, ["cifar10"], ["random"], [2], table_path=table, progress=False)
    assert res2[0]["skipped"] is False
    rerun = optuna.load_study(study_name="tiny/cifar10/random/seed-2", storage=storage)
    assert all("nb201_index" in t.user_attrs for t in rerun.trials)
    finals[rerun.study_name] = _best_test(rerun)

    # The report reads the storage alone.
    out = tmp_path / "report"
    readme = report.write_report(sqlite_url, out, command="optuna-mfkd report ...")
    text = readme.read_text()
    assert "## tiny / cifar10" in text and "(curves-tiny-cifar10.png)" in text
    assert (out / "curves-tiny-cifar10.png").stat().st_size > 1000
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 5
    for row in runs.itertuples():
        assert row.final_test_acc == pytest.approx(finals[f"tiny/cifar10/{row.method}/seed-{row.seed}"])
    # The summaries stored with the studies give what the trials give.
    fast, slow = results.load_runs(sqlite_url), results.load_runs(sqlite_url, use_records=False)
    key = lambda r: (r.method, r.seed)  # noqa: E731
    for a, b in zip(sorted(fast, key=key), sorted(slow, key=key), strict=True):
        assert (a.final_test, a.final_val, a.n_trials) == (b.final_test, b.final_val, b.n_trials)
        np.testing.assert_array_equal(a.curve_test, b.curve_test)
        np.testing.assert_allclose(a.curve_cost, b.curve_cost, atol=1e-3)
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    rand = [v for k, v in finals.items() if "/random/" in k]
    assert summary.loc["random", "mean"] == pytest.approx(np.mean(rand))
    assert summary.loc["random", "n_seeds"] == 3
    # Anytime column: the incumbent once half of the budget is spent, from the trials alone.
    half = [v for k, v in halves.items() if "/re/" in k]
    assert summary.loc["re", "mean_at_0.5_budget"] == pytest.approx(np.nanmean(half))
    assert "at 0.5 budget" in text


def test_study_names_and_seed_lists():
    assert bench_runs.study_name("nb201", "cifar10", "tpe", 7) == "nb201/cifar10/tpe/seed-7"
    assert bench_runs.parse_study_name("nb201/cifar10/tpe/seed-7") == ("nb201", "cifar10", "tpe", 7)
    assert bench_runs.parse_study_name("something else") is None
    assert bench_runs.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]


def test_bad_requests(tiny_protocol):
    with pytest.raises(ValueError, match="unknown method 'sa'"):
        harness.make_specs(tiny_protocol, ["cifar10"], ["sa"], [0])
    with pytest.raises(ValueError, match="not part of protocol"):
        harness.make_specs(tiny_protocol, ["cifar10"], ["bohb"], [0])
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nb301")
    with pytest.raises(ValueError, match="RDB URL"):
        harness.run_benchmark("bench.db", tiny_protocol, ["cifar10"], ["random"], [0], progress=False)


def test_holm_matches_hand_computation():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> monotone 0.06.
    assert statistics.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adj = statistics.holm([0.5, float("nan"), 0.001])
    assert adj[0] == pytest.approx(0.5) and np.isnan(adj[1]) and adj[2] == pytest.approx(0.002)


def test_worst_decile_is_the_mean_of_the_worst_tenth_by_hand():
    values = np.arange(1.0, 21.0)  # 20 seeds: the worst tenth is 2 seeds
    assert statistics.worst_decile(values, higher_is_better=False) == pytest.approx((20 + 19) / 2)
    assert statistics.worst_decile(values, higher_is_better=True) == pytest.approx((1 + 2) / 2)
    assert statistics.worst_decile([3.0, 1.0, 2.0], higher_is_better=False) == pytest.approx(3.0)  # at least one
    shuffled = np.random.default_rng(0).permutation(np.arange(30.0))  # 30 seeds: 3, whatever the order
    assert statistics.worst_decile(shuffled, higher_is_better=True) == pytest.approx(1.0)
    # a seed without an incumbent is the worst; a worst tenth holding one has no mean
    assert np.isnan(statistics.worst_decile([1.0, float("nan"), 2.0], higher_is_better=False))
    with_gap = [*np.arange(20.0), float("nan")]  # 21 seeds: the worst 2 are nan and 0
    assert np.isnan(statistics.worst_decile(with_gap, higher_is_better=True))
    assert np.isnan(statistics.worst_decile([], higher_is_better=True))


def test_incumbent_curve_uses_top_level_only():
    from optuna.trial import TrialState, create_trial

    trials = [
        create_trial(value=50.0, user_attrs={"cost": 1.0, "fidelity": "12ep", "test_acc_200ep": 90.0}),
        create_trial(value=40.0, user_attrs={"cost": 10.0, "fidelity": "200ep", "test_acc_200ep": 91.0}),
        create_trial(state=TrialState.PRUNED, user_attrs={"cost": 2.0, "fidelity": "12ep", "test_acc_200ep": 99.0}),
        create_trial(value=45.0, user_attrs={"cost": 10.0, "fidelity": "200ep", "test_acc_200ep": 92.5}),
        create_trial(value=45.0, user_attrs={"cost": 10.0, "fidelity": "200ep", "test_acc_200ep": 80.0}),
    ]
    for i, t in enumerate(trials):
        t.number = i
    costs, tests, final_test, final_val = incumbent_curve(trials, "200ep")
    assert costs.tolist() == [1.0, 11.0, 13.0, 23.0, 33.0]
    assert np.isnan(tests[0]) and tests[1:].tolist() == [91.0, 91.0, 92.5, 92.5]  # ties keep the earlier
    assert (final_test, final_val) == (92.5, 45.0)


def test_incumbent_of_a_hybrid_study_is_a_top_level_trial():
    """Hybrid runs record the fidelity only (no ``evaluated_at``): a low-level trial with a
    higher value must never become the incumbent, and the incumbent is the trial
    ``best_high_fidelity_trial`` picks."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from optuna_mfkd.fidelity import STUDY_FIDELITIES_ATTR, best_high_fidelity_trial

    dist = {"x": FloatDistribution(0, 1)}

    def trial(value, level, cost, test, state=TrialState.COMPLETE):
        # The attributes HybridNB201Objective writes (plus the sampler's fidelity).
        attrs = {"fidelity": level, "cost": cost, "test_acc_200ep": test, "arch_str": "|a|", "nb201_index": 0}
        return create_trial(state=state, value=value, params={"x": 0.5}, distributions=dist, user_attrs=attrs)

    study = optuna.create_study(direction="maximize")
    study._storage.set_study_system_attr(study._study_id, STUDY_FIDELITIES_ATTR, ["1ep-nst", "12ep"])
    study.add_trials([
        trial(45.0, "1ep-nst", 3.0, 91.0),   # the low level: higher value than any 12-epoch trial
        trial(30.0, "12ep", 100.0, 93.0),
        trial(50.0, "1ep-nst", 3.0, 94.0),
        trial(35.0, "12ep", 100.0, 92.0),
        trial(None, "12ep", 100.0, 99.0, state=TrialState.FAIL),
    ])
    costs, tests, final_test, final_val = incumbent_curve(study.trials, "12ep")
    assert costs.tolist() == [3.0, 103.0, 106.0, 206.0, 306.0]
    assert np.isnan(tests[0]) and tests[1:].tolist() == [93.0, 93.0, 92.0, 92.0]
    best = best_high_fidelity_trial(study)
    assert (final_test, final_val) == (best.user_attrs["test_acc_200ep"], best.value) == (92.0, 35.0)


def test_store_study_copies_everything(sqlite_url):
    # The one-transaction copy must give back what Optuna's own storage holds.
    mem = optuna.create_study(study_name="copy/x/y/seed-0", direction="maximize",
                              pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    mem.set_user_attr("u", {"a": 1})
    mem._storage.set_study_system_attr(mem._study_id, "s", [1, 2])

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        c = trial.suggest_categorical("c", ["a", "b", None])
        n = trial.suggest_int("n", 1, 9, log=True)
        trial.set_user_attr("cost", x * 10)
        trial.report(x, 3)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return x + n if c != "b" else float("inf")

    mem.optimize(objective, n_trials=25)
    target = optuna.storages.RDBStorage(sqlite_url)
    bulk_copy._bulk_copy(mem, target)  # the fast path itself, not its fallback
    back = optuna.load_study(study_name="copy/x/y/seed-0", storage=target)
    assert back.user_attrs == {"u": {"a": 1}}
    assert target.get_study_system_attrs(back._study_id) == {"s": [1, 2]}
    assert back.direction == mem.direction
    for a, b in zip(mem.trials, back.trials, strict=True):
        assert (a.number, a.state, a.values, a.params, a.distributions) == (b.number, b.state, b.values, b.params, b.distributions)
        assert (a.user_attrs, a.system_attrs, a.intermediate_values) == (b.user_attrs, b.system_attrs, b.intermediate_values)
        assert (a.datetime_start, a.datetime_complete) == (b.datetime_start, b.datetime_complete)
    # New trials continue the numbering.
    back.optimize(objective, n_trials=1)
    assert back.trials[-1].number == 25


def test_bulk_copy_writes_every_column_of_optunas_trial_tables():
    # The bulk copy writes Optuna's private models directly. This fails when Optuna's schema
    # changes: check the bulk copy against the new tables, then update BULK_COPY_COLUMNS.
    from optuna.storages._rdb import models

    assert bulk_copy.schema_differences() == {}, f"Optuna {optuna.__version__} changed its trial tables"
    assert bulk_copy.bulk_copy_matches_schema()
    for name, written in bulk_copy.BULK_COPY_COLUMNS.items():
        columns = getattr(models, name).__table__.columns
        assert {c.name for c in columns if not c.primary_key} == written, name


def _same(a, b) -> bool:
    # NaN intermediate values are stored and read back as NaN: equal for this comparison.
    return a == b or repr(a) == repr(b)


def test_bulk_copy_equals_optunas_copy_study(tmp_path):
    mem = optuna.create_study(study_name="cmp/x/y/seed-0", direction="maximize")
    mem.set_user_attr("u", {"nested": [1, 2.5, None]})
    mem._storage.set_study_system_attr(mem._study_id, "s", "text")

    def objective(trial):
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        trial.suggest_float("y", 0.0, 1.0, step=0.25)
        c = trial.suggest_categorical("c", ["a", "b", 3, None])
        trial.suggest_int("n", 0, 12, step=3)
        trial.set_user_attr("cost", x)
        trial.set_user_attr("tags", {"c": str(c)})
        trial.storage.set_trial_system_attr(trial._trial_id, "sys", [trial.number])
        trial.report(float("nan") if trial.number == 2 else x, 1)
        trial.report(float("-inf") if trial.number == 3 else 2 * x, 12)
        if trial.number % 5 == 4:
            raise optuna.TrialPruned()
        if trial.number == 6:
            raise ValueError("a failing trial")
        return float("inf") if c == "b" else x

    mem.optimize(objective, n_trials=20, catch=(ValueError,))
    assert {t.state for t in mem.trials} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                             optuna.trial.TrialState.FAIL}
    bulk = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'bulk.db'}")
    ref = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'ref.db'}")
    bulk_copy._bulk_copy(mem, bulk)
    optuna.copy_study(from_study_name=mem.study_name, from_storage=mem._storage, to_storage=ref)

    a_id, b_id = bulk.get_study_id_from_name(mem.study_name), ref.get_study_id_from_name(mem.study_name)
    assert bulk.get_study_directions(a_id) == ref.get_study_directions(b_id)
    assert bulk.get_study_user_attrs(a_id) == ref.get_study_user_attrs(b_id) == {"u": {"nested": [1, 2.5, None]}}
    assert bulk.get_study_system_attrs(a_id) == ref.get_study_system_attrs(b_id)
    got, want = bulk.get_all_trials(a_id), ref.get_all_trials(b_id)
    assert len(got) == len(want) == 20
    fields = ("number", "state", "values", "datetime_start", "datetime_complete", "params",
              "distributions", "user_attrs", "system_attrs")
    for a, b in zip(got, want, strict=True):
        for field in fields:
            assert getattr(a, field) == getattr(b, field), (a.number, field)
        assert a.intermediate_values.keys() == b.intermediate_values.keys()
        assert all(_same(a.intermediate_values[k], b.intermediate_values[k]) for k in a.intermediate_values)
