"""The paper protocol end to end on a tiny pool with synthetic low-fidelity scores."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest

from optuna_mfkd.bench import harness, report
from optuna_mfkd.bench.protocols import LowFidelityPool, get_protocol
from optuna_mfkd.bench.results import load_runs
from optuna_mfkd.bench.runs import META_ATTR, as_storage, finished_studies
from optuna_mfkd.cli import benchmark as benchmark_cli
from optuna_mfkd.nasbench201.space import Architecture
from optuna_mfkd.nasbench201.table import load_table

POOL_CELLS = [11472, 6111, 0, 1, 2, 3, 4, 5]
KD_CELLS = POOL_CELLS[:5]  # Hinton KD scores for part of the pool only


@pytest.fixture
def pool_csv(tmp_path, nb201_table_path):
    table = load_table(nb201_table_path)
    rows = []
    for i in POOL_CELLS:
        for loss, score_shift, wall in (("ce", -30.0, 10.0), ("nst", -20.0, 13.0), ("kd", -25.0, 11.0)):
            if loss == "kd" and i not in KD_CELLS:
                continue
            rows.append({"index": i, "loss": loss, "score": table.val_acc("cifar10", i) + score_shift,
                         "wall_seconds": wall, "epochs": 1, "train_images": 5000})
    path = tmp_path / "pool.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_pool_costs_and_bad_pool(pool_csv, tmp_path):
    pool = LowFidelityPool.from_csv(pool_csv)
    # 1 epoch x 5,000 / 25,000 images x measured time ratio to CE (NST 1.3, KD 1.1).
    assert pool.cost_epochs == pytest.approx({"nst": 0.2 * 1.3, "ce": 0.2, "kd": 0.2 * 1.1})
    assert sorted(pool.scores["nst"]) == sorted(POOL_CELLS)
    assert sorted(pool.scores["kd"]) == sorted(KD_CELLS)
    assert {"mfkd-nst", "mfkd-ce", "mfkd-kd"} <= set(get_protocol("nb201", pool).methods)
    # Only the losses asked for: without KD scores, mfkd-kd is not part of the protocol.
    no_kd = get_protocol("nb201", LowFidelityPool.from_csv(pool_csv, losses=["nst", "ce"]))
    assert "mfkd-kd" not in no_kd.methods
    with pytest.raises(ValueError, match="not part of protocol"):
        no_kd.check("mfkd-kd", "cifar10")
    with pytest.raises(ValueError, match="no rows with loss 'hinton'"):
        LowFidelityPool.from_csv(pool_csv, losses=["kd", "hinton"])
    unknown = tmp_path / "unknown.csv"
    pd.read_csv(pool_csv).assign(loss="mse").to_csv(unknown, index=False)
    with pytest.raises(ValueError, match="no rows with a known loss"):
        LowFidelityPool.from_csv(unknown)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"index": [0], "score": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="lacks columns"):
        LowFidelityPool.from_csv(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        LowFidelityPool.from_csv(tmp_path / "missing.csv")


def test_paper_protocol_end_to_end(pool_csv, nb201_table_path, sqlite_url, tmp_path):
    pool = LowFidelityPool.from_csv(pool_csv)
    protocol = dataclasses.replace(
        get_protocol("nb201", pool), name="paper-tiny", budgets={"cifar10": 1500.0}, n_warmup_low=4, n_warmup_high=3
    )
    assert {"mfkd-nst", "mfkd-ce"} <= set(protocol.methods)
    res = harness.run_benchmark(sqlite_url, protocol, ["cifar10"], ["mfkd-nst", "random"], [0],
                                table_path=str(nb201_table_path), progress=False)
    assert not any("error" in r for r in res)
    table = load_table(nb201_table_path)
    study = optuna.load_study(study_name="paper-tiny/cifar10/mfkd-nst/seed-0", storage=sqlite_url)
    low = [t for t in study.trials if t.user_attrs["fidelity"] == "nst"]
    high = [t for t in study.trials if t.user_attrs["fidelity"] == "12ep"]
    assert [t.number for t in low] == [0, 1, 2, 3]  # the enqueued warm-up comes first
    for t in low:
        index = t.user_attrs["nb201_index"]
        assert index in POOL_CELLS
        assert t.value == pytest.approx(table.val_acc("cifar10", index) - 20.0)
        assert t.user_attrs["cost"] == pytest.approx(0.26 * table.seconds_per_epoch("cifar10", index))
    assert len(high) >= 3
    for t in high:
        assert t.value == table.val_acc("cifar10", t.user_attrs["nb201_index"], 12)
    out = report.write_report(sqlite_url, tmp_path / "rep")
    text = out.read_text()
    assert "## paper-tiny / cifar10" in text and "vs mfkd-nst" in text
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv").set_index("method")
    best_high = max(high, key=lambda t: (t.value, -t.number))
    assert runs.loc["mfkd-nst", "final_test_acc"] == pytest.approx(best_high.user_attrs["test_acc_200ep"])


def test_kd_pool_method_and_report_over_two_storages(pool_csv, nb201_table_path, tmp_path):
    """mfkd-kd reads the KD scores; a report pools the baselines' and the MF runs' databases."""
    pool = LowFidelityPool.from_csv(pool_csv)
    protocol = dataclasses.replace(
        get_protocol("nb201", pool), name="paper-tiny", budgets={"cifar10": 1500.0}, n_warmup_low=4, n_warmup_high=3
    )
    base, multi = f"sqlite:///{tmp_path / 'base.db'}", f"sqlite:///{tmp_path / 'n1-4.db'}"
    for url, methods in ((base, ["random"]), (multi, ["mfkd-kd"])):
        res = harness.run_benchmark(url, protocol, ["cifar10"], methods, [0, 1],
                                    table_path=str(nb201_table_path), progress=False)
        assert not any("error" in r for r in res), res
    table = load_table(nb201_table_path)
    study = optuna.load_study(study_name="paper-tiny/cifar10/mfkd-kd/seed-1", storage=multi)
    low = [t for t in study.trials if t.user_attrs["fidelity"] == "kd"]
    assert len(low) == 4 and {t.user_attrs["nb201_index"] for t in low} <= set(KD_CELLS)
    for t in low:
        index = t.user_attrs["nb201_index"]
        assert t.value == pytest.approx(table.val_acc("cifar10", index) - 25.0)
        assert t.user_attrs["cost"] == pytest.approx(0.22 * table.seconds_per_epoch("cifar10", index))
    assert study.user_attrs[META_ATTR]["pool_cells"] == len(KD_CELLS)

    readme = report.write_report([base, multi], tmp_path / "rep")
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert sorted(zip(runs["method"], runs["seed"])) == [("mfkd-kd", 0), ("mfkd-kd", 1), ("random", 0), ("random", 1)]
    assert "vs mfkd-kd" in readme.read_text()
    with pytest.raises(ValueError, match="finished in both"):
        load_runs([base, multi, base])
    # A warm-up larger than the KD scores is refused before anything is stored.
    big = dataclasses.replace(protocol, n_warmup_low=len(KD_CELLS) + 1)
    res = harness.run_benchmark(multi, big, ["cifar10"], ["mfkd-kd"], [7], table_path=str(nb201_table_path), progress=False)
    assert "fewer than n_warmup_low" in res[0]["error"]
    assert "paper-tiny/cifar10/mfkd-kd/seed-7" not in finished_studies(as_storage(multi))


def test_cost_aware_replay_queries_the_low_level_on_the_pool_only(pool_csv, nb201_table_path, sqlite_url):
    """mfkd-nst-ca: MFKDSampler's defaults, the NST score on the pool's cells only (its own
    warm-up, no enqueued cells), the high level anywhere; mfkd-gpr-ca: the high level alone."""
    from optuna_mfkd.nasbench201.space import cell_key

    pool = LowFidelityPool.from_csv(pool_csv)
    protocol = dataclasses.replace(get_protocol("nb201", pool), name="paper-tiny", budgets={"cifar10": 3000.0})
    assert {"mfkd-nst-ca", "mfkd-ce-ca", "mfkd-kd-ca", "mfkd-gpr-ca"} <= set(protocol.extra_methods)
    assert protocol.warmup_queue("mfkd-nst-ca", 0) == []
    res = harness.run_benchmark(sqlite_url, protocol, ["cifar10"], ["mfkd-nst-ca", "mfkd-gpr-ca"], [0],
                                table_path=str(nb201_table_path), progress=False)
    assert not any("error" in r for r in res), res
    table = load_table(nb201_table_path)
    study = optuna.load_study(study_name="paper-tiny/cifar10/mfkd-nst-ca/seed-0", storage=sqlite_url)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    low = [t for t in study.trials if t.user_attrs["fidelity"] == "nst"]
    high = [t for t in study.trials if t.user_attrs["fidelity"] == "12ep"]
    pool_keys = {cell_key(Architecture.from_index(i).params) for i in POOL_CELLS}
    # the warm-up takes each distinct pool cell once at the low level, and no cell outside it
    assert {t.user_attrs["nb201_index"] for t in low} <= set(POOL_CELLS)
    assert {cell_key(t.params) for t in low} == pool_keys and len(low) == len(pool_keys)
    for t in low:
        assert t.value == pytest.approx(table.val_acc("cifar10", t.user_attrs["nb201_index"]) - 20.0)
    assert len(high) >= 5 and any(t.user_attrs["nb201_index"] not in POOL_CELLS for t in high)
    single = optuna.load_study(study_name="paper-tiny/cifar10/mfkd-gpr-ca/seed-0", storage=sqlite_url)
    assert {t.user_attrs["fidelity"] for t in single.trials} == {"12ep"}
    with pytest.raises(ValueError, match="not part of protocol"):  # without a pool it does not exist
        get_protocol("nb201").check("mfkd-nst-ca", "cifar10")


@pytest.fixture
def tiny_live(tmp_path, monkeypatch, sqlite_url):
    """A live low fidelity on a 3-class zip of random 8x8 images, with an untrained teacher."""
    import torch
    from conftest import write_image_zip

    from optuna_mfkd.bench.protocols import LiveLowFidelity
    from optuna_mfkd.distill.teacher import save_teacher
    from optuna_mfkd.nasbench201.network import build_network

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    data = write_image_zip(tmp_path / "tiny.zip", "cifar10", 8)  # 48 training images -> 24 / 24
    torch.manual_seed(0)
    teacher = save_teacher(build_network(Architecture.from_index(0).arch_str, 3), tmp_path / "teacher.pth")
    settings = {"epochs": 1, "train_images": 12, "eval_images": 16, "batch_size": 8}
    return LiveLowFidelity(str(data), settings, sqlite_url, {"ce": 1.0, "nst": 1.5}, teacher=str(teacher))


def test_live_protocol_end_to_end(tiny_live, nb201_table_path, sqlite_url, tmp_path):
    from optuna_mfkd.training.cache import EvaluationCache

    protocol = dataclasses.replace(
        get_protocol("nb201", live=tiny_live), budgets={"cifar10": 1200.0}, n_warmup_low=2, n_warmup_high=2
    )
    assert protocol.name == "nb201-live" and {"mfkd-nst", "mfkd-ce"} <= set(protocol.methods)
    res = harness.run_benchmark(sqlite_url, protocol, ["cifar10"], ["mfkd-nst", "mfkd-ce", "random"], [0],
                                table_path=str(nb201_table_path), progress=False)
    assert not any("error" in r for r in res), res
    table = load_table(nb201_table_path)
    for loss, ratio in (("nst", 1.5), ("ce", 1.0)):
        study = optuna.load_study(study_name=f"nb201-live/cifar10/mfkd-{loss}/seed-0", storage=sqlite_url)
        low = [t for t in study.trials if t.user_attrs["fidelity"] == loss]
        high = [t for t in study.trials if t.user_attrs["fidelity"] == "12ep"]
        assert len(low) == 2 and len(high) >= 2
        for t in low:  # trained live: a score of 16 images, charged 1 epoch x 12/24 x ratio
            index = t.user_attrs["nb201_index"]
            assert t.user_attrs["kd_loss"] == loss and not t.user_attrs["cached"]
            assert 0.0 <= t.value <= 100.0 and (t.value * 16 / 100) == pytest.approx(round(t.value * 16 / 100))
            assert t.user_attrs["cost"] == pytest.approx(0.5 * table.seconds_per_epoch("cifar10", index) * ratio)
        for t in high:
            assert t.value == table.val_acc("cifar10", t.user_attrs["nb201_index"], 12)
        meta = study.user_attrs[META_ATTR]
        assert meta["low_fidelity"]["live"] and meta["low_fidelity"]["time_ratio_to_ce"] == ratio
    assert len(EvaluationCache(sqlite_url)) == 4  # every live evaluation is cached
    text = report.write_report(sqlite_url, tmp_path / "rep").read_text()
    assert "## nb201-live / cifar10" in text and "vs mfkd-nst" in text


def test_live_protocol_bad_input(tiny_live, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        get_protocol("nb201", pool=LowFidelityPool({"ce": {0: 1.0}}, {"ce": 1.0}), live=tiny_live)
    with pytest.raises(ValueError, match="'mf'"):
        get_protocol("mf", live=tiny_live)
    args = benchmark_cli.build_parser().parse_args(["--live-low", "--data-root", str(tmp_path), "--time-ratio", "nst:2"])
    with pytest.raises(ValueError, match="--time-ratio"):
        benchmark_cli.protocol_from_args(args)


def test_three_level_protocol_mf3(pool_csv, nb201_table_path, sqlite_url, tmp_path, monkeypatch):
    """mf3: the pool's NST score -> 12 -> 200 epochs; multi-level methods use all three levels
    (NST on the pool's cells only), single-level ones the 200-epoch level."""
    from optuna_mfkd.bench import catalog
    from optuna_mfkd.nasbench201.tabular import ScoreLevel

    with pytest.raises(ValueError, match="needs a low-fidelity pool"):
        get_protocol("mf3")
    monkeypatch.setenv("MFKD_POOL", str(tmp_path / "absent.csv"))
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        catalog.make_problem("mf3/cifar10", str(nb201_table_path))
    problem = catalog.make_problem("mf3/cifar10", str(nb201_table_path), pool_path=pool_csv)
    protocol = problem.protocol
    assert protocol.pool_level == "nst" and problem.budget() == get_protocol("mf").budget(problem.table(), "cifar10")
    with pytest.raises(ValueError, match="pool's scores are for cifar10"):
        protocol.check("mfkd", "cifar100")
    table = problem.table()
    levels = protocol.objective(table, "cifar10", "mfkd").levels
    assert list(levels) == ["nst", "12ep", "200ep"] and isinstance(levels["nst"], ScoreLevel)
    assert protocol.objective(table, "cifar10", "gp").default_level == "200ep"
    assert protocol.context("mfkd").levels == ("nst", "12ep", "200ep")
    assert protocol.context("gp").levels == ("12ep", "200ep")  # single-level methods: the top level only
    small = dataclasses.replace(problem, protocol=dataclasses.replace(protocol, budget_median_top_evals=6.0))
    res = harness.run_specs(sqlite_url, [harness.RunSpec(small, "mfkd", 0), harness.RunSpec(small, "gp", 0)],
                            progress=False)
    assert not any("error" in r for r in res), res
    study = optuna.load_study(study_name="mf3/cifar10/mfkd/seed-0", storage=sqlite_url)
    by_level = {lv: [t for t in study.trials if t.user_attrs["fidelity"] == lv] for lv in ("nst", "12ep", "200ep")}
    assert all(by_level.values()), {k: len(v) for k, v in by_level.items()}
    assert {t.user_attrs["nb201_index"] for t in by_level["nst"]} <= set(POOL_CELLS)
    for t in by_level["nst"]:
        assert t.value == pytest.approx(table.val_acc("cifar10", t.user_attrs["nb201_index"]) - 20.0)
    assert study.user_attrs[META_ATTR]["pool_cells"] == len(POOL_CELLS)
    gp = optuna.load_study(study_name="mf3/cifar10/gp/seed-0", storage=sqlite_url)
    assert {t.user_attrs.get("fidelity", "200ep") for t in gp.trials} == {"200ep"}
