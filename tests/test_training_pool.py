"""The low-fidelity pool job resumes without recomputing finished cells."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark

from optuna_mfkd.distill.teacher import save_teacher
from optuna_mfkd.nasbench201.network import build_network
from optuna_mfkd.training.cache import EvaluationCache


def _load_pool_module():
    return load_benchmark("lowfi_pool")


@pytest.fixture
def setup(tmp_path, monkeypatch, nb201_table_path):
    from PIL import Image

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.zip"
    with zipfile.ZipFile(data, "w") as zf:
        for split, n in (("train", 12), ("test", 2)):
            for cls in ("a", "b"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
                    zf.writestr(f"d/{split}/{cls}/{i}.png", buf.getvalue())
    torch.manual_seed(0)
    teacher = save_teacher(build_network(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", 2),
        tmp_path / "teacher.pth")
    out = tmp_path / "pool"
    args = ["--out", str(out), "--data", str(data), "--table", str(nb201_table_path),
            "--teacher", str(teacher), "--pool-size", "3", "--tune-cells", "1",
            "--train-images", "8", "--eval-images", "6", "--batch-size", "4"]
    return _load_pool_module(), out, args


def _rows(out: Path) -> list[dict]:
    with open(out / "pool.csv") as f:
        return list(csv.DictReader(f))


def test_pool_resumes_where_it_stopped(setup) -> None:
    pool, out, args = setup
    pool.main([*args, "--limit", "2"])  # stopped mid-way: 2 of 6 (cell, loss) evaluations
    first = _rows(out)
    assert len(first) == 2
    cache = EvaluationCache(f"sqlite:///{out / 'lowfi_cache.db'}")
    stamps = {(e.arch, e.settings["kd_loss"]): e.created for e in cache}
    pool.main(args)
    rows = _rows(out)
    assert len(rows) == 6 and {r["loss"] for r in rows} == {"ce", "nst"}
    assert {r["role"] for r in rows} == {"tune", "eval"}
    again = {(e.arch, e.settings["kd_loss"]): e for e in cache}
    assert len(again) == 6
    for key, created in stamps.items():  # finished cells were not recomputed
        assert again[key].created == created
    by_key = {(r["index"], r["loss"]): r["score"] for r in rows}
    for r in first:
        assert by_key[(r["index"], r["loss"])] == r["score"]
    indices = [int(r["index"]) for r in rows]
    assert sorted(set(indices)) == sorted(pool.pool_indices(3, 0))


def test_pool_resumes_from_the_csv_alone(setup) -> None:
    pool, out, args = setup
    pool.main([*args, "--limit", "3"])
    (out / "lowfi_cache.db").unlink()  # e.g. a fresh checkout with only the committed CSV
    before = {(r["index"], r["loss"]): r["score"] for r in _rows(out)}
    pool.main([*args, "--limit", "0"])  # imports the CSV, trains nothing
    assert {(r["index"], r["loss"]): r["score"] for r in _rows(out)} == before
    pool.main([*args, "--report"])
    assert len(_rows(out)) == 6
    assert "tau-b" in (out / "summary.md").read_text()


def test_a_run_for_another_loss_keeps_the_rows_it_did_not_train(setup) -> None:
    pool, out, args = setup
    pool.main([*args, "--limit", "2"])  # ce and nst of the first evaluation cell
    before = {(r["index"], r["loss"]): r["score"] for r in _rows(out)}
    pool.main([*args, "--losses", "kd", "--limit", "1"])
    rows = {(r["index"], r["loss"]): r["score"] for r in _rows(out)}
    assert len(rows) == 3 and {loss for _, loss in rows} == {"ce", "nst", "kd"}
    assert {k: v for k, v in rows.items() if k[1] != "kd"} == before
    (out / "lowfi_cache.db").unlink()  # the CSV alone restores all three
    pool.main([*args, "--losses", "ce", "--limit", "0"])
    assert {(r["index"], r["loss"]): r["score"] for r in _rows(out)} == rows
    with pytest.raises(SystemExit):
        pool.main([*args, "--losses", "mse"])


def test_shards_split_the_cells_and_export_everything(setup) -> None:
    pool, out, args = setup
    pool.main([*args, "--shard", "1/2"])  # cells 2 and 0 of the eval-first order (1, 2, 0) -> 2 only
    rows = _rows(out)
    order = pool.pool_indices(3, 0)
    assert {int(r["index"]) for r in rows} == {order[2]} and len(rows) == 2
    pool.main([*args, "--shard", "0/2"])  # the other two cells; the CSV holds all three
    assert {int(r["index"]) for r in _rows(out)} == set(order) and len(_rows(out)) == 6
    with pytest.raises(SystemExit):
        pool.main([*args, "--shard", "2/2"])


def test_correlation_of_an_evaluation_cache_matches_scipy(nb201_table_path, tmp_path) -> None:
    from scipy.stats import kendalltau

    from optuna_mfkd.nasbench201.table import load_table

    corr = load_benchmark("fidelity_correlation")
    table = load_table(nb201_table_path)
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    cache = EvaluationCache(url)
    rng = np.random.default_rng(0)
    cells = [int(i) for i in rng.choice(15625, 12, replace=False)]
    scores = {}
    for i in cells:
        for loss, noise in (("ce", 8.0), ("nst", 2.0)):
            scores[(i, loss)] = table.val_acc("cifar10", i, 12) / 3 + rng.normal(0, noise)
            settings = {"kd_loss": loss, "epochs": 1, "train_images": 600, "batch_size": 64, "lr": 0.1}
            if loss == "nst":
                settings.update(nst_beta=12.5, nst_layers=[2, 3])
            cache.put(table.arch_str(i), settings, 0, scores[(i, loss)], 1.0)
    cache.put(table.arch_str(cells[0]), {"kd_loss": "kd", "epochs": 1}, 0, None, 1.0)  # diverged: skipped
    corr.main(["--cache", url, "--out", str(tmp_path / "out"), "--losses", "ce,nst",
               "--table", str(nb201_table_path)])
    text = (tmp_path / "out" / "correlation.md").read_text()
    assert "Cells with every loss scored: 12." in text
    val = [table.val_acc("cifar10", i, 12) for i in cells]
    test = [table.test_acc("cifar10", i, 200) for i in cells]
    for target, ref in (("val_acc_12ep", val), ("test_acc_200ep", test)):
        row = next(line for line in text.splitlines() if line.startswith(f"| {target}")).split("|")
        for col, loss in ((2, "ce"), (3, "nst")):
            tau = kendalltau([scores[(i, loss)] for i in cells], ref).statistic
            assert row[col].strip().startswith(f"{tau:+.3f}")
    with pytest.raises(ValueError, match="no scored evaluation"):
        corr.main(["--cache", f"sqlite:///{tmp_path / 'empty.db'}", "--out", str(tmp_path / "e"),
                   "--table", str(nb201_table_path)])


def test_report_top_half_rows_match_scipy(tmp_path) -> None:
    """The report's 'eval top 1/2' row: tau-b over the evaluation cells in the top half by 12-epoch val."""
    import json

    from scipy.stats import kendalltau

    pool = _load_pool_module()
    rng = np.random.default_rng(5)
    n = 24
    val = rng.permutation(np.linspace(60.0, 90.0, n))
    rows = []
    for i in range(n):
        for loss, noise in (("ce", 6.0), ("nst", 2.0)):
            rows.append({"position": i, "role": "tune" if i < 4 else "eval", "index": 100 + i, "loss": loss,
                         "score": val[i] / 3 + rng.normal(0, noise), "train_seconds": 1.0, "train_cpu_seconds": 1.0,
                         "val_acc_12ep": val[i], "test_acc_200ep": val[i] + rng.normal(0, 1)})
    out = tmp_path / "pool"
    out.mkdir()
    with open(out / "pool.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    settings = {"epochs": 1, "train_images": 8, "batch_size": 4, "lr": 0.1, "nst_beta": 12.5, "layers": [2],
                "channel_fraction": 1.0, "eval_images": 6, "seed": 0}
    (out / "provenance.json").write_text(json.dumps({
        "date": "d", "command": "c", "hardware": {"cpu": "x", "torch_threads": 1},
        "versions": {"torch": "t"}, "data": "synthetic", "settings": settings}))
    text = pool.report(out, ["ce", "nst"], n_boot=50)
    ev = [r for r in rows if r["role"] == "eval"]
    cut = np.quantile([r["val_acc_12ep"] for r in ev if r["loss"] == "ce"], 0.5)
    for loss, col in (("ce", 0), ("nst", 1)):
        top = [r for r in ev if r["loss"] == loss and r["val_acc_12ep"] >= cut]
        assert len(top) == 10
        tau = kendalltau([r["score"] for r in top], [r["val_acc_12ep"] for r in top]).statistic
        line = next(x for x in text.splitlines() if x.startswith("| eval top 1/2 | 10 | val_acc_12ep |"))
        assert line.split(" | ")[3 + col].startswith(f"{tau:+.3f}")
