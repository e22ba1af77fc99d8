"""One live run per method against its replay from the table: the same trials, the same values.

For each method, ``step_mode.py``'s run is made twice with the same seed and budget: once on
the table (``TableCurve``) and once training every configuration for real
(``curve_live.live_problem``: each epoch trained once, resumed, never retrained). The replay
matches when both runs made the same trials, in the same order, with the same parameters,
states, reported values and costs::

    OMP_NUM_THREADS=1 python benchmarks/curve_replay_check.py --problem mlp-digits --budget 4 \\
        --out benchmarks/results/curve-tables/replay-check-mlp-digits.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna  # noqa: E402
from curve_live import live_problem  # noqa: E402
from step_mode import METHODS, make_problem  # noqa: E402

from optuna_mfkd.bench.curve_runs import CurveObjective, build_study, check_method  # noqa: E402


def trials_of(problem, method: str, seed: int, budget: float) -> tuple[list[tuple], float]:
    """The run's trials as ``(params, state, intermediate values, cost)`` and its wall seconds."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = build_study(problem, method, seed)
    objective = CurveObjective(problem, method)
    started = time.perf_counter()
    while objective.spent < budget * problem.final_step:
        study.optimize(objective, n_trials=1)
    seconds = time.perf_counter() - started
    rows = [
        (
            tuple(sorted(t.params.items())),
            t.state.name,
            tuple(sorted(t.intermediate_values.items())),
            t.user_attrs.get("cost"),
        )
        for t in study.trials
    ]
    return rows, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problem", default="mlp-digits", choices=["mlp-digits", "torch-mlp"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), type=check_method)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=4.0, help="full trainings (default: 4)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    lines = [
        f"# Live runs against their replays: {args.problem}",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/curve_replay_check.py {' '.join(argv or sys.argv[1:])}`",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "| method | trials | pruned | epochs trained live | same trials and values | live s | replay s |",
        "|---|---|---|---|---|---|---|",
    ]
    all_same = True
    for method in args.methods:
        replay, replay_s = trials_of(make_problem(args.problem), method, args.seed, args.budget)
        live = live_problem(args.problem)
        played, live_s = trials_of(live, method, args.seed, args.budget)
        same = played == replay
        all_same &= same
        epochs = sum(live.epochs_trained(dict(params)) for params in {r[0] for r in played})
        lines.append(
            f"| `{method}` | {len(played)} | {sum(r[1] == 'PRUNED' for r in played)} | {epochs} | "
            f"{'yes' if same else 'NO'} | {live_s:.1f} | {replay_s:.1f} |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    return 0 if all_same else 1


if __name__ == "__main__":
    raise SystemExit(main())
