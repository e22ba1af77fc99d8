"""Summarise benchmark studies from their storage: tables, tests, anytime curves.

Reads every finished harness study (``<protocol>/<dataset>/<method>/seed-<k>``) of one or
more storages (e.g. single-level baselines in one database, multi-fidelity runs with several
warm-up sizes in others; a study name found twice is an error) and writes into ``out_dir``:

- ``README.md``: per protocol and dataset, each method's final 200-epoch test accuracy of the
  incumbent (mean +- std, median), its mean at fractions of the budget (a quarter and half
  by default; ``--anytime`` chooses), regret to
  the best cell in the space, the number of queries, wall seconds per trial, and two-sided
  Mann-Whitney U tests of each method against each MFKDSampler variant present,
  Holm-corrected within each comparison family; and the methods with their descriptions
  and the package versions their studies recorded (Optuna, a peer's own packages);
- ``runs.csv`` (one row per study) and ``summary.csv`` (one row per method);
- ``curves-<protocol>-<dataset>.png``: anytime curves, the incumbent's test accuracy
  against simulated seconds (mean over seeds, band = +- 1 standard error of the mean;
  the peers of :mod:`optuna_mfkd.bench.peers` dashed).

The incumbent is the best COMPLETE trial at the protocol's top level found so far (ties:
the earlier trial); its 200-epoch test accuracy is looked up when the trial is evaluated
and never used by the search.

Holm's step-down correction of m p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
``p'_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna

from optuna_mfkd.bench.harness import (
    FINISHED_ATTR,
    META_ATTR,
    RESULT_ATTR,
    _storage,
    parse_study_name,
)
from optuna_mfkd.bench.incumbent import from_record, incumbent_curve
from optuna_mfkd.bench.methods import METHODS, REFERENCE_METHODS
from optuna_mfkd.bench.peers import PEERS

#: Published figures (200-epoch test accuracy, %) quoted as context; see docs of the method.
PAPER_FIGURES: dict[str, dict[str, str]] = {
    "MF-KD (MF-KD paper, Table 2)": {"cifar10": "93.93", "cifar100": "72.00", "imagenet16": "45.67"},
    "Regularised evolution (NB201 paper)": {"cifar10": "93.92 +- 0.30", "cifar100": "71.84 +- 0.99", "imagenet16": "45.54 +- 1.03"},
    "Random search (NB201 paper)": {"cifar10": "93.70 +- 0.36", "cifar100": "71.04 +- 1.07", "imagenet16": "44.57 +- 1.25"},
    "BOHB (NB201 paper)": {"cifar10": "93.61 +- 0.52", "cifar100": "70.85 +- 1.28", "imagenet16": "44.42 +- 1.49"},
    "GPR, high fidelity only (MF-KD paper, Table 3)": {"cifar10": "93.78", "cifar100": "71.44", "imagenet16": "45.44"},
    "Multi-fidelity, no KD (MF-KD paper, Table 3)": {"cifar10": "93.97", "cifar100": "71.83", "imagenet16": "45.41"},
}


@dataclass
class Run:
    """One finished study, reduced to what the report needs."""

    protocol: str
    dataset: str
    method: str
    seed: int
    budget: float
    final_test: float
    final_val: float
    n_trials: int
    total_cost: float
    wall_seconds: float
    best_in_space: float | None
    curve_cost: np.ndarray = field(repr=False)  # cumulative cost after each trial
    curve_test: np.ndarray = field(repr=False)  # incumbent test accuracy after each trial (nan before one)
    description: str = ""  # the method's description, as its study recorded it
    versions: dict[str, str | None] = field(default_factory=dict)  # packages the study recorded


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given); NaN entries stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


Storages = str | optuna.storages.BaseStorage | Sequence[str | optuna.storages.BaseStorage]


def _storages(storage: Storages) -> list[tuple[str, optuna.storages.BaseStorage]]:
    items = [storage] if isinstance(storage, str | optuna.storages.BaseStorage) else list(storage)
    if not items:
        raise ValueError("no storage given.")
    return [(s if isinstance(s, str) else type(s).__name__, _storage(s)) for s in items]


def load_runs(storage: Storages, protocols: Sequence[str] | None = None, use_records: bool = True) -> list[Run]:
    """Every finished harness study in ``storage`` (optionally only some protocols).

    ``storage`` may be several storages; their studies are pooled, and a study name that
    is finished in two of them raises :class:`ValueError` (the same run counted twice).
    A run's curve comes from the summary the harness stored with the study
    (``bench:result``); studies without one (or with ``use_records=False``) are read trial
    by trial, which is much slower on large storages.
    """
    runs: list[Run] = []
    best_cache: dict[tuple[str, str], float | None] = {}
    seen: dict[str, str] = {}
    for label, st in _storages(storage):
        for study in st.get_all_studies():
            parsed = parse_study_name(study.study_name)
            if parsed is None or not study.user_attrs.get(FINISHED_ATTR):
                continue
            if study.study_name in seen:
                raise ValueError(f"study {study.study_name!r} is finished in both {seen[study.study_name]!r} and {label!r}.")
            seen[study.study_name] = label
            run = _load_run(st, study, parsed, protocols, use_records, best_cache)
            if run is not None:
                runs.append(run)
    return runs


def _load_run(
    st: optuna.storages.BaseStorage,
    study: optuna.study.StudySummary | optuna.study.FrozenStudy,
    parsed: tuple[str, str, str, int],
    protocols: Sequence[str] | None,
    use_records: bool,
    best_cache: dict[tuple[str, str], float | None],
) -> Run | None:
    protocol, dataset, method, seed = parsed
    if protocols and protocol not in protocols:
        return None
    meta = study.user_attrs.get(META_ATTR, {})
    record = study.user_attrs.get(RESULT_ATTR) if use_records else None
    if record is not None:
        costs, tests, final_test, final_val, n_trials = from_record(record)
    else:
        trials = st.get_all_trials(study._study_id, deepcopy=False)
        costs, tests, final_test, final_val = incumbent_curve(trials, meta.get("top_level", ""))
        n_trials = len(trials)
    key = (dataset, str(meta.get("table", "")))
    if key not in best_cache:
        best_cache[key] = meta.get("best_test_acc_in_space", _best_from_table(meta.get("table"), dataset))
    versions = {"optuna": meta.get("optuna"), **meta.get("peer", {}).get("versions", {})}
    return Run(protocol, dataset, method, seed, float(meta.get("budget", math.nan)), final_test, final_val,
               n_trials, float(costs[-1]) if costs.size else 0.0, float(meta.get("wall_seconds", math.nan)),
               best_cache[key], costs, tests, str(meta.get("method_description", "")),
               {k: v for k, v in versions.items() if v is not None})


def _best_from_table(path: str | None, dataset: str) -> float | None:
    if not path:
        return None
    try:
        from optuna_mfkd.nasbench201.table import load_table

        return load_table(path).best_test_acc(dataset)
    except (FileNotFoundError, ValueError, ImportError):
        return None


#: Fractions of the budget at which the report gives the incumbent's mean (anytime view).
ANYTIME_FRACTIONS: tuple[float, ...] = (0.25, 0.5)


def incumbent_at(run: Run, costs: np.ndarray | Sequence[float]) -> np.ndarray:
    """The incumbent's test accuracy of ``run`` once ``costs`` simulated seconds are spent.

    The value after the last trial whose cumulative cost is ``<= c``; NaN before the first
    incumbent.
    """
    grid = np.asarray(costs, dtype=float)
    out = np.full(grid.shape, np.nan)
    if run.curve_cost.size:
        pos = np.searchsorted(run.curve_cost, grid, side="right") - 1
        valid = pos >= 0
        out[valid] = run.curve_test[pos[valid]]
    return out


def summarise(runs: Sequence[Run], fractions: Sequence[float] = ANYTIME_FRACTIONS) -> list[dict[str, object]]:
    """One row per (protocol, dataset, method) with statistics and tests against references.

    ``fractions``: the budget fractions of the anytime columns ``mean_at_<f>_budget``.
    """
    from scipy.stats import mannwhitneyu

    rows: list[dict[str, object]] = []
    groups: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault((r.protocol, r.dataset), {}).setdefault(r.method, []).append(r)
    for (protocol, dataset), by_method in sorted(groups.items()):
        order = [m for m in METHODS if m in by_method] + sorted(m for m in by_method if m not in METHODS)
        refs = [m for m in REFERENCE_METHODS if m in by_method]
        family_rows = []
        for m in order:
            vals = np.array([r.final_test for r in by_method[m]], dtype=float)
            best = by_method[m][0].best_in_space
            row: dict[str, object] = {
                "protocol": protocol, "dataset": dataset, "method": m, "n_seeds": len(vals),
                "mean": float(np.nanmean(vals)), "std": float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else math.nan,
                "median": float(np.nanmedian(vals)),
                "mean_regret": float(best - np.nanmean(vals)) if best is not None else math.nan,
                "mean_trials": float(np.mean([r.n_trials for r in by_method[m]])),
                "wall_s_per_trial": float(np.nanmean([r.wall_seconds / max(r.n_trials, 1) for r in by_method[m]])),
                "budget": by_method[m][0].budget,
            }
            for frac in fractions:
                at = np.array([incumbent_at(r, [frac * r.budget])[0] for r in by_method[m]])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # no incumbent yet in any seed
                    row[f"mean_at_{frac:g}_budget"] = float(np.nanmean(at))
            family_rows.append(row)
        for ref in refs:
            ref_vals = np.array([r.final_test for r in by_method[ref]], dtype=float)
            pvals = []
            for row in family_rows:
                m = str(row["method"])
                vals = np.array([r.final_test for r in by_method[m]], dtype=float)
                if m == ref or len(vals) < 2 or len(ref_vals) < 2:
                    pvals.append(math.nan)
                    row[f"p_vs_{ref}"] = math.nan
                    row[f"ref_ahead_prob_{ref}"] = math.nan
                    continue
                res = mannwhitneyu(ref_vals, vals, alternative="two-sided")
                row[f"p_vs_{ref}"] = float(res.pvalue)
                # P(ref > method) + 0.5 P(tie), the common-language effect size of U.
                row[f"ref_ahead_prob_{ref}"] = float(res.statistic) / (len(ref_vals) * len(vals))
                pvals.append(float(res.pvalue))
            for row, adj in zip(family_rows, holm(pvals), strict=True):
                row[f"p_holm_vs_{ref}"] = adj
                row[f"diff_{ref}"] = float(np.nanmean(ref_vals)) - float(row["mean"])  # type: ignore[arg-type]
        rows.extend(family_rows)
    return rows


def verdict(row: dict[str, object], ref: str, alpha: float = 0.05) -> str:
    """Plain-language comparison of ``ref`` with the row's method."""
    p = row.get(f"p_holm_vs_{ref}")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    prob = float(row[f"ref_ahead_prob_{ref}"])  # type: ignore[arg-type]
    diff = float(row[f"diff_{ref}"])  # type: ignore[arg-type]
    if float(p) < alpha:  # type: ignore[arg-type]
        word = "ahead" if prob > 0.5 else "behind"
        return f"{ref} {word} ({diff:+.2f} pts, P={prob:.2f}, p_Holm={float(p):.2g})"  # type: ignore[arg-type]
    return f"no significant difference ({diff:+.2f} pts, P={prob:.2f}, p_Holm={float(p):.2g})"  # type: ignore[arg-type]


_COLORS = {
    "random": "tab:blue", "tpe": "tab:orange", "gp": "tab:green", "re": "tab:red", "mfkd-gpr": "tab:purple",
    "bohb": "tab:brown", "hyperband": "tab:pink", "mfkd": "black", "mfkd-nst": "black", "mfkd-ce": "tab:olive",
    "mfkd-kd": "tab:cyan", "dehb": "tab:gray", "syne-bohb": "gold", "syne-asha": "navy", "smac-mf": "lime",
    "smac-hb": "teal",
}


def plot_curves(runs: Sequence[Run], path: Path, title: str, n_grid: int = 200) -> None:
    """Anytime curves of one (protocol, dataset): incumbent test accuracy vs simulated seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = max(r.budget for r in runs)
    grid = np.linspace(0.0, budget, n_grid)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lows: list[float] = []
    highs: list[float] = []
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    for m in [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS)):
        mat = np.stack([incumbent_at(r, grid) for r in by_method[m]])
        counts = np.sum(~np.isnan(mat), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any incumbent
            mean = np.nanmean(mat, axis=0)
            sd = np.nanstd(mat, axis=0, ddof=1)
        mean[counts < max(1, len(by_method[m]) // 2)] = np.nan  # shown once half the seeds have one
        se = np.where(counts > 1, sd / np.sqrt(np.maximum(counts, 1)), 0.0)
        lw = 2.2 if m in REFERENCE_METHODS else 1.4
        color = _COLORS.get(m)
        ls = "--" if m in PEERS else "-"  # other libraries' optimisers dashed
        ax.plot(grid, mean, label=f"{m} (n={len(by_method[m])})", lw=lw, color=color, ls=ls)
        ax.fill_between(grid, mean - se, mean + se, alpha=0.2, color=color)
        if np.any(~np.isnan(mean)):
            highs.append(np.nanmax(mean + se))
        quarter = mean[grid.size // 4 :]
        if np.any(~np.isnan(quarter)):
            lows.append(np.nanmin(quarter))
    if lows and highs:
        ax.set_ylim(min(lows) - 0.5, max(highs) + 0.2)
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("test accuracy of the incumbent (%), 200 epochs")
    ax.set_title(title + "\n(mean over seeds; band: +- 1 standard error)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: object, nd: int = 2) -> str:
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


def write_report(
    storage: Storages,
    out_dir: str | Path,
    protocols: Sequence[str] | None = None,
    command: str | None = None,
    table_path: str | None = None,
    anytime: Sequence[float] = ANYTIME_FRACTIONS,
) -> Path:
    """Write README.md, runs.csv, summary.csv and the curve PNGs for ``storage`` into ``out_dir``.

    ``storage``: one storage (URL or object) or several, read by :func:`load_runs`.

    ``table_path`` is unused when the studies record their table (kept for callers that
    pass it); ``anytime``: budget fractions of the anytime columns. Returns the README path.
    """
    if not anytime or any(not 0 < f <= 1 for f in anytime):
        raise ValueError(f"anytime fractions must lie in (0, 1], got {list(anytime)}.")
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(storage, protocols)
    if not runs:
        raise ValueError(f"no finished benchmark studies in {storage!r}.")
    pd.DataFrame(
        [{"protocol": r.protocol, "dataset": r.dataset, "method": r.method, "seed": r.seed,
          "final_test_acc": r.final_test, "final_val": r.final_val, "n_trials": r.n_trials,
          "total_cost_s": r.total_cost, "budget_s": r.budget, "wall_seconds": r.wall_seconds} for r in runs]
    ).sort_values(["protocol", "dataset", "method", "seed"]).to_csv(out / "runs.csv", index=False)
    rows = summarise(runs, anytime)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)

    lines = ["# NAS-Bench-201 benchmark results", ""]
    if command:
        lines += ["Report written by:", "", "```", command, "```", ""]
    lines += [
        "Final figure of a run: the 200-epoch test accuracy (%) of the incumbent, the best",
        "trial at the protocol's top level. Regret: best cell in the space minus the mean.",
        f"At {' / '.join(f'{f:g}' for f in anytime)} budget: the incumbent's mean once that fraction of the budget is",
        "spent, after the last trial that fits in it (seeds without an incumbent by then are left out).",
        "Tests: two-sided Mann-Whitney U of each method against each MFKDSampler variant, Holm",
        "correction within each family; P = P(MFKDSampler variant > method) + 0.5 P(tie).",
        "Wall s/trial: the whole ask -> objective -> tell step on this machine (1 thread).",
        "",
        "The table holds means over NB201's training seeds, while NB201's own simulation draws one",
        "seed per query; published figures below are context only, not a side-by-side result.",
        "",
    ]
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["protocol"]), str(row["dataset"])), []).append(row)
    for (protocol, dataset), grp in sorted(groups.items()):
        refs = [m for m in REFERENCE_METHODS if any(r["method"] == m for r in grp)]
        seeds = sorted({int(r["n_seeds"]) for r in grp})  # type: ignore[call-overload]
        lines += [f"## {protocol} / {dataset}", "",
                  f"Budget {float(grp[0]['budget']):,.0f} simulated seconds; seeds per method: "  # type: ignore[arg-type]
                  f"{', '.join(map(str, seeds))}.", ""]
        at_cols = [f"at {frac:g} budget" for frac in anytime]
        header = (["method", "n", "mean +- std", "median", *at_cols, "regret", "queries", "wall s/trial"]
                  + [f"vs {r}" for r in refs])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in grp:
            cells = [f"`{r['method']}`", str(r["n_seeds"]), f"{_fmt(r['mean'])} +- {_fmt(r['std'])}", _fmt(r["median"]),
                     *(_fmt(r[f"mean_at_{frac:g}_budget"]) for frac in anytime), _fmt(r["mean_regret"]), _fmt(r["mean_trials"], 1), _fmt(r["wall_s_per_trial"], 3)]
            cells += [verdict(r, ref) or "—" for ref in refs]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for ref in refs:
            others = [r for r in grp if r["method"] != ref]
            ahead = [str(r["method"]) for r in others if verdict(r, ref).startswith(f"{ref} ahead")]
            behind = [str(r["method"]) for r in others if verdict(r, ref).startswith(f"{ref} behind")]
            tied = [str(r["method"]) for r in others if verdict(r, ref).startswith("no significant")]
            answer = "yes" if others and len(ahead) == len(others) else "no"
            lines.append(
                f"- Is `{ref}` ahead of every other method here (p_Holm < 0.05)? **{answer}**. "
                f"Ahead of: {', '.join(ahead) or 'none'}; no significant difference: {', '.join(tied) or 'none'}; "
                f"behind: {', '.join(behind) or 'none'}."
            )
        png = f"curves-{protocol}-{dataset}.png"
        plot_curves([r for r in runs if r.protocol == protocol and r.dataset == dataset], out / png,
                    f"{protocol} / {dataset}")
        lines += ["", f"![anytime curves {protocol} {dataset}]({png})", ""]
    lines += _methods_section(runs)
    lines += ["## Published figures (context)", "", "| | " + " | ".join(["cifar10", "cifar100", "imagenet16"]) + " |", "|---|---|---|---|"]
    for name, vals in PAPER_FIGURES.items():
        lines.append(f"| {name} | " + " | ".join(vals[d] for d in ["cifar10", "cifar100", "imagenet16"]) + " |")
    lines.append("")
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return readme


def _methods_section(runs: Sequence[Run]) -> list[str]:
    """Markdown table of the methods: description and the package versions their studies recorded."""
    by_method: dict[str, tuple[set[str], set[str]]] = {}
    for r in runs:
        desc, vers = by_method.setdefault(r.method, (set(), set()))
        if r.description:
            desc.add(r.description)
        vers.update(f"{k} {v}" for k, v in r.versions.items())
    order = [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS))
    lines = ["## Methods", "", "| method | description | versions recorded |", "|---|---|---|"]
    for m in order:
        desc, vers = by_method[m]
        lines.append(f"| `{m}` | {'; '.join(sorted(desc)) or '—'} | {', '.join(sorted(vers)) or '—'} |")
    return [*lines, ""]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="optuna-mfkd report", description="Summarise benchmark studies.")
    p.add_argument("--storage", required=True, nargs="+",
                   help="RDB URL(s) holding the benchmark studies (several: their studies are pooled)")
    p.add_argument("--out", required=True, help="folder for README.md, CSVs and PNGs")
    p.add_argument("--protocols", nargs="+", default=None, help="only these protocols")
    p.add_argument("--anytime", nargs="+", type=float, default=list(ANYTIME_FRACTIONS),
                   help="budget fractions of the anytime columns (default: 0.25 0.5)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "optuna-mfkd report " + " ".join(shlex.quote(a) for a in argv)
    path = write_report(args.storage, args.out, args.protocols, command=command, anytime=args.anytime)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
