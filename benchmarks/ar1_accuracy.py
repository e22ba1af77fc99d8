"""Accuracy of the package's AR1 model against a reference AR1, with ablations.

On the two-level test functions of :mod:`ar1_reference` (Forrester 1-D, Currin 2-D,
Hartmann-3 3-D, Park 4-D, Borehole 8-D; ``10 d + 10`` random low points, ``3 d + 4`` high
points a random subset of them, 3 seeded designs each), every model predicts the top level at
1,000 random test points; the metric is the normalised RMSE of its posterior mean,
``RMSE / sd(test values)``.

Models:

- ``ref``: :class:`ar1_reference.RecursiveAR1` (maximum likelihood, ARD squared-exponential
  kernels, 5 restarts per level, nugget ``1e-6``; exact for these nested designs);
- ``ref-joint``: :class:`ar1_reference.ReferenceAR1`, the same model fitted jointly over all
  hyperparameters (5 restarts);
- ``sampler``: :func:`optuna_mfkd.gp.model.fit_ar1_model` called as the sampler's first fit
  (``Proposer.fit``: no warm start, ``max_iter = 50``, ARD, plain standardisation), mean in
  observation units ``y_mean + y_std mu'``; ``sampler:k=v,...`` adds keyword arguments
  (e.g. ``sampler:kernel=rbf,restarts=5``);
- ``ours``: the same model built and fitted here, so that parts can be changed:
  its variants (:data:`VARIANTS`) change one or more of: the noise (fixed
  ``1e-6`` instead of fitted under the ``Gamma(1.1, 30)`` prior), the kernel (squared
  exponential instead of Matern-5/2), the length-scale prior (none instead of the log-normal),
  the optimiser (iterations, random restarts), the standardisation (robust, pooled).

Rows are appended to ``--out/runs.csv`` as they finish (a rerun skips rows already there;
``--models`` with no name only rewrites the table); ``--out/table.md`` gets the mean nRMSE per
function and model (the number of designs in brackets)::

    OMP_NUM_THREADS=1 python benchmarks/ar1_accuracy.py --out benchmarks/results/ar1-accuracy
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ar1_reference import FUNCTIONS, RecursiveAR1, ReferenceAR1, make_design, nrmse  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One way of fitting the package's model (see the module docstring)."""

    kernel: str = "matern52"
    noise: float | None = None
    lengthscale_prior: bool = True
    max_iter: int = 50
    restarts: int = 1
    standardisation: str = "level"


VARIANTS: dict[str, Variant] = {
    "ours": Variant(),
    "iter200": Variant(max_iter=200),
    "noise1e-6": Variant(noise=1e-6),
    "rbf": Variant(kernel="rbf"),
    "no-ls-prior": Variant(lengthscale_prior=False),
    "restarts5": Variant(restarts=5, max_iter=200),
    "robust": Variant(standardisation="robust"),
    "pooled": Variant(standardisation="pooled"),
    "noise+restarts": Variant(noise=1e-6, restarts=5, max_iter=200),
    "rbf+noise": Variant(kernel="rbf", noise=1e-6),
    "rbf+restarts": Variant(kernel="rbf", restarts=5, max_iter=200),
    "rbf+noise+restarts": Variant(kernel="rbf", noise=1e-6, restarts=5, max_iter=200),
    "all": Variant(kernel="rbf", noise=1e-6, lengthscale_prior=False, restarts=5, max_iter=200),
}


def fit_ours(d_x_low, y_low, x_high, y_high, variant: Variant, seed: int):
    """Fit the package's AR1 model with ``variant``'s changes; returns ``(predict, rho)``.

    Starts beyond the first draw ``log10 l ~ U(-1, 1)`` per length scale and level, the
    discrepancy's output scale ``log10 s_1^2 ~ U(-2, 1)`` and ``rho' ~ U(-3, 3)``; the fit
    with the largest marginal log likelihood (with its priors) is kept.
    """
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import RBFKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import LogNormalPrior

    from optuna_mfkd.gp import model as gp_model
    from optuna_mfkd.gp.mixed_kernel import MixedMaternKernel

    torch.manual_seed(seed)
    X = torch.from_numpy(np.r_[d_x_low, x_high])
    levels = torch.from_numpy(
        np.r_[np.zeros(len(d_x_low), np.int64), np.ones(len(x_high), np.int64)]
    )
    y = torch.from_numpy(np.r_[y_low, y_high])
    dim = X.shape[1]
    st = gp_model.standardise(y, levels, 2, robust=variant.standardisation == "robust")
    if variant.standardisation == "pooled":
        st = gp_model.Standardisation((float(y.mean()),) * 2, (float(y.std()),) * 2, None)
    z = st.apply(y, levels)
    train_X = gp_model._train_inputs(X, levels)
    loc = gp_model.default_lengthscale_loc(dim)

    def build() -> gp_model.AR1CoKrigingGP:
        model = gp_model.AR1CoKrigingGP(train_X, z.unsqueeze(-1), 2)
        for scaled in model.covar_module.base_kernels:
            prior = (
                {"lengthscale_prior": LogNormalPrior(loc, math.sqrt(3.0))}
                if variant.lengthscale_prior
                else {}
            )
            if variant.kernel == "rbf":
                base = RBFKernel(
                    ard_num_dims=dim, lengthscale_constraint=GreaterThan(1e-2), **prior
                )
            else:
                base = MixedMaternKernel(dim, {}, lengthscale_constraint=GreaterThan(1e-2), **prior)
            base.lengthscale = math.exp(loc - 3.0)
            scaled.base_kernel = base.to(torch.float64)
        if variant.noise is not None:
            noise = model.likelihood.noise_covar
            noise.register_constraint("raw_noise", GreaterThan(0.0))
            noise.noise = torch.full_like(noise.noise, variant.noise)
            noise.raw_noise.requires_grad_(False)
        return model

    best, best_value = None, -math.inf
    rng = np.random.default_rng(seed)
    for start in range(variant.restarts):
        model = build()
        if start > 0:
            kernels = model.covar_module.base_kernels
            with torch.no_grad():
                for k in kernels:
                    k.base_kernel.lengthscale = torch.from_numpy(
                        10 ** rng.uniform(-1, 1, dim)
                    ).reshape(1, -1)
                kernels[1].outputscale = 10 ** rng.uniform(-2, 1)
                model.covar_module.rho[:] = rng.uniform(-3, 3)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": variant.max_iter}})
        except Exception:  # a failed start is skipped, as a failed restart of the reference
            continue
        model.train()
        with torch.no_grad():
            value = float(mll(model(*model.train_inputs), model.train_targets, *model.train_inputs))
        if value > best_value:
            best, best_value = model, value
    assert best is not None
    best.eval()
    fitted = gp_model.FittedModel(best, st, 2, {}, True, None)
    scale, centre = fitted.y_std, fitted.y_mean

    def predict(x: np.ndarray) -> np.ndarray:
        return centre + scale * _top_mean(best, x)

    return predict, float(fitted.rho[0])


def _top_mean(model, x: np.ndarray) -> np.ndarray:
    """The top level's posterior mean (model units) at ``x``, from BoTorch's posterior."""
    with torch.no_grad():
        return model.posterior(torch.from_numpy(x)).mean.reshape(-1).numpy()


def fit_sampler_call(x_low, y_low, x_high, y_high, seed: int, **fit_kwargs):
    """``fit_ar1_model`` exactly as ``Proposer.fit`` calls it for a study's first fit, plus
    ``fit_kwargs``; returns ``(predict, rho)``."""
    from optuna_mfkd.gp.model import fit_ar1_model

    torch.manual_seed(seed)
    X = torch.from_numpy(np.r_[x_low, x_high])
    levels = torch.from_numpy(np.r_[np.zeros(len(x_low), np.int64), np.ones(len(x_high), np.int64)])
    y = torch.from_numpy(np.r_[y_low, y_high])
    options = dict(cat_dims={}, warm_start=None, max_iter=50, ard=True, cat_ard=False, robust=False)
    fitted = fit_ar1_model(X, levels, y, 2, **{**options, **fit_kwargs})

    def predict(x: np.ndarray) -> np.ndarray:
        return fitted.y_mean + fitted.y_std * _top_mean(fitted.model, x)

    return predict, float(fitted.rho[0])


def run_one(function: str, seed: int, model: str) -> dict:
    design = make_design(function, seed)
    args = (design.x_low, design.y_low, design.x_high, design.y_high)
    start = time.process_time()
    if model == "ref":
        ref = RecursiveAR1(seed=seed).fit(*args)
        predict, rho = ref.predict_top, ref.rho
    elif model == "ref-joint":
        ref = ReferenceAR1(seed=seed).fit(*args)
        predict, rho = ref.predict_top, ref.rho
    elif model == "sampler":
        predict, rho = fit_sampler_call(*args, seed=seed)
    elif model.startswith("sampler:"):
        pairs = (item.split("=") for item in model.split(":", 1)[1].split(","))
        predict, rho = fit_sampler_call(*args, seed=seed, **{k: _literal(v) for k, v in pairs})
    else:
        predict, rho = fit_ours(*args, VARIANTS[model], seed)
    return {
        "function": function,
        "seed": seed,
        "model": model,
        "nrmse": nrmse(predict(design.x_test), design.y_test),
        "rho": rho,
        "cpu_s": time.process_time() - start,
    }


def _literal(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def write_table(rows: list[dict], path: Path, models: list[str], functions: list[str]) -> None:
    """Markdown table of the mean nRMSE over the designs (rows: models; columns: functions)."""
    lines = ["| model | " + " | ".join(functions) + " |", "|---|" + "---|" * len(functions)]
    for m in models:
        cells = []
        for f in functions:
            vals = [float(r["nrmse"]) for r in rows if r["model"] == m and r["function"] == f]
            cells.append(f"{np.mean(vals):.4f} ({len(vals)})" if vals else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ar1-accuracy"))
    parser.add_argument("--functions", nargs="*", default=list(FUNCTIONS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--models", nargs="*", default=["ref", "ref-joint", "sampler", *VARIANTS])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "runs.csv"
    fields = ["function", "seed", "model", "nrmse", "rho", "cpu_s"]
    rows = list(csv.DictReader(csv_path.open())) if csv_path.exists() else []
    done = {(r["function"], int(r["seed"]), r["model"]) for r in rows}
    for function in args.functions:
        for model in args.models:
            for seed in args.seeds:
                if (function, seed, model) in done:
                    continue
                row = run_one(function, seed, model)
                print(
                    f"{function:12s} {model:22s} seed {seed}: nRMSE {row['nrmse']:.4f} rho {row['rho']:.3f} "
                    f"({row['cpu_s']:.1f} s)",
                    flush=True,
                )
                new = not csv_path.exists()
                with csv_path.open("a", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=fields)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                rows.append({k: str(v) for k, v in row.items()})
    first = ["ref", "ref-joint", "sampler", *VARIANTS]
    seen = list(dict.fromkeys(r["model"] for r in rows))
    models = [m for m in first if m in seen] + [m for m in seen if m not in first]
    functions = [f for f in FUNCTIONS if any(r["function"] == f for r in rows)]
    write_table(rows, args.out / "table.md", models, functions)


if __name__ == "__main__":
    main()
