"""Low-fidelity scores (CE, NST, optionally Hinton KD) for a fixed random pool of NB201 cells.

The pool is ``--pool-size`` distinct official indices drawn uniformly with NumPy's
``default_rng(--pool-seed)``; positions ``0 .. --tune-cells - 1`` are the tuning cells, the
rest the evaluation cells (processed first with ``--order eval-first``). Each (cell, loss) is
trained once through the evaluation cache (an SQLite file beside the results by default), so
an interrupted job resumes where it stopped without recomputing finished cells; the CSV is
re-exported from the cache after every evaluation, and rows of an existing CSV are loaded
into an empty cache on start (so the committed CSV alone is enough to resume).

Outputs in ``--out``: ``pool.csv`` (one row per cell and loss), ``provenance.json``
(command, hardware, date, versions, settings) and, with ``--report``, ``summary.md``
(Kendall tau-b against the table's 12-epoch validation and 200-epoch test accuracy, with
bootstrap intervals).

    OMP_NUM_THREADS=1 python benchmarks/lowfi_pool.py --out benchmarks/results/kd-pool
    python benchmarks/lowfi_pool.py --out benchmarks/results/kd-pool --report --no-run

``--shard K/N`` splits the cells between N processes sharing the cache (one per CPU core).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

FIELDS = [
    "position", "role", "index", "arch_str", "loss", "score", "wall_seconds", "train_seconds",
    "train_cpu_seconds",
    "images_per_second", "train_images", "eval_images", "batch_size", "epochs", "lr",
    "nst_beta", "nst_layers", "teacher", "seed", "val_acc_12ep", "test_acc_200ep",
    "seconds_per_epoch",
]

#: Losses a pool row may have; every one present in the cache is exported.
LOSSES = ("ce", "nst", "kd")


def pool_indices(size: int, seed: int, n: int = 15_625) -> list[int]:
    """``size`` distinct NB201 indices drawn uniformly (``numpy.random.default_rng(seed)``)."""
    return [int(i) for i in np.random.default_rng(seed).choice(n, size=size, replace=False)]


def settings_for(loss: str, a: argparse.Namespace) -> dict:
    s = {"kd_loss": loss, "epochs": a.epochs, "train_images": a.train_images,
         "eval_images": a.eval_images, "batch_size": a.batch_size, "lr": a.lr}
    if loss == "nst":
        s.update(nst_beta=a.nst_beta, nst_layers=a.layers, nst_channel_fraction=a.channel_fraction)
    if loss == "kd":
        s.update(kd_tau=a.kd_tau, kd_lambda=a.kd_lambda)
    return s


def provenance(a: argparse.Namespace, argv: list[str]) -> dict:
    import optuna
    import scipy
    import torch
    import torchvision

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python "
        + " ".join(shlex.quote(x) for x in argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "device": a.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "optuna": optuna.__version__},
        "settings": {k: v for k, v in vars(a).items() if k not in ("report", "no_run")},
        "data": "CIFAR-10 (JPEG zip), NB201 cifar10-valid split (seeded 25k/25k halves of the "
        "training images, split seed 1021); training on a seeded subset of the train half, "
        "scores = top-1 accuracy (%) on a seeded subset of the valid half",
    }


def export(a, evaluator, cache, pool, table, out_csv: Path) -> int:
    """Write every cached (cell, loss) of the pool to ``out_csv`` (all losses, not only this run's)."""
    rows = []
    for pos, index in enumerate(pool):
        arch = table.arch_str(index)
        for loss in LOSSES:
            s = settings_for(loss, a)
            hit = cache.get(arch, evaluator.cache_settings(s), a.seed)
            if hit is None:
                continue
            rows.append({
                "position": pos, "role": "tune" if pos < a.tune_cells else "eval", "index": index,
                "arch_str": arch, "loss": loss,
                "score": "" if hit.value is None else f"{hit.value:.4f}",
                "wall_seconds": f"{hit.seconds:.2f}",
                "train_seconds": f"{hit.extra.get('train_seconds', float('nan')):.2f}",
                "train_cpu_seconds": f"{hit.extra.get('cpu_seconds', float('nan')):.2f}",
                "images_per_second": f"{hit.extra.get('images_per_second', float('nan')):.1f}",
                "train_images": a.train_images, "eval_images": a.eval_images,
                "batch_size": a.batch_size, "epochs": a.epochs, "lr": a.lr,
                "nst_beta": a.nst_beta if loss == "nst" else "",
                "nst_layers": " ".join(map(str, a.layers)) if loss == "nst" else "",
                "teacher": evaluator.teacher_id() if loss != "ce" else "", "seed": a.seed,
                "val_acc_12ep": table.val_acc("cifar10", index, 12),
                "test_acc_200ep": table.test_acc("cifar10", index, 200),
                "seconds_per_epoch": table.seconds_per_epoch("cifar10", index),
            })
    tmp = out_csv.with_suffix(f".{os.getpid()}.tmp")  # shards export side by side
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out_csv)
    return len(rows)


def import_csv(a, evaluator, cache, out_csv: Path) -> int:
    """Load rows of an existing CSV into the cache (entries already there are kept)."""
    if not out_csv.is_file():
        return 0
    n = 0
    with open(out_csv) as f:
        for r in csv.DictReader(f):
            if r["loss"] not in LOSSES or int(r["train_images"]) != a.train_images:
                continue
            s = evaluator.cache_settings(settings_for(r["loss"], a))
            if cache.get(r["arch_str"], s, a.seed) is None:
                value = float(r["score"]) if r["score"] else None
                cache.put(r["arch_str"], s, a.seed, value, float(r["wall_seconds"]),
                          {"train_seconds": float(r["train_seconds"]),
                           "cpu_seconds": float(r.get("train_cpu_seconds") or "nan"),
                           "images_per_second": float(r["images_per_second"]), "imported": True})
                n += 1
    return n


def kendall_with_ci(x, y, n_boot: int = 2000, seed: int = 0, level: float = 0.90):
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    tau = kendalltau(x, y).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        boots.append(kendalltau(x[i], y[i]).statistic)
    lo, hi = np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(tau), float(lo), float(hi)


def kendall_difference_with_ci(x, c, y, n_boot: int = 2000, seed: int = 1, level: float = 0.90):
    """tau_b(x, y) - tau_b(c, y) with a paired bootstrap interval (cells resampled)."""
    from scipy.stats import kendalltau

    x, c, y = (np.asarray(v, float) for v in (x, c, y))
    d0 = kendalltau(x, y).statistic - kendalltau(c, y).statistic
    rng = np.random.default_rng(seed)
    ds = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        ds.append(kendalltau(x[i], y[i]).statistic - kendalltau(c[i], y[i]).statistic)
    lo, hi = np.nanquantile(ds, [(1 - level) / 2, (1 + level) / 2])
    return float(d0), float(lo), float(hi)


def report(out_dir: Path, losses: list[str], n_boot: int = 2000) -> str:
    import pandas as pd
    from scipy.stats import kendalltau

    df = pd.read_csv(out_dir / "pool.csv")
    df = df[df["score"].notna()]
    wide = df.pivot_table(index=["index", "role"], columns="loss", values="score").reset_index()
    meta = df.drop_duplicates("index").set_index("index")[["val_acc_12ep", "test_acc_200ep"]]
    wide = wide.join(meta, on="index")
    have = [loss for loss in losses if loss in wide.columns]
    wide = wide.dropna(subset=have)
    secs = df.pivot_table(index="index", columns="loss", values="train_seconds")
    cpu = df.dropna(subset=["train_cpu_seconds"]).pivot_table(index="index", columns="loss",
                                                               values="train_cpu_seconds")
    lines = ["# Low-fidelity pool: Kendall tau-b against the NB201 table (CIFAR-10)", ""]
    prov = json.loads((out_dir / "provenance.json").read_text())
    sittings = prov.get("sittings") or [prov]
    lines += ["Commands (one per sitting; the job resumes where the previous one stopped):", ""]
    lines += [f"- {x['date']}: `{x['command']}`" for x in sittings] + [""]
    lines += [
              f"Date {prov['date']}; {prov['hardware']['cpu']} "
              f"({prov['hardware']['torch_threads']} torch thread(s)); torch {prov['versions']['torch']}.",
              "", f"Data: {prov['data']}.", ""]
    st = prov["settings"]
    lines += [f"Settings: {st['epochs']} epoch(s) over {st['train_images']} images, batch "
              f"{st['batch_size']}, lr {st['lr']} (cosine to 0 per step), NST beta {st['nst_beta']} on "
              f"cells {st['layers']} (channel fraction {st['channel_fraction']}), teacher "
              f"{st.get('teacher') or 'shared NB201 ResNet-cell CIFAR-10 teacher'}, evaluation on "
              f"{st['eval_images']} images, training seed {st['seed']}; Hinton KD (rows with loss kd) "
              f"tau {st.get('kd_tau', 4.0)}, lambda {st.get('kd_lambda', 0.9)} (weight of the soft term).", ""]
    lines += ["tau-b with a bootstrap 90% interval (resampling cells, 2,000 draws); paper "
              "Table 1 (CIFAR-10, 1 epoch on 25k images): CE 0.17, NST 0.47. Rows 'eval top 1/2' "
              "and 'eval top 1/4': the evaluation cells whose 12-epoch validation accuracy is in the "
              "top half / quarter of the evaluation cells' (where a search spends its high-fidelity "
              "budget; a narrower range of the target lowers tau-b for every loss).", ""]
    lines += ["| cells | n | target | " + " | ".join(have) + " | " +
              " | ".join(f"{x} - ce" for x in have if x != "ce") + " |",
              "|" + "---|" * (3 + len(have) + len([x for x in have if x != "ce"]))]
    ev = wide[wide.role == "eval"]
    groups = [("eval", ev)]
    for name, q in (("eval top 1/2", 0.5), ("eval top 1/4", 0.75)):
        groups.append((name, ev[ev["val_acc_12ep"] >= ev["val_acc_12ep"].quantile(q)]))
    groups += [("tune", wide[wide.role == "tune"]), ("all", wide)]
    for name, g in groups:
        if len(g) < 5:
            continue
        for target in ("val_acc_12ep", "test_acc_200ep"):
            cells = []
            for loss in have:
                t, lo, hi = kendall_with_ci(g[loss], g[target], n_boot)
                cells.append(f"{t:+.3f} [{lo:+.2f}, {hi:+.2f}]")
            diffs = []
            for loss in have:
                if loss == "ce" or "ce" not in have:
                    continue
                d0, lo, hi = kendall_difference_with_ci(g[loss], g["ce"], g[target], n_boot)
                diffs.append(f"{d0:+.3f} [{lo:+.2f}, {hi:+.2f}]")
            lines.append(f"| {name} | {len(g)} | {target} | " + " | ".join(cells + diffs) + " |")
    lines += [""]
    if len(secs):
        lines += ["Mean training seconds per cell (one thread, teacher outputs cached for NST/KD): "
                  + ", ".join(f"{c} {secs[c].mean():.1f} s" for c in secs.columns)
                  + (f"; NST/CE time ratio over cells with both: "
                     f"{(secs['nst'] / secs['ce']).mean():.3f}" if {"nst", "ce"} <= set(secs.columns) else ""),
                  ""]
    for loss in [c for c in cpu.columns if c != "ce"]:
        if "ce" not in cpu.columns:
            break
        both = cpu[["ce", loss]].dropna()
        if len(both):
            r = both[loss] / both["ce"]
            lines += [f"Training CPU seconds (load-independent; {len(both)} cells with {loss} and ce): "
                      f"ce {both['ce'].mean():.1f} s, {loss} {both[loss].mean():.1f} s; {loss}/CE "
                      f"CPU-time ratio: mean {r.mean():.3f}, median {r.median():.3f}.", ""]
    lines += ["Wall seconds on this shared machine depend on the load of other jobs; CPU seconds do not.", ""]
    if len(wide) and have:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(have), figsize=(4 * len(have), 3.6), squeeze=False)
        for ax, loss in zip(axes[0], have, strict=True):
            for role, marker in (("eval", "o"), ("tune", "x")):
                g = wide[wide.role == role]
                ax.scatter(g["val_acc_12ep"], g[loss], marker=marker, s=18, label=f"{role} ({len(g)})")
            tau = kendalltau(wide[loss], wide["val_acc_12ep"]).statistic if len(wide) > 1 else float("nan")
            ax.set(title=f"{loss}: tau-b {tau:+.2f} (all cells)", xlabel="NB201 12-epoch val. acc. (%)",
                   ylabel="one-epoch score (%)")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "scatter.png", dpi=110)
        plt.close(fig)
        lines += ["![scores against the 12-epoch validation accuracy](scatter.png)", ""]
    text = "\n".join(lines)
    (out_dir / "summary.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/kd-pool"))
    p.add_argument("--db", default=None, help="cache URL (default sqlite:///OUT/lowfi_cache.db)")
    p.add_argument("--data", default=os.environ.get("MFKD_CIFAR10"))
    p.add_argument("--table", default=os.environ.get("NB201_TABLE"))
    p.add_argument("--teacher", default=None, help="teacher checkpoint (default $MFKD_TEACHERS)")
    p.add_argument("--pool-size", type=int, default=200)
    p.add_argument("--pool-seed", type=int, default=0)
    p.add_argument("--tune-cells", type=int, default=20)
    p.add_argument("--order", choices=["eval-first", "pool"], default="eval-first")
    p.add_argument("--losses", type=lambda s: s.split(","), default=["ce", "nst"])
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--nst-beta", type=float, default=12.5)
    p.add_argument("--layers", type=lambda s: [int(x) for x in s.split(",")], default=[2, 3, 5, 8, 9])
    p.add_argument("--channel-fraction", type=float, default=1.0)
    p.add_argument("--kd-tau", type=float, default=4.0)
    p.add_argument("--kd-lambda", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="stop after this many new evaluations")
    p.add_argument("--shard", default="0/1", help="K/N: this process takes every N-th cell of the order, "
                   "starting at the K-th (N processes share one cache)")
    p.add_argument("--report", action="store_true")
    p.add_argument("--no-run", action="store_true")
    a = p.parse_args(argv)
    unknown = [x for x in a.losses if x not in LOSSES]
    if unknown:
        p.error(f"--losses: unknown {unknown}; choose from {list(LOSSES)}")
    try:
        shard_k, shard_n = (int(x) for x in a.shard.split("/"))
        if not 0 <= shard_k < shard_n:
            raise ValueError
    except ValueError:
        p.error(f"--shard {a.shard!r}: expected K/N with 0 <= K < N, e.g. 1/2")

    import torch

    from optuna_mfkd.nasbench201.table import load_table
    from optuna_mfkd.training.cache import EvaluationCache
    from optuna_mfkd.training.objectives import CellEvaluator

    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    out_csv = a.out / "pool.csv"
    if not a.no_run:
        table = load_table(a.table)
        cache = EvaluationCache(a.db or f"sqlite:///{(a.out / 'lowfi_cache.db').resolve()}")
        evaluator = CellEvaluator("cifar10", a.data, teacher=a.teacher, cache=cache,
                                         device=a.device, progress=False)
        prov_path = a.out / "provenance.json"
        prov = provenance(a, ["benchmarks/lowfi_pool.py", *argv])
        history = []
        if prov_path.is_file():  # keep one entry per sitting
            old = json.loads(prov_path.read_text())
            history = old.get("sittings", [{k: old.get(k) for k in ("date", "command", "hardware")}])
        rows_before = sum(1 for _ in open(out_csv)) - 1 if out_csv.is_file() else 0
        prov["sittings"] = [*history, {"date": prov["date"], "command": prov["command"],
                                       "hardware": prov["hardware"], "rows_before": rows_before}]
        prov_path.write_text(json.dumps(prov, indent=1, default=str) + "\n")
        print(f"imported {import_csv(a, evaluator, cache, out_csv)} rows from {out_csv}", flush=True)
        pool = pool_indices(a.pool_size, a.pool_seed)
        order = list(range(len(pool)))
        if a.order == "eval-first":
            order = order[a.tune_cells:] + order[: a.tune_cells]
        order = order[shard_k::shard_n]
        done = 0
        for pos in order:
            arch = table.arch_str(pool[pos])
            for loss in a.losses:
                s = settings_for(loss, a)
                if cache.get(arch, evaluator.cache_settings(s), a.seed) is not None:
                    continue
                if a.limit is not None and done >= a.limit:
                    break
                t0 = time.time()
                try:
                    r = evaluator.train_and_score(arch, s, a.seed)
                    msg = f"{r['value']:.2f}% in {r['seconds']:.1f}s ({r['images_per_second']:.0f} img/s)"
                except Exception as exc:  # divergence is cached as a failure
                    msg = f"failed: {exc}"
                done += 1
                n = export(a, evaluator, cache, pool, table, out_csv)
                print(f"[{time.strftime('%H:%M:%S')}] pos {pos} idx {pool[pos]} {loss}: {msg} "
                      f"({time.time() - t0:.0f}s; {n} rows)", flush=True)
        export(a, evaluator, cache, pool, table, out_csv)
    if a.report:
        print(report(a.out, a.losses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
