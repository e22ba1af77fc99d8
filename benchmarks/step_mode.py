"""The step (learning-curve) mode against Optuna's pruners on BoTorch's multi-fidelity
functions read as learning curves.

A run trains one configuration step by step: at step ``k`` of ``K`` it reports
``f(x, s = k / K)`` of BoTorch's ``AugmentedHartmann`` (6-D) or ``AugmentedBranin`` (2-D),
whose fidelity ``s`` plays the part of training progress; a trial that is not pruned returns
``f(x, 1)``. Every reported step costs 1; a run stops once the steps spent reach the budget
(``--budget`` full trainings' worth). The metric is the log10 simple regret of the best
final value at 25 / 50 / 100 % of the budget (minimisation).

Methods: ``mfkd+pruner`` (``MFKDSampler(steps=...)`` with ``MFKDPruner``), ``mfkd+hyperband``
(the same sampler with Optuna's ``HyperbandPruner``), ``tpe+hyperband`` (Optuna's BOHB),
``gp+hyperband`` and ``random+hyperband``. Finished runs are appended to ``--records``
(JSON lines) and skipped when the command runs again, so a long comparison continues::

    OMP_NUM_THREADS=1 python benchmarks/step_mode.py --seeds 0-9 --jobs 2 \\
        --records benchmarks/results/step-mode/runs.jsonl --out benchmarks/results/step-mode
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from scipy import stats  # noqa: E402

from optuna_mfkd.bench.runs import parse_seeds  # noqa: E402
from optuna_mfkd.bench.statistics import holm  # noqa: E402

STEPS = 9
RUNGS = (1, 3, 9)
PROBLEMS = {"augmented-hartmann": (6, -3.32237), "augmented-branin": (2, 0.397887)}
METHODS = ("mfkd+pruner", "mfkd+hyperband", "tpe+hyperband", "gp+hyperband", "random+hyperband")
FRACTIONS = (0.25, 0.5, 1.0)


def _function(problem: str):
    import torch
    from botorch.test_functions.multi_fidelity import AugmentedBranin, AugmentedHartmann

    f = AugmentedHartmann() if problem == "augmented-hartmann" else AugmentedBranin()
    bounds = f.bounds.numpy()

    def value(u: list[float], s: float) -> float:
        x = bounds[0, :-1] + np.asarray(u) * (bounds[1, :-1] - bounds[0, :-1])
        return float(f(torch.tensor([[*x, s]], dtype=torch.float64)))

    return value


def _study(method: str, seed: int) -> optuna.Study:
    from optuna_mfkd import MFKDPruner, MFKDSampler

    sampler_name, pruner_name = method.split("+")
    hyperband = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=STEPS, reduction_factor=3)
    if sampler_name == "mfkd":
        sampler = MFKDSampler(steps=list(RUNGS), seed=seed)
        pruner = MFKDPruner(sampler) if pruner_name == "pruner" else hyperband
    else:
        sampler = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
                   "random": optuna.samplers.RandomSampler}[sampler_name](seed=seed)
        pruner = hyperband
    return optuna.create_study(sampler=sampler, pruner=pruner)


def run(problem: str, method: str, seed: int, budget: float) -> dict:
    """One run: the best final value after each trial, with the steps spent so far."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dims, _ = PROBLEMS[problem]
    value = _function(problem)
    study = _study(method, seed)
    spent = 0
    trace = []

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        u = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dims)]
        y = math.inf
        for step in range(1, STEPS + 1):
            y = value(u, step / STEPS)
            spent += 1
            trial.report(y, step)
            if step < STEPS and trial.should_prune():
                raise optuna.TrialPruned()
        return y

    while spent < budget * STEPS:
        study.optimize(objective, n_trials=1)
        done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        trace.append([spent, min(done) if done else None])
    states = [t.state.name for t in study.trials]
    return {"problem": problem, "method": method, "seed": seed, "budget": budget, "trace": trace,
            "trials": len(states), "pruned": states.count("PRUNED")}


def _best_at(record: dict, fraction: float, optimum: float) -> float:
    limit = fraction * record["budget"] * STEPS
    best = [b for spent, b in record["trace"] if spent <= limit and b is not None]
    return math.log10(max(best[-1] - optimum, 1e-12)) if best else math.nan


def report(records: list[dict], out: Path, command: str) -> None:
    lines = ["# The step mode against Optuna's pruners (learning curves)", "", f"Command: `{command}`", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "log10 simple regret of the best final value (lower is better), mean over seeds; p: two-sided "
             "Mann-Whitney U against `mfkd+pruner` at the end of the budget, Holm-corrected over the methods.", ""]
    for problem, (_, optimum) in PROBLEMS.items():
        rows = {m: [r for r in records if r["problem"] == problem and r["method"] == m] for m in METHODS}
        if not any(rows.values()):
            continue
        ref = [_best_at(r, 1.0, optimum) for r in rows["mfkd+pruner"]]
        raw = {}
        for m in METHODS[1:]:
            other = [_best_at(r, 1.0, optimum) for r in rows[m]]
            raw[m] = stats.mannwhitneyu(ref, other).pvalue if len(ref) > 1 and len(other) > 1 else math.nan
        adjusted = dict(zip(raw, holm([1.0 if math.isnan(v) else v for v in raw.values()])))
        lines += [f"## {problem} (optimum {optimum})", "",
                  "| method | seeds | 25% | 50% | 100% | median 100% | trials | pruned | p_Holm vs mfkd+pruner |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            rs = rows[m]
            if not rs:
                continue
            at = [[_best_at(r, f, optimum) for r in rs] for f in FRACTIONS]
            p = "" if m == "mfkd+pruner" else f"{adjusted[m]:.3g}"
            lines.append(f"| `{m}` | {len(rs)} | " + " | ".join(f"{np.nanmean(a):.2f}" for a in at)
                         + f" | {np.nanmedian(at[-1]):.2f} | {np.mean([r['trials'] for r in rs]):.0f}"
                         + f" | {np.mean([r['pruned'] for r in rs]):.0f} | {p} |")
        lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=parse_seeds, default=list(range(10)))
    p.add_argument("--budget", type=float, default=30.0, help="full trainings' worth of steps (default: 30)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--records", type=Path, required=True, help="JSON lines of finished runs (appended)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    args = p.parse_args(argv)
    done = []
    if args.records.exists():
        done = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    have = {(r["problem"], r["method"], r["seed"]) for r in done}
    todo = [(pr, m, s) for s in args.seeds for pr in args.problems for m in args.methods if (pr, m, s) not in have]
    args.records.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for record in pool.map(run, *zip(*todo), [args.budget] * len(todo)) if todo else ():
            with args.records.open("a") as f:
                f.write(json.dumps(record) + "\n")
            done.append(record)
            print(json.dumps({k: record[k] for k in ("problem", "method", "seed", "trials", "pruned")}), flush=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/step_mode.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report(done, args.out, command)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
