"""The paper protocol end to end on a tiny pool with synthetic low-fidelity scores."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest

from optuna_mfkd.bench import harness, report
from optuna_mfkd.bench.protocols import LowFidelityPool, get_protocol
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
