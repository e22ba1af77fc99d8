"""The time of the step mode's decisions as a study grows: the sampler's step (a new point)
and the pruner's (one rung of one trial), per window of trials.

One long study of ``MFKDSampler(steps=rungs)`` + ``MFKDPruner`` on a learning-curve problem
(``benchmarks/step_mode.py``'s problems), one thread; every ``sample_relative`` and
``MFKDPruner.prune`` call is timed. The model sees at most ``MAX_PER_RUNG`` observations per
lower rung and refits its hyperparameters once the data grew by ``STEP_REFIT_GROWTH``, so the
times should level off once the lower rungs are full::

    OMP_NUM_THREADS=1 python benchmarks/step_mode_overhead.py --problem augmented-hartmann --trials 300 \\
        --out benchmarks/results/step-mode-overhead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import optuna  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_mode import make_problem  # noqa: E402

from optuna_mfkd import MFKDPruner, MFKDSampler  # noqa: E402
from optuna_mfkd.bench.curve_runs import CurveObjective  # noqa: E402
from optuna_mfkd.sampling.options import MAX_PER_RUNG, STEP_REFIT_GROWTH  # noqa: E402


def timed(method, sink: list[tuple[int, float]]):
    """``method`` wrapped so that each call appends ``(trial number, seconds)`` to ``sink``."""

    def wrapper(study, trial, *args):
        start = time.perf_counter()
        out = method(study, trial, *args)
        sink.append((trial.number, time.perf_counter() - start))
        return out

    return wrapper


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problem", default="augmented-hartmann")
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    problem = make_problem(args.problem)
    sampler = MFKDSampler(steps=list(problem.rungs), seed=args.seed)
    pruner = MFKDPruner(sampler)
    steps: list[tuple[int, float]] = []
    decisions: list[tuple[int, float]] = []
    sampler.sample_relative = timed(sampler.sample_relative, steps)
    pruner.prune = timed(pruner.prune, decisions)
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    objective = CurveObjective(problem, "mfkd+pruner")
    started = time.perf_counter()
    study.optimize(objective, n_trials=args.trials)
    wall = time.perf_counter() - started
    rows = []
    for lo in range(0, args.trials, args.window):
        s = [t for n, t in steps if lo <= n < lo + args.window]
        d = [
            t for n, t in decisions if lo <= n < lo + args.window and t > 1e-3
        ]  # rung decisions only
        rungs = sum(
            len([k for k in tr.intermediate_values if k in problem.rungs])
            for tr in study.trials[: lo + args.window]
        )
        rows.append(
            {
                "trials": f"{lo}-{lo + args.window - 1}",
                "step_median_s": float(np.median(s)) if s else None,
                "step_max_s": float(np.max(s)) if s else None,
                "decision_median_s": float(np.median(d)) if d else None,
                "decision_max_s": float(np.max(d)) if d else None,
                "rung_values_so_far": rungs,
            }
        )
    states = [t.state.name for t in study.trials]
    result = {
        "problem": args.problem,
        "trials": args.trials,
        "seed": args.seed,
        "wall_s": round(wall, 1),
        "pruned": states.count("PRUNED"),
        "max_per_rung": MAX_PER_RUNG,
        "refit_growth": STEP_REFIT_GROWTH,
        "machine": platform.processor() or platform.machine(),
        "windows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.problem}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Step-mode decision times: {args.problem}, {args.trials} trials (seed {args.seed})",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/step_mode_overhead.py {' '.join(argv or sys.argv[1:])}`",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"{states.count('PRUNED')} of {args.trials} trials pruned; {wall:.0f} s in all.",
        "",
        "| trials | sampler step, median s | max s | pruner decision, median s | max s | rung values so far |",
        "|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r['trials']} | {fmt(r['step_median_s'])} | {fmt(r['step_max_s'])} | "
            f"{fmt(r['decision_median_s'])} | {fmt(r['decision_max_s'])} | {r['rung_values_so_far']} |"
        )
    (args.out / f"{args.problem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
