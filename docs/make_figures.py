"""Draw the figures of docs/method.md.

    python docs/make_figures.py            # writes docs/figures/ar1-cokriging.png
    python docs/make_figures.py --out DIR

The figure is a one-dimensional illustration of the AR1 co-kriging model
y_high(x) = rho * y_low(x) + delta(x), with the joint covariance written out as a NumPy
block matrix at fixed hyperparameters (the same formula as docs/method.md); it does not use
the package's fitted model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RHO, L1, LD, S1, SD, NOISE = 0.8, 0.12, 0.25, 1.0, 0.3, 1e-4


def f_low(x: np.ndarray) -> np.ndarray:
    return np.sin(9 * x) + 0.6 * np.cos(23 * x)


def f_high(x: np.ndarray) -> np.ndarray:
    return RHO * f_low(x) + 0.45 * (x - 0.4) + 0.15 * np.sin(4 * x)


def rbf(a: np.ndarray, b: np.ndarray, scale: float, var: float) -> np.ndarray:
    return var * np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / scale**2)


def cov(xa: np.ndarray, la: np.ndarray, xb: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """cov(y_la(xa), y_lb(xb)) for levels 0 (low) and 1 (high):

    low-low: k1; high-low: rho k1; high-high: rho^2 k1 + kd.
    """
    k1 = rbf(xa, xb, L1, S1)
    kd = rbf(xa, xb, LD, SD)
    scale = np.where(la[:, None] == 1, RHO, 1.0) * np.where(lb[None, :] == 1, RHO, 1.0)
    both_high = (la[:, None] == 1) & (lb[None, :] == 1)
    return scale * k1 + both_high * kd


def posterior(x: np.ndarray, lv: np.ndarray, y: np.ndarray, xs: np.ndarray, single: bool) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd of y_high at ``xs`` (``single``: a GP on the high points only)."""
    if single:
        keep = lv == 1
        x, lv, y = x[keep], lv[keep], y[keep]
        kern = lambda a, la, b, lb: rbf(a, b, L1, RHO**2 * S1 + SD)  # noqa: E731
    else:
        kern = cov
    high = np.ones_like(xs, dtype=int)
    k = kern(x, lv, x, lv) + NOISE * np.eye(len(x))
    ks = kern(xs, high, x, lv)
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    v = np.linalg.solve(chol, ks.T)
    var = np.diag(kern(xs, high, xs, high)) - np.sum(v**2, axis=0)
    return ks @ alpha, np.sqrt(np.maximum(var, 0))


def ar1_figure(path: Path) -> None:
    rng = np.random.default_rng(0)
    x_low = np.sort(rng.uniform(0, 1, 14))
    x_high = np.array([0.08, 0.45, 0.7, 0.95])
    x = np.concatenate([x_low, x_high])
    lv = np.concatenate([np.zeros_like(x_low, dtype=int), np.ones_like(x_high, dtype=int)])
    y = np.concatenate([f_low(x_low), f_high(x_high)])
    xs = np.linspace(0, 1, 400)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, single, title in ((axes[0], True, "GP on the 4 high-fidelity points"),
                              (axes[1], False, "AR1 co-kriging: 14 low + 4 high points")):
        mean, sd = posterior(x, lv, y, xs, single)
        ax.plot(xs, f_high(xs), "k--", lw=1, label="true high fidelity")
        ax.plot(xs, mean, color="C0", label="posterior mean (high)")
        ax.fill_between(xs, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.2, label="± 2 sd")
        if not single:
            ax.plot(xs, f_low(xs), color="C1", lw=0.8, alpha=0.6, label="true low fidelity")
            ax.plot(x_low, f_low(x_low), "o", color="C1", ms=4, label="low-fidelity trials")
        ax.plot(x_high, f_high(x_high), "s", color="C3", ms=6, label="high-fidelity trials")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("architecture (1-D stand-in)")
    axes[0].set_ylabel("accuracy (standardised)")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"y_high(x) = {RHO} · y_low(x) + delta(x)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the figures of docs/method.md.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures")
    args = parser.parse_args(argv)
    ar1_figure(args.out / "ar1-cokriging.png")
    print(f"wrote {args.out / 'ar1-cokriging.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
