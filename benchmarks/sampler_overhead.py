"""Seconds per ask -> tell step of MFKDSampler against Optuna's GPSampler and TPESampler.

All samplers see the same history on the NAS-Bench-201 space (six categorical edges,
15,625 cells; MFKDSampler with its defaults scores one cell per isomorphism class, with the
paper's settings 5,000 random cells) at each history size, and the time of
``steps`` consecutive ask/tell steps is measured, model fits included, the samplers taking
turns step by step. The first step of a new sampler (fit from scratch, one-time tables) is
reported apart from the median of the later ones (warm-started, as in a running study). Threads are pinned alike
(run with ``OMP_NUM_THREADS=1``). History values are the 12-epoch CIFAR-10 validation
accuracies of ``NB201_TABLE`` (the two-level variant splits the history half and half
between a low level, whose values are half the table value plus noise, and the high level).

    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py --out benchmarks/results/sampler-overhead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import torch

from optuna_mfkd import MFKDSampler
from optuna_mfkd.nasbench201.space import (
    EDGE_PARAM_NAMES,
    NUM_ARCHS,
    Architecture,
    cell_key,
    suggest_architecture,
)
from optuna_mfkd.nasbench201.table import load_table
from optuna_mfkd.sampler import PAPER_SETTINGS

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "MFKDSampler (1 level, defaults, cell_key)": lambda seed: MFKDSampler(
        fidelities=["high"], n_warmup={"high": 0}, seed=seed, point_key=cell_key
    ),
    "MFKDSampler (2 levels, defaults, cell_key)": lambda seed: MFKDSampler(
        fidelities=["low", "high"], n_warmup={"low": 0, "high": 0}, seed=seed, point_key=cell_key
    ),
    "MFKDSampler (1 level, paper settings)": lambda seed: MFKDSampler(
        fidelities=["high"], n_warmup={"high": 0}, seed=seed, **PAPER_SETTINGS
    ),
    "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "TPESampler": lambda seed: optuna.samplers.TPESampler(seed=seed),
}


def _history(n: int, two_level: bool, seed: int, values: np.ndarray) -> list[optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(seed)
    dists = {name: optuna.distributions.CategoricalDistribution(
        ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")) for name in EDGE_PARAM_NAMES}
    trials = []
    levels = ["high"] * n if not two_level else ["low"] * (n // 2) + ["high"] * (n - n // 2)
    for level in levels:
        arch = Architecture.from_index(int(rng.integers(NUM_ARCHS)))
        value = float(values[arch.index])
        attrs = {}
        if two_level:
            attrs = {"fidelity": level, "fidelity_level": 0 if level == "low" else 1}
            if level == "low":
                value = 0.5 * value + float(rng.normal(0, 2.0))
        trials.append(
            optuna.trial.create_trial(params=arch.params, distributions=dists, value=value, user_attrs=attrs)
        )
    return trials


def _study(name: str, n: int, seed: int, values: np.ndarray) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=SAMPLERS[name](seed))
    two_level = "2 levels" in name
    if two_level:
        study._storage.set_study_system_attr(study._study_id, "mfkd:fidelities", ["low", "high"])
    study.add_trials(_history(n, two_level, seed, values))
    return study


def _step(study: optuna.Study, values: np.ndarray) -> float:
    """Seconds of one ask -> tell step (the objective is a table lookup)."""
    start = time.perf_counter()
    trial = study.ask()
    arch = suggest_architecture(trial)
    study.tell(trial, float(values[arch.index]))
    return time.perf_counter() - start


def _time_steps(names: list[str], n: int, steps: int, seed: int, values: np.ndarray) -> dict[str, list[float]]:
    """Step times of each sampler on the same history, the samplers taking turns step by
    step, so that a change of the machine's load falls on all of them alike."""
    studies = {name: _study(name, n, seed, values) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(steps):
        for name in names:
            times[name].append(_step(studies[name], values))
    return times


def _greenlet() -> str:
    try:
        import greenlet
    except ImportError:
        return "not installed (GPSampler optimises its restarts one after another)"
    return f"{greenlet.__version__} (GPSampler optimises its restarts in one batch)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--steps", type=int, default=11, help="ask/tell steps timed per sampler and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", default=None, help="NB201 compact CSV (default: $NB201_TABLE)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler-overhead"))
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (the first step is reported apart), got {args.steps}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_table(args.table)
    values = np.array([table.val_acc("cifar10", i, 12) for i in range(NUM_ARCHS)])
    names = list(SAMPLERS)
    # Imports and lazily built code paths of every sampler, once, before anything is timed.
    _time_steps(names, 12, 2, args.seed + 1, values)
    rows = []
    for n in args.sizes:
        times = _time_steps(names, n, args.steps, args.seed, values)
        for name in names:
            later = times[name][1:]
            row = {
                "sampler": name,
                "completed_trials": n,
                "first_step_s": times[name][0],
                "median_step_s": statistics.median(later),
                "mean_step_s": statistics.fmean(later),
                "steps_s": times[name],
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "steps_s"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    ref = "GPSampler"
    lines = [
        "# Sampler overhead: seconds per ask -> tell step on the NB201 space",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python "
        f"benchmarks/sampler_overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; Python {platform.python_version()}, "
        f"optuna {optuna.__version__}, torch {torch.__version__}; greenlet {_greenlet()}.",
        "",
        f"Each cell: the median of steps 2-{args.steps} of one study whose history holds n completed "
        "trials (the model warm-starts from the previous step's fit, as in a running study); in "
        "brackets the first step of a new sampler on that history (fit from scratch; MFKDSampler "
        "also builds its table of the space's isomorphism classes there). The samplers take turns "
        "step by step, after one untimed round that loads every code path.",
        "",
        "| sampler | " + " | ".join(f"n = {n}" for n in args.sizes) + " |",
        "| --- | " + " | ".join("---" for _ in args.sizes) + " |",
    ]

    def cell(name: str, n: int) -> dict:
        return next(r for r in rows if r["sampler"] == name and r["completed_trials"] == n)

    for name in names:
        cells = [f"{cell(name, n)['median_step_s']:.2f} ({cell(name, n)['first_step_s']:.2f})" for n in args.sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if ref in names:
        lines += ["", f"Median step relative to {ref}'s at the same n:", "",
                  "| sampler | " + " | ".join(f"n = {n}" for n in args.sizes) + " |",
                  "| --- | " + " | ".join("---" for _ in args.sizes) + " |"]
        for name in names:
            if name == ref:
                continue
            ratios = [cell(name, n)["median_step_s"] / cell(ref, n)["median_step_s"] for n in args.sizes]
            lines.append(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    lines.append("")
    lines.append("n = completed trials in the history (the 2-level variant: n/2 low-level and n/2 high-level trials).")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
