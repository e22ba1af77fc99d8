"""The learning-curve problems of ``curve_training.py`` trained live, and the check that live
training reproduces the tables ``curve_tables.py`` built.

:func:`live_problem` is a :class:`~optuna_mfkd.bench.curves.CurveProblem` whose ``value``
trains: each configuration's run is kept, so asking for epochs 1, 2, ..., 27 in turn trains
it once, one more epoch per call; asking for an epoch already trained reads it back.

Run as a script, it retrains ``--rows`` random rows of a table live and compares every
epoch's value with the table's::

    OMP_NUM_THREADS=1 python benchmarks/curve_live.py \\
        --table benchmarks/results/curve-tables/mlp-digits.csv.gz --rows 5 --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import curve_training  # noqa: E402
import numpy as np  # noqa: E402

from optuna_mfkd.bench.curves import CurveProblem  # noqa: E402


@dataclass
class _Run:
    """One configuration's training: the epochs trained so far and the trainer that goes on."""

    trainer: Iterator[tuple[float, float]] | None
    values: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class LiveCurve(CurveProblem):
    """A problem of ``curve_training`` trained on demand, every run kept (see the module).

    Args:
        name: ``"mlp-digits"`` or ``"torch-mlp"``.
        cost: ``"steps"`` (an epoch costs 1) or ``"seconds"`` (the measured training seconds).
    """

    def __init__(self, name: str, cost: str = "steps") -> None:
        if name not in curve_training.SPACES:
            raise ValueError(
                f"unknown curve problem {name!r}; expected one of {curve_training.PROBLEMS}"
            )
        if cost not in ("steps", "seconds"):
            raise ValueError(f"cost must be 'steps' or 'seconds', got {cost!r}")
        self.name = name
        self.distributions = dict(curve_training.SPACES[name])
        self.report_steps = tuple(range(1, curve_training.EPOCHS + 1))
        self.rungs = (1, 3, 9, 27)
        self.optimum = None
        self.cost_unit = cost
        self._runs: dict[tuple[Any, ...], _Run] = {}

    def _run(self, params: Mapping[str, Any], step: int) -> _Run:
        """The run of ``params``, trained to at least ``step`` epochs."""
        if step not in self.report_steps:
            raise ValueError(f"{self.name}: step {step!r} is not one of 1..{self.final_step}")
        key = []
        for p, dist in self.distributions.items():
            grid = curve_training.grid_values(dist)
            if params.get(p) not in grid or isinstance(params.get(p), bool):
                raise ValueError(
                    f"{self.name}: parameter {p!r} = {params.get(p)!r} is not on the grid"
                )
            key.append(grid[grid.index(params[p])])  # the grid's own int or str
        run = self._runs.get(tuple(key))
        if run is None:
            config = dict(zip(self.distributions, key))
            run = self._runs[tuple(key)] = _Run(curve_training.train(self.name, config))
        while len(run.values) < step:
            assert run.trainer is not None
            with curve_training.single_thread(self.name):
                value, seconds = next(run.trainer)
            run.values.append(value)
            run.seconds.append(seconds)
        if len(run.values) == self.final_step:
            run.trainer = None  # the model is no longer needed
        return run

    def value(self, params: Mapping[str, Any], step: int) -> float:
        """The validation error of ``params`` after ``step`` epochs (trains what is missing)."""
        return self._run(params, step).values[step - 1]

    def cost(self, params: Mapping[str, Any], step: int) -> float:
        """``step``, or the training seconds of epochs ``1..step`` (cost ``"seconds"``)."""
        if self.cost_unit == "steps":
            return float(step)
        return float(sum(self._run(params, step).seconds[:step]))

    def epochs_trained(self, params: Mapping[str, Any]) -> int:
        """How many epochs of ``params`` have been trained (0 if none)."""
        run = self._runs.get(tuple(params.get(p) for p in self.distributions))
        return 0 if run is None else len(run.values)


def live_problem(name: str, cost: str = "steps") -> CurveProblem:
    """The problem ``name`` trained live, on one thread (what its table records)."""
    return LiveCurve(name, cost=cost)


def check(table_path: Path, rows: int, seed: int) -> bool:
    """Retrain ``rows`` random rows of a table live; print and compare every epoch's value."""
    from optuna_mfkd.bench.curve_tables import TableCurve, read_sums

    sums = table_path.parent / "SHA256SUMS"
    digest = read_sums(sums).get(table_path.name) if sums.exists() else None
    table = TableCurve.load(table_path, sha256=digest)
    live = live_problem(table.name)
    configs = table.configurations()
    picked = np.random.default_rng(seed).choice(len(configs), size=rows, replace=False)
    all_equal = True
    for i in sorted(int(i) for i in picked):
        params = configs[i]
        start = time.perf_counter()
        got = [live.value(params, step) for step in table.report_steps]
        elapsed = time.perf_counter() - start
        want = [table.value(params, step) for step in table.report_steps]
        equal = sum(g == w for g, w in zip(got, want))
        all_equal &= equal == len(want) and live.epochs_trained(params) == table.final_step
        print(
            f"row {i} {params}: {equal}/{len(want)} epochs equal, max |diff| "
            f"{max(abs(g - w) for g, w in zip(got, want)):.3g}, final {got[-1]:.4f} "
            f"(table {want[-1]:.4f}), {elapsed:.1f} s live vs "
            f"{table.seconds_array()[i].sum():.1f} s recorded",
            flush=True,
        )
    print(f"{table.name}: {'all values equal' if all_equal else 'MISMATCH'}")
    return all_equal


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True, nargs="+")
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ok = [check(path, args.rows, args.seed) for path in args.table]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
