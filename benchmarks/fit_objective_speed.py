"""Seconds of the AR1 fit's objective: GPyTorch's ``ExactMarginalLogLikelihood``,
:func:`optuna_mfkd.gp.fitting.map_objective` (the same value on dense tensors, gradient by
autograd) and :class:`optuna_mfkd.gp.fitting.ClosedFormObjective` (value and gradient in
closed form, NumPy), side by side in one run, and of a whole fit (``fit_gpytorch_mll``, 50
L-BFGS-B iterations) with each.

Each cell: median of ``--repeats`` forward + backward evaluations at the model's default
hyperparameters (``n`` random points in ``[0, 1]^6``, levels alternating); the fits start from
the defaults too. Run with one thread::

    OMP_NUM_THREADS=1 python benchmarks/fit_objective_speed.py \\
        --out benchmarks/results/sampler-overhead-spaces/fit-objective
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from botorch.fit import fit_gpytorch_mll
from gpytorch.mlls import ExactMarginalLogLikelihood

from optuna_mfkd.gp.fitting import ClosedFormObjective, map_closure, map_objective
from optuna_mfkd.gp.model import fit_ar1_model


def _model(n: int, levels: int):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 6, generator=g, dtype=torch.float64)
    y = torch.sin(3 * X.sum(1)) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return fit_ar1_model(X, torch.arange(n) % levels, y, levels, fit=False).model


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, levels: int, repeats: int) -> dict:
    model = _model(n, levels)
    model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    row = {"n": n, "levels": levels}
    row["gpytorch_eval_s"] = _median_seconds(
        lambda: mll(model(*model.train_inputs), model.train_targets, *model.train_inputs).backward(), repeats
    )
    row["dense_eval_s"] = _median_seconds(lambda: map_objective(model).backward(), repeats)
    closed = ClosedFormObjective.of(model)
    row["closed_eval_s"] = _median_seconds(closed, repeats) if closed is not None else float("nan")
    for name in ("gpytorch", "dense", "closed"):
        fresh = _model(n, levels)
        fresh_mll = ExactMarginalLogLikelihood(fresh.likelihood, fresh)
        closure = None if name == "gpytorch" else map_closure(fresh_mll, closed_form=name == "closed")
        start = time.perf_counter()
        fit_gpytorch_mll(fresh_mll, closure=closure, optimizer_kwargs={"options": {"maxiter": 50}})
        row[f"{name}_fit_s"] = time.perf_counter() - start
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 300, 1000])
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(n, lv, args.repeats if n < 1000 else 3) for n in args.sizes for lv in args.levels]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# The fit's objective: GPyTorch's likelihood, the dense one (autograd) and the closed form",
        "",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/fit_objective_speed.py "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]) + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread. "
        "Each evaluation: the median of 10 forward + backward passes (3 at n = 1,000) at the model's "
        "default hyperparameters, n random points in [0, 1]^6 with levels alternating; each fit: "
        "`fit_gpytorch_mll` with 50 L-BFGS-B iterations from the defaults (the three paths give the "
        "same values to rounding, so the fits take the same steps). Ratio: closed form / dense.",
        "",
        "| n | levels | GPyTorch eval (ms) | dense eval (ms) | closed-form eval (ms) | ratio | "
        "GPyTorch fit (s) | dense fit (s) | closed-form fit (s) | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['levels']} | {1e3 * r['gpytorch_eval_s']:.2f} | {1e3 * r['dense_eval_s']:.2f} | "
            f"{1e3 * r['closed_eval_s']:.2f} | {r['closed_eval_s'] / r['dense_eval_s']:.2f} | "
            f"{r['gpytorch_fit_s']:.2f} | {r['dense_fit_s']:.2f} | {r['closed_fit_s']:.2f} | "
            f"{r['closed_fit_s'] / r['dense_fit_s']:.2f} |"
        )
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
