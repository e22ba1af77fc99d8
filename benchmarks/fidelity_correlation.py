"""Rank correlation of one-epoch low fidelities with NB201's high fidelity (paper Table 1).

Reads the per-cell records of ``benchmarks/lowfi_pool.py`` (the same training runs serve the
pool and this study) and reports Kendall's tau-b (SciPy) of each loss's score against the
table's 12-epoch validation accuracy and 200-epoch test accuracy, with bootstrap intervals,
on the pool's evaluation cells (the tuning cells are excluded).

``--tune`` first trains the pool's tuning cells (at most 20) at every point of a small grid
of NST settings and learning rates (through the pool's evaluation cache, so nothing is
trained twice) and reports tau-b per setting on those cells only.

    python benchmarks/fidelity_correlation.py --pool benchmarks/results/kd-pool
    python benchmarks/fidelity_correlation.py --cache sqlite:///studies.db --out DIR  # any cached cells
    OMP_NUM_THREADS=1 python benchmarks/fidelity_correlation.py --tune --tune-cells 12 \\
        --grid-beta 12.5,25 --grid-lr 0.1 --grid-layers 2,3,5,8,9:5,8,9
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lowfi_pool import kendall_difference_with_ci, kendall_with_ci, pool_indices  # noqa: E402


def correlation_table(df, losses, n_boot: int = 2000) -> list[str]:

    wide = df.pivot_table(index="index", columns="loss", values="score")
    meta = df.drop_duplicates("index").set_index("index")[["val_acc_12ep", "test_acc_200ep"]]
    have = [x for x in losses if x in wide.columns]
    wide = wide[have].dropna().join(meta)
    lines = [f"Cells with every loss scored: {len(wide)}.", "",
             "| target | " + " | ".join(f"tau-b {x} [90% CI]" for x in have)
             + "".join(f" | {x} - ce [90% CI]" for x in have if x != "ce") + " |",
             "|---|" + "---|" * (len(have) + len([x for x in have if x != "ce"]))]
    for target in ("val_acc_12ep", "test_acc_200ep"):
        cells = []
        for loss in have:
            t, lo, hi = kendall_with_ci(wide[loss], wide[target], n_boot)
            cells.append(f"{t:+.3f} [{lo:+.2f}, {hi:+.2f}]")
        if "ce" in have:
            for loss in have:
                if loss == "ce":
                    continue
                d0, lo, hi = kendall_difference_with_ci(wide[loss], wide["ce"], wide[target], n_boot)
                cells.append(f"{d0:+.3f} [{lo:+.2f}, {hi:+.2f}]")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return lines


def cache_frame(url: str, table_path: str | None):
    """Every scored evaluation in an evaluation cache (e.g. a live hybrid benchmark's database)
    as pool-format rows (``index``, ``loss``, ``score``, settings, the table's accuracies)."""
    import pandas as pd

    from optuna_mfkd.nasbench201.space import Architecture
    from optuna_mfkd.nasbench201.table import load_table
    from optuna_mfkd.training.cache import EvaluationCache

    table = load_table(table_path)
    rows = []
    for e in EvaluationCache(url):
        if e.value is None:
            continue
        index = Architecture.from_str(e.arch).index
        st = e.settings
        rows.append({"index": index, "role": "eval", "loss": st["kd_loss"], "score": e.value,
                     "train_images": st.get("train_images"), "batch_size": st.get("batch_size"),
                     "epochs": st.get("epochs"), "lr": st.get("lr"),
                     "nst_beta": st.get("nst_beta") if st["kd_loss"] == "nst" else None,
                     "nst_layers": " ".join(map(str, st["nst_layers"])) if st["kd_loss"] == "nst" else None,
                     "val_acc_12ep": table.val_acc("cifar10", index, 12),
                     "test_acc_200ep": table.test_acc("cifar10", index, 200)})
    if not rows:
        raise ValueError(f"the evaluation cache at {url!r} holds no scored evaluation.")
    return pd.DataFrame(rows)


def tune(a) -> list[str]:
    """Grid over NST beta, layers and lr on the pool's tuning cells; tau-b per setting."""
    import torch
    from scipy.stats import kendalltau

    from optuna_mfkd.nasbench201.table import load_table
    from optuna_mfkd.training.cache import EvaluationCache
    from optuna_mfkd.training.objectives import CellEvaluator

    torch.set_num_threads(a.threads)
    table = load_table(a.table)
    cache = EvaluationCache(a.db or f"sqlite:///{(a.pool / 'lowfi_cache.db').resolve()}")
    ev = CellEvaluator("cifar10", a.data, teacher=a.teacher, cache=cache, progress=False)
    cells = pool_indices(a.pool_size, a.pool_seed)[: a.tune_cells]
    base = {"epochs": 1, "train_images": a.train_images, "eval_images": a.eval_images,
            "batch_size": a.batch_size}
    settings = []
    for lr in a.grid_lr:
        settings.append(("ce", {**base, "kd_loss": "ce", "lr": lr}))
        for beta, layers in itertools.product(a.grid_beta, a.grid_layers):
            settings.append((f"nst beta={beta} layers={layers}",
                             {**base, "kd_loss": "nst", "lr": lr, "nst_beta": beta, "nst_layers": layers}))
    target = np.array([table.val_acc("cifar10", i, 12) for i in cells])
    lines = [f"Tuning cells: pool positions 0..{a.tune_cells - 1} (indices {cells}).", "",
             "| setting | lr | tau-b vs 12-epoch val | mean score |", "|---|---|---|---|"]
    for name, s in settings:
        scores = []
        for i in cells:
            r = ev.train_and_score(table.arch_str(i), s, a.seed)
            scores.append(r["value"])
            print(name, s["lr"], i, f"{r['value']:.2f}", "cached" if r["cached"] else "", flush=True)
        tau = kendalltau(scores, target).statistic
        lines.append(f"| {name} | {s['lr']} | {tau:+.3f} | {np.mean(scores):.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=Path, default=Path("benchmarks/results/kd-pool"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/kd-correlation"))
    p.add_argument("--cache", default=None,
                   help="read the cells of this evaluation cache (database URL) instead of --pool's CSV")
    p.add_argument("--losses", type=lambda s: s.split(","), default=["ce", "kd", "nst"])
    p.add_argument("--tune", action="store_true")
    p.add_argument("--tune-cells", type=int, default=20)
    p.add_argument("--pool-size", type=int, default=200)
    p.add_argument("--pool-seed", type=int, default=0)
    p.add_argument("--grid-beta", type=lambda s: [float(x) for x in s.split(",")], default=[12.5, 25.0])
    p.add_argument("--grid-lr", type=lambda s: [float(x) for x in s.split(",")], default=[0.1])
    p.add_argument("--grid-layers", type=lambda s: [[int(x) for x in g.split(",")] for g in s.split(":")],
                   default=[[2, 3, 5, 8, 9]])
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--db", default=None)
    p.add_argument("--data", default=os.environ.get("MFKD_CIFAR10"))
    p.add_argument("--table", default=os.environ.get("NB201_TABLE"))
    p.add_argument("--teacher", default=None)
    a = p.parse_args(argv)
    if a.tune_cells > 20:
        p.error("--tune-cells: tune on at most 20 cells")

    import pandas as pd

    lines = ["# One-epoch low fidelity vs NB201's high fidelity (CIFAR-10, Kendall tau-b)", "",
             f"Command: `python benchmarks/fidelity_correlation.py {' '.join(shlex.quote(x) for x in argv)}`",
             "", "Paper Table 1 (CIFAR-10, one epoch over the 25k cifar10-valid training images): "
             "CE 0.17, NST 0.47.", ""]
    if a.tune:
        lines += ["## Tuning (pool tuning cells only)", ""] + tune(a) + [""]
    if a.cache:
        csv_path = a.cache
        df = cache_frame(a.cache, a.table)
    else:
        csv_path = a.pool / "pool.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path} not found: run benchmarks/lowfi_pool.py first.")
        df = pd.read_csv(csv_path)
    df = df[df["score"].notna()]
    settings = df[df.loss == "nst"][["train_images", "batch_size", "epochs", "lr", "nst_beta", "nst_layers"]]
    lines += ["## Evaluation cells (not used for tuning)" if not a.cache else "## Cells of the evaluation cache", "",
              f"Records: `{csv_path}` ({len(df)} rows); settings: "
              + (settings.drop_duplicates().to_dict("records").__repr__() if len(settings) else "-")
              + "; score = top-1 accuracy on a seeded subset of the cifar10-valid held-out half.", ""]
    prov = a.pool / "provenance.json"
    if not a.cache and prov.is_file():
        import json

        st = json.loads(prov.read_text()).get("settings", {})
        lines += [f"Hinton KD rows: tau {st.get('kd_tau')}, lambda {st.get('kd_lambda')} (weight of the "
                  "soft term); teacher outputs as for NST.", ""]
    if not a.tune and not a.cache:
        lines += [f"Tuning: none in this run (--tune trains a grid on the pool's tuning cells, "
                  f"positions 0-{a.tune_cells - 1}, which never enter the table below).", ""]
    lines += correlation_table(df[df.role == "eval"], a.losses)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "correlation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
