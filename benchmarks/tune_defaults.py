"""Choose MFKDSampler's defaults on the tuning problems only: NB201 CIFAR-10 and Hartmann 6D.

Every variant is an ``MFKDSampler`` keyword set, run for the same seeds on

- ``nb201-cifar10``: the NB201 protocol on CIFAR-10 (one level: 12-epoch validation
  accuracy, each query charged 12 x the cell's seconds per epoch, 12,000 s), with
  isomorphic cells as one point (``point_key=cell_key``); metric: regret of the incumbent's
  200-epoch test accuracy against the best cell of the table, in points;
- ``hartmann6``: BoTorch's Hartmann 6D, 40 trials; metric: log10 simple regret.

Rows are appended to ``--out/runs.csv`` as runs finish (a rerun skips rows already there),
and ``--out/summary.md`` gets mean, standard error and a two-sided Mann-Whitney U p-value of
each variant against the first one. No other problem is used to choose defaults::

    OMP_NUM_THREADS=1 python benchmarks/tune_defaults.py --seeds 0-7 --jobs 2 \\
        --variant default='{}' --variant plain='{"robust": false}' --variant ucb='{"acquisition": "ucb"}'
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from scipy import stats

PROBLEMS = ("nb201-cifar10", "hartmann6")


def _run(problem: str, variant: str, kwargs: dict, seed: int) -> dict:
    import optuna
    import torch

    from optuna_mfkd import MaxCostCallback, MFKDSampler, best_high_fidelity_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    start = time.process_time()
    if problem == "hartmann6":
        from botorch.test_functions import Hartmann

        fn = Hartmann(dim=6)

        def objective(trial):
            x = torch.tensor([[trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)]])
            return float(fn(x))

        sampler = MFKDSampler(fidelities=["f"], seed=seed, **kwargs)
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective, n_trials=40)
        metric = math.log10(max(study.best_value - fn.optimal_value, 1e-12))
        trials = len(study.trials)
    else:
        from optuna_mfkd.bench.protocols import get_protocol
        from optuna_mfkd.nasbench201.space import cell_key
        from optuna_mfkd.nasbench201.table import load_table

        table = load_table(None)
        protocol = get_protocol("nb201")
        objective = protocol.objective(table, "cifar10", "mfkd-gpr")
        sampler = MFKDSampler(fidelities=[protocol.single_level], seed=seed, point_key=cell_key, **kwargs)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        budget = protocol.budget(table, "cifar10")
        study.optimize(objective, n_trials=5000, callbacks=[MaxCostCallback(budget)])
        best = best_high_fidelity_trial(study)
        metric = table.best_test_acc("cifar10") - float(best.user_attrs["test_acc_200ep"])
        trials = len(study.trials)
    return {
        "problem": problem,
        "variant": variant,
        "seed": seed,
        "metric": metric,
        "trials": trials,
        "cpu_s": round(time.process_time() - start, 1),
    }


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def summarise(rows: list[dict], variants: list[str]) -> str:
    lines = [
        "# MFKDSampler defaults: tuning problems only",
        "",
        "Metric: NB201 CIFAR-10 regret of the 200-epoch test accuracy (points); Hartmann 6D log10",
        "simple regret after 40 trials. Lower is better. p: two-sided Mann-Whitney U against the",
        f"first variant (`{variants[0]}`).",
        "",
    ]
    for problem in PROBLEMS:
        got = {v: [r["metric"] for r in rows if r["problem"] == problem and r["variant"] == v] for v in variants}
        if not any(got.values()):
            continue
        lines += [f"## {problem}", "", "| variant | n | mean | s.e. | CPU s/run | p vs first |", "|---|---|---|---|---|---|"]
        ref = got[variants[0]]
        for v in variants:
            x = got[v]
            if not x:
                continue
            cpu = np.mean([r["cpu_s"] for r in rows if r["problem"] == problem and r["variant"] == v])
            p = stats.mannwhitneyu(x, ref).pvalue if v != variants[0] and len(ref) and len(x) else float("nan")
            se = np.std(x, ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("nan")
            lines.append(f"| `{v}` | {len(x)} | {np.mean(x):.3f} | {se:.3f} | {cpu:.0f} | {p:.3g} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--variant", action="append", required=True, help="name=JSON keyword arguments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tune-defaults"))
    args = parser.parse_args()
    variants = {}
    for text in args.variant:
        name, _, spec = text.partition("=")
        variants[name] = json.loads(spec or "{}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    for r in rows:
        r["metric"], r["seed"], r["cpu_s"] = float(r["metric"]), int(r["seed"]), float(r["cpu_s"])
    done = {(r["problem"], r["variant"], r["seed"]) for r in rows}
    todo = [
        (p, v, variants[v], s)
        for s in _seeds(args.seeds)
        for p in args.problems
        for v in variants
        if (p, v, s) not in done
    ]
    fields = ["problem", "variant", "seed", "metric", "trials", "cpu_s"]
    with ProcessPoolExecutor(args.jobs) as pool, path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if not rows:
            writer.writeheader()
        futures = [pool.submit(_run, *job) for job in todo]
        for future in as_completed(futures):
            row = future.result()
            writer.writerow(row)
            fh.flush()
            rows.append(row)
            print(row, flush=True)
    (args.out / "summary.md").write_text(summarise(rows, list(variants)) + "\n")
    print(summarise(rows, list(variants)))


if __name__ == "__main__":
    main()
