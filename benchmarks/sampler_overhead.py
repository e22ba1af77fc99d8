"""Seconds per ask -> tell step of MFKDSampler against Optuna's GPSampler and TPESampler.

All samplers see the same history at each history size, and the time of ``steps``
consecutive ask/tell steps is measured, model fits included, the samplers taking turns step
by step. The first step of a new sampler (fit from scratch, one-time tables) is reported
apart from the median of the later ones (warm-started, as in a running study). Threads are
pinned alike (run with ``OMP_NUM_THREADS=1``).

Spaces (``--space``, several allowed):

- ``nb201``: the NAS-Bench-201 space (six categorical edges, 15,625 cells; MFKDSampler with
  its defaults scores one cell per isomorphism class, with the paper's settings 5,000 random
  cells); history values are the 12-epoch CIFAR-10 validation accuracies of ``NB201_TABLE``;
- ``continuous:D``: D floats in [0, 1]; ``mixed:D``: D parameters cycling through a log
  float, a float, a stepped int and a 4-way categorical; ``categorical:D``: D 4-way
  categoricals (too many points to score one by one for D >= 8); values of a fixed smooth
  function of the parameters.

The two-level variants split the history half and half between a low level (half the value
plus noise) and the high level, and choose the level of each step (cost-aware, costs 1 and 10).

    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py --out benchmarks/results/sampler-overhead
    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py --space continuous:2 continuous:6 continuous:20 \
        mixed:4 mixed:12 mixed:20 categorical:3 categorical:8 --sizes 20 100 300 --steps 6 \
        --out benchmarks/results/sampler-overhead-spaces
    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py --space continuous:6 mixed:12 categorical:8 \
        --sizes 1000 --large-steps 3 --out benchmarks/results/sampler-overhead-spaces/n1000

Histories of at least ``--large-n`` trials (default 1,000) are timed with ``--large-steps`` steps
(default 3) instead of ``--steps``.
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
    architecture_from_params,
    cell_key,
    suggest_architecture,
)
from optuna_mfkd.nasbench201.table import load_table
from optuna_mfkd.sampler import PAPER_SETTINGS

NB201_SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
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
#: The samplers on the other spaces: MFKDSampler as a user gets it.
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "MFKDSampler (1 level, defaults)": lambda seed: MFKDSampler(n_warmup={"high": 0}, seed=seed),
    "MFKDSampler (2 levels, defaults)": lambda seed: MFKDSampler(
        ["low", "high"], n_warmup={"low": 0, "high": 0}, costs={"low": 1.0, "high": 10.0}, seed=seed
    ),
    "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "TPESampler": lambda seed: optuna.samplers.TPESampler(seed=seed),
}
CHOICES = ("a", "b", "c", "d")


class Space:
    """A search space, its history and its objective (``spec``: ``nb201`` or ``kind:D``)."""

    def __init__(self, spec: str, table: str | None) -> None:
        self.spec = spec
        if spec == "nb201":
            nb201 = load_table(table)
            self.values = np.array([nb201.val_acc("cifar10", i, 12) for i in range(NUM_ARCHS)])
            self.samplers = NB201_SAMPLERS
            return
        kind, _, dims = spec.partition(":")
        if kind not in ("continuous", "mixed", "categorical") or not dims.isdigit() or int(dims) < 1:
            raise ValueError(f"--space: {spec!r} is not nb201, continuous:D, mixed:D or categorical:D.")
        self.kind, self.dims, self.samplers = kind, int(dims), SAMPLERS

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        d = optuna.distributions
        if self.spec == "nb201":
            ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
            return {name: d.CategoricalDistribution(ops) for name in EDGE_PARAM_NAMES}
        cycle = {
            "continuous": [d.FloatDistribution(0.0, 1.0)],
            "categorical": [d.CategoricalDistribution(CHOICES)],
            "mixed": [d.FloatDistribution(1e-4, 1e-1, log=True), d.FloatDistribution(0.0, 1.0),
                      d.IntDistribution(0, 64, step=4), d.CategoricalDistribution(CHOICES)],
        }[self.kind]
        return {f"p{i}": cycle[i % len(cycle)] for i in range(self.dims)}

    def value(self, params: dict) -> float:
        """The objective (larger is better)."""
        if self.spec == "nb201":
            return float(self.values[architecture_from_params(params).index])
        total = 0.0
        for i, (name, dist) in enumerate(self.distributions().items()):
            v = params[name]
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                u = CHOICES.index(v) / 3
            else:
                u = (np.log(v) - np.log(dist.low)) / (np.log(dist.high) - np.log(dist.low)) if dist.log else (
                    (v - dist.low) / (dist.high - dist.low))
            total += np.sin(3 * u + i) - (u - 0.3) ** 2
        return float(total)

    def suggest(self, trial: optuna.Trial) -> dict:
        if self.spec == "nb201":
            return suggest_architecture(trial).params
        return {name: _suggest(trial, name, dist) for name, dist in self.distributions().items()}

    def history(self, n: int, two_level: bool, seed: int) -> list[optuna.trial.FrozenTrial]:
        rng = np.random.default_rng(seed)
        dists = self.distributions()
        sampler = optuna.samplers.RandomSampler(seed=seed)
        scratch = optuna.create_study(sampler=sampler)
        trials = []
        levels = ["high"] * n if not two_level else ["low"] * (n // 2) + ["high"] * (n - n // 2)
        for level in levels:
            if self.spec == "nb201":
                params = Architecture.from_index(int(rng.integers(NUM_ARCHS))).params
            else:
                params = scratch.ask(dists).params
            value = self.value(params)
            attrs = {}
            if two_level:
                attrs = {"fidelity": level, "fidelity_level": 0 if level == "low" else 1}
                if level == "low":
                    value = 0.5 * value + float(rng.normal(0, 0.2 if self.spec != "nb201" else 2.0))
            trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value, user_attrs=attrs))
        return trials


def _suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> object:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def _study(space: Space, name: str, n: int, seed: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=space.samplers[name](seed))
    two_level = "2 levels" in name
    if two_level:
        study._storage.set_study_system_attr(study._study_id, "mfkd:fidelities", ["low", "high"])
    study.add_trials(space.history(n, two_level, seed))
    return study


def _step(study: optuna.Study, space: Space) -> float:
    """Seconds of one ask -> tell step (the objective costs nothing)."""
    start = time.perf_counter()
    trial = study.ask()
    params = space.suggest(trial)
    study.tell(trial, space.value(params))
    return time.perf_counter() - start


def _time_steps(space: Space, names: list[str], n: int, steps: int, seed: int) -> dict[str, list[float]]:
    """Step times of each sampler on the same history, the samplers taking turns step by
    step, so that a change of the machine's load falls on all of them alike."""
    studies = {name: _study(space, name, n, seed) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(steps):
        for name in names:
            times[name].append(_step(studies[name], space))
    return times


def _greenlet() -> str:
    try:
        import greenlet
    except ImportError:
        return "not installed (GPSampler optimises its restarts one after another)"
    return f"{greenlet.__version__} (GPSampler optimises its restarts in one batch)"


def _tables(space: Space, rows: list[dict], sizes: list[int], ref: str = "GPSampler") -> list[str]:
    names = list(space.samplers)

    def cell(name: str, n: int) -> dict:
        return next(r for r in rows if r["space"] == space.spec and r["sampler"] == name and r["completed_trials"] == n)

    lines = [f"### {space.spec}", "", "| sampler | " + " | ".join(f"n = {n}" for n in sizes) + " |",
             "| --- | " + " | ".join("---" for _ in sizes) + " |"]
    for name in names:
        cells = [f"{cell(name, n)['median_step_s']:.2f} ({cell(name, n)['first_step_s']:.2f})" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Median step relative to {ref}'s at the same n (first step in brackets):", "",
              "| sampler | " + " | ".join(f"n = {n}" for n in sizes) + " |",
              "| --- | " + " | ".join("---" for _ in sizes) + " |"]
    for name in names:
        if name == ref:
            continue
        ratios = [
            f"{cell(name, n)['median_step_s'] / cell(ref, n)['median_step_s']:.2f} "
            f"({cell(name, n)['first_step_s'] / cell(ref, n)['first_step_s']:.2f})" for n in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(ratios) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", nargs="+", default=["nb201"],
                        help="nb201, continuous:D, mixed:D or categorical:D (default: nb201)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--steps", type=int, default=11, help="ask/tell steps timed per sampler and size")
    parser.add_argument(
        "--large-n",
        type=int,
        default=1000,
        help="histories of at least this size are timed with --large-steps steps",
    )
    parser.add_argument("--large-steps", type=int, default=3, help="steps timed at n >= --large-n")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", default=None, help="NB201 compact CSV (default: $NB201_TABLE)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler-overhead"))
    args = parser.parse_args(argv)
    if min(args.steps, args.large_steps) < 2:
        parser.error(
            "--steps and --large-steps must be at least 2 (the first step is reported apart)."
        )
    try:
        spaces = [Space(spec, args.table) for spec in args.space]
    except ValueError as err:
        parser.error(str(err))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for space in spaces:
        names = list(space.samplers)
        # Imports and lazily built code paths of every sampler, once, before anything is timed.
        _time_steps(space, names, 12, 2, args.seed + 1)
        for n in args.sizes:
            steps = args.steps if n < args.large_n else args.large_steps
            times = _time_steps(space, names, n, steps, args.seed)
            for name in names:
                later = times[name][1:]
                row = {
                    "space": space.spec,
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
    lines = [
        "# Sampler overhead: seconds per ask -> tell step",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python "
        f"benchmarks/sampler_overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; Python {platform.python_version()}, "
        f"optuna {optuna.__version__}, torch {torch.__version__}; greenlet {_greenlet()}.",
        "",
        f"Each cell: the median of steps 2-{args.steps} (2-{args.large_steps} at n >= {args.large_n}) of "
        "one study whose history holds n completed trials (the model warm-starts from the previous step's fit, as in a running study); in "
        "brackets the first step of a new sampler on that history (fit from scratch; on NB201 "
        "MFKDSampler also builds its table of the space's isomorphism classes there). The samplers "
        "take turns step by step, after one untimed round that loads every code path.",
        "",
    ]
    for space in spaces:
        lines += _tables(space, rows, args.sizes)
    lines.append("n = completed trials in the history (the 2-level variant: n/2 low-level and n/2 high-level trials).")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
