"""The paper protocol end to end on a tiny pool with synthetic low-fidelity scores."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest

from optuna_mfkd.bench import harness, report
from optuna_mfkd.bench.protocols import LowFidelityPool, get_protocol
from optuna_mfkd.nasbench201.space import Architecture
from optuna_mfkd.nasbench201.table import load_table

POOL_CELLS = [11472, 6111, 0, 1, 2, 3, 4, 5]


@pytest.fixture
def pool_csv(tmp_path, nb201_table_path):
    table = load_table(nb201_table_path)
    rows = []
    for i in POOL_CELLS:
        for loss, score_shift, wall in (("ce", -30.0, 10.0), ("nst", -20.0, 13.0)):
            rows.append({"index": i, "loss": loss, "score": table.val_acc("cifar10", i) + score_shift,
                         "wall_seconds": wall, "epochs": 1, "train_images": 5000})
    path = tmp_path / "pool.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_pool_costs_and_bad_pool(pool_csv, tmp_path):
    pool = LowFidelityPool.from_csv(pool_csv)
    # 1 epoch x 5,000 / 25,000 images x measured NST/CE time ratio 1.3.
    assert pool.cost_epochs == pytest.approx({"nst": 0.2 * 1.3, "ce": 0.2})
    assert sorted(pool.scores["nst"]) == sorted(POOL_CELLS)
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
        meta = study.user_attrs[harness.META_ATTR]
        assert meta["low_fidelity"]["live"] and meta["low_fidelity"]["time_ratio_to_ce"] == ratio
    assert len(EvaluationCache(sqlite_url)) == 4  # every live evaluation is cached
    text = report.write_report(sqlite_url, tmp_path / "rep").read_text()
    assert "## nb201-live / cifar10" in text and "vs mfkd-nst" in text


def test_live_protocol_bad_input(tiny_live, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        get_protocol("nb201", pool=LowFidelityPool({"ce": {0: 1.0}}, {"ce": 1.0}), live=tiny_live)
    with pytest.raises(ValueError, match="'mf'"):
        get_protocol("mf", live=tiny_live)
    args = harness.build_parser().parse_args(["--live-low", "--data-root", str(tmp_path), "--time-ratio", "nst:2"])
    with pytest.raises(ValueError, match="--time-ratio"):
        harness.protocol_from_args(args)
