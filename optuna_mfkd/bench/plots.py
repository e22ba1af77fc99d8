"""Anytime curves of a report: the incumbent's metric against the cost spent, one line per method."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optuna_mfkd.bench.methods import reference_methods
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY
from optuna_mfkd.bench.results import Run, incumbent_at
from optuna_mfkd.bench.statistics import ordered

_COLORS = {
    "random": "tab:blue", "tpe": "tab:orange", "gp": "tab:green", "re": "tab:red", "mfkd-gpr": "tab:purple",
    "bohb": "tab:brown", "hyperband": "tab:pink", "mfkd": "black", "mfkd-nst": "black", "mfkd-ce": "tab:olive",
    "mfkd-kd": "tab:cyan", "mfkd-paper": "tab:gray", "dehb": "black", "syne-bohb": "gold",
    "syne-asha": "navy", "smac-mf": "lime", "smac-hb": "teal",
}


def plot_curves(runs: Sequence[Run], path: Path, title: str, n_grid: int = 200,
                method_order: Sequence[str] | None = None, references: Sequence[str] | None = None) -> None:
    """Anytime curves of one problem: the incumbent's metric against the cost spent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = max(r.budget for r in runs)
    metric = runs[0].metric
    grid = np.linspace(0.0, budget, n_grid)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lows: list[float] = []
    highs: list[float] = []
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    refs = reference_methods(by_method, references)
    for m in ordered(set(by_method), method_order):
        mat = np.stack([incumbent_at(r, grid) for r in by_method[m]])
        counts = np.sum(~np.isnan(mat), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any incumbent
            mean = np.nanmean(mat, axis=0)
            sd = np.nanstd(mat, axis=0, ddof=1)
        mean[counts < max(1, len(by_method[m]) // 2)] = np.nan  # shown once half the seeds have one
        se = np.where(counts > 1, sd / np.sqrt(np.maximum(counts, 1)), 0.0)
        lw = 2.2 if m in refs else 1.4
        color = _COLORS.get(m)
        ls = "--" if m in PEERS else "-"  # other libraries' optimisers dashed
        ax.plot(grid, mean, label=f"{m} (n={len(by_method[m])})", lw=lw, color=color, ls=ls)
        ax.fill_between(grid, mean - se, mean + se, alpha=0.2, color=color)
        if np.any(~np.isnan(mean)):
            highs.append(np.nanmax(mean + se))
        quarter = mean[grid.size // 4 :]
        if np.any(~np.isnan(quarter)):
            lows.append(np.nanmin(quarter))
    if metric == NB201_TEST_ACCURACY and lows and highs:
        ax.set_ylim(min(lows) - 0.5, max(highs) + 0.2)  # accuracies: the last three quarters
    ax.set_xlabel(f"cost spent ({runs[0].cost_unit})")
    ax.set_ylabel(metric.label)
    ax.set_title(title + "\n(mean over seeds; band: +- 1 standard error)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if metric.higher_is_better else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
