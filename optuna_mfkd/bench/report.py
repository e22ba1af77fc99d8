"""Summarise benchmark studies from their storage: tables, tests, anytime curves.

Reads every finished harness study (``<problem>/<variant>/<method>/seed-<k>``; for NB201
``<protocol>/<dataset>/<method>/seed-<k>``) of one or more storages (e.g. single-level
baselines in one database, multi-fidelity runs with several warm-up sizes in others; a study
name found twice is an error) and writes into ``out_dir``:

- ``README.md``: per problem (protocol and dataset), each method's final metric of the
  incumbent (mean +- std, median; NB201: the 200-epoch test accuracy, synthetic problems:
  the log10 simple regret), its mean at a quarter and half of the budget, regret to the best
  cell in the space (NB201), the number of queries, wall seconds per trial, CPU seconds per run, and
  two-sided Mann-Whitney U tests of each method against each MFKDSampler variant present,
  Holm-corrected within each comparison family (one problem, one reference, one point of the
  budget); with ``anytime_tests`` the same tests at a quarter and half of the budget and an
  overview of the verdicts of every problem;
  the methods with their descriptions and the package versions their studies recorded
  (Optuna, a peer's own packages);
- ``runs.csv`` (one row per study) and ``summary.csv`` (one row per method and problem);
- ``curves-<problem>-<variant>.png``: anytime curves, the incumbent's metric against the
  cost spent (mean over seeds, band = +- 1 standard error of the mean).

The incumbent is the best COMPLETE trial at the problem's top level found so far (ties:
the earlier trial); its metric is recorded when the trial is evaluated and never used by
the search. A seed without a top-level incumbent yet (a multi-fidelity method still on its
cheap levels) is left out of the means at a point of the budget and ranks below every seed
with one in the tests there.

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
    study_metric,
)
from optuna_mfkd.bench.incumbent import from_record, incumbent_curve
from optuna_mfkd.bench.methods import (
    FALLBACK_REFERENCE_METHODS,
    METHODS,
    REFERENCE_METHODS,
    SUITE_METHODS,
    reference_methods,
)
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric
from optuna_mfkd.datasets import DATASETS

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
    curve_test: np.ndarray = field(repr=False)  # incumbent's metric after each trial (nan before one)
    metric: Metric = NB201_TEST_ACCURACY  # what final_test and curve_test hold
    cost_unit: str = "simulated seconds"
    cpu_seconds: float = math.nan
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
    """Every finished harness study in ``storage`` (optionally only some protocols/problems).

    ``protocols``: names (``nb201``, ``hartmann6``) or ``<name>/<variant>`` ids
    (``nb201/cifar10``) of the problems to read; ``None``: all.

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
    if protocols and protocol not in protocols and f"{protocol}/{dataset}" not in protocols:
        return None
    meta = study.user_attrs.get(META_ATTR, {})
    metric = study_metric(meta)
    record = study.user_attrs.get(RESULT_ATTR) if use_records else None
    if record is not None:
        costs, tests, final_test, final_val, n_trials = from_record(record)
    else:
        trials = st.get_all_trials(study._study_id, deepcopy=False)
        direction = "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        costs, tests, final_test, final_val = incumbent_curve(trials, meta.get("top_level", ""), metric.attr, direction)
        n_trials = len(trials)
    key = (dataset, str(meta.get("table", "")))
    if key not in best_cache:
        best_cache[key] = meta.get("best_test_acc_in_space", _best_from_table(meta.get("table"), dataset))
    versions = {"optuna": meta.get("optuna"), **meta.get("peer", {}).get("versions", {})}
    return Run(protocol, dataset, method, seed, float(meta.get("budget", math.nan)), final_test, final_val,
               n_trials, float(costs[-1]) if costs.size else 0.0, float(meta.get("wall_seconds", math.nan)),
               best_cache[key], costs, tests, metric, str(meta.get("cost_unit", "simulated seconds")),
               float(meta.get("cpu_seconds", math.nan)), str(meta.get("method_description", "")),
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
    """The incumbent's metric of ``run`` once ``costs`` (in the run's cost unit) are spent.

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


#: Method order of tables and plots: the registry's, then the suite's additions.
METHOD_ORDER: tuple[str, ...] = tuple(METHODS) + tuple(m for m in SUITE_METHODS if m not in METHODS)


def _ordered(methods: Sequence[str] | set[str], preferred: Sequence[str] | None = None) -> list[str]:
    first = list(preferred or ()) + [m for m in METHOD_ORDER if m not in (preferred or ())]
    return [m for m in first if m in methods] + sorted(m for m in methods if m not in first)


def _at_key(frac: float | None) -> str:
    """Column suffix of a point of the budget (``""`` for the final incumbent)."""
    return "" if frac is None else f"_at_{frac:g}"


def values_at(runs: Sequence[Run], frac: float | None = None) -> np.ndarray:
    """Each run's incumbent metric: final (``frac`` ``None``) or once ``frac`` x budget is spent."""
    if frac is None:
        return np.array([r.final_test for r in runs], dtype=float)
    return np.array([incumbent_at(r, [frac * r.budget])[0] for r in runs], dtype=float)


def compare(ref: np.ndarray, other: np.ndarray, higher_is_better: bool) -> tuple[float, float]:
    """Two-sided Mann-Whitney U of ``ref`` against ``other``: ``(p, P(ref better) + P(tie) / 2)``.

    NaN (no incumbent yet) ranks below every value; ``(nan, nan)`` when either side has
    fewer than two values or every value is NaN.
    """
    from scipy.stats import mannwhitneyu

    if len(ref) < 2 or len(other) < 2 or (np.isnan(ref).all() and np.isnan(other).all()):
        return math.nan, math.nan
    worst = -np.inf if higher_is_better else np.inf
    a, b = np.where(np.isnan(ref), worst, ref), np.where(np.isnan(other), worst, other)
    res = mannwhitneyu(a, b, alternative="two-sided")
    above = float(res.statistic) / (len(a) * len(b))  # P(ref > other) + 0.5 P(tie)
    return float(res.pvalue), (above if higher_is_better else 1.0 - above)


def summarise(
    runs: Sequence[Run],
    fractions: Sequence[float] = ANYTIME_FRACTIONS,
    problem_order: Sequence[str] = (),
    method_order: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """One row per (problem, method) with statistics and tests against the references.

    Problems in ``problem_order`` (``<name>/<variant>`` ids) come first in that order, the
    rest sorted; methods in ``method_order`` first, then the registry's order.

    Columns per reference ``ref`` (an MFKDSampler variant present) and point of the budget
    (suffix ``""`` for the final incumbent, ``_at_<frac>`` for each of ``fractions``):
    ``p_vs_<ref>`` (two-sided Mann-Whitney U), ``p_holm_vs_<ref>`` (Holm over the methods
    compared with ``ref`` on this problem at this point), ``ref_ahead_prob_<ref>`` (P(ref
    better) + P(tie) / 2) and ``diff_<ref>`` (mean of ``ref`` minus the method's mean).
    """
    rows: list[dict[str, object]] = []
    groups: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault((r.protocol, r.dataset), {}).setdefault(r.method, []).append(r)
    for (protocol, dataset), by_method in sorted(groups.items(), key=lambda kv: _problem_key(kv[0], problem_order)):
        metrics = {r.metric for rs in by_method.values() for r in rs}
        if len(metrics) != 1:
            raise ValueError(f"{protocol}/{dataset}: the runs report different metrics {sorted(m.attr for m in metrics)}.")
        metric = metrics.pop()
        order = _ordered(set(by_method), method_order)
        refs = reference_methods(by_method)
        family_rows = []
        for m in order:
            group = by_method[m]
            vals = values_at(group)
            best = group[0].best_in_space
            row: dict[str, object] = {
                "protocol": protocol, "dataset": dataset, "method": m, "n_seeds": len(vals),
                "metric": metric.attr, "higher_is_better": metric.higher_is_better, "metric_unit": metric.unit,
                "mean": float(np.nanmean(vals)), "std": float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else math.nan,
                "median": float(np.nanmedian(vals)),
                "mean_regret": float(best - np.nanmean(vals)) if best is not None else math.nan,
                "mean_trials": float(np.mean([r.n_trials for r in group])),
                "wall_s_per_trial": float(np.nanmean([r.wall_seconds / max(r.n_trials, 1) for r in group])),
                "wall_s_per_run": float(np.nanmean([r.wall_seconds for r in group])),
                "cpu_s_per_run": float(np.nanmean([r.cpu_seconds for r in group]))
                if any(not math.isnan(r.cpu_seconds) for r in group) else math.nan,
                "budget": group[0].budget,
                "cost_unit": group[0].cost_unit,
            }
            for frac in fractions:
                at = values_at(group, frac)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # no incumbent yet in any seed
                    row[f"mean_at_{frac:g}_budget"] = float(np.nanmean(at))
                row[f"n_at_{frac:g}_budget"] = int(np.sum(~np.isnan(at)))
            family_rows.append(row)
        for ref in refs:
            for frac in (None, *fractions):
                ref_vals = values_at(by_method[ref], frac)
                pvals = []
                for row in family_rows:
                    m = str(row["method"])
                    p, prob = (math.nan, math.nan) if m == ref else compare(
                        ref_vals, values_at(by_method[m], frac), metric.higher_is_better)
                    key = _at_key(frac)
                    row[f"p_vs_{ref}{key}"] = p
                    row[f"ref_ahead_prob_{ref}{key}"] = prob
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        row[f"diff_{ref}{key}"] = float(np.nanmean(ref_vals) - np.nanmean(values_at(by_method[m], frac)))
                    pvals.append(p)
                for row, adj in zip(family_rows, holm(pvals), strict=True):
                    row[f"p_holm_vs_{ref}{_at_key(frac)}"] = adj
        rows.extend(family_rows)
    return rows


def _problem_key(key: tuple[str, str], order: Sequence[str]) -> tuple[int, str, str]:
    pid = f"{key[0]}/{key[1]}"
    return (list(order).index(pid) if pid in order else len(order), *key)


def verdict_word(row: dict[str, object], ref: str, frac: float | None = None, alpha: float = 0.05) -> str:
    """``"ahead"``, ``"behind"`` or ``"level"``: ``ref`` against the row's method (Holm p < alpha).

    ``""`` where there is no test (the row is ``ref`` itself, or too few seeds).
    """
    key = _at_key(frac)
    p = row.get(f"p_holm_vs_{ref}{key}")
    if p is None or math.isnan(float(p)):  # type: ignore[arg-type]
        return ""
    if float(p) < alpha:  # type: ignore[arg-type]
        return "ahead" if float(row[f"ref_ahead_prob_{ref}{key}"]) > 0.5 else "behind"  # type: ignore[arg-type]
    return "level"


def verdict(row: dict[str, object], ref: str, alpha: float = 0.05, frac: float | None = None) -> str:
    """Plain-language comparison of ``ref`` with the row's method."""
    word = verdict_word(row, ref, frac, alpha)
    if not word:
        return ""
    key = _at_key(frac)
    p = float(row[f"p_holm_vs_{ref}{key}"])  # type: ignore[arg-type]
    prob = float(row[f"ref_ahead_prob_{ref}{key}"])  # type: ignore[arg-type]
    diff = float(row[f"diff_{ref}{key}"])  # type: ignore[arg-type]
    unit = str(row.get("metric_unit", "pts"))
    shift = "" if math.isnan(diff) else f"{diff:+.2f} {unit}, "
    detail = f"({shift}P={prob:.2f}, p_Holm={p:.2g})"
    if word == "level":
        return f"no significant difference {detail}"
    return f"{ref} {word} {detail}"


def _short_verdict(row: dict[str, object], ref: str, frac: float | None) -> str:
    word = verdict_word(row, ref, frac)
    return f"{word} (p_Holm={float(row[f'p_holm_vs_{ref}{_at_key(frac)}']):.2g})" if word else "—"  # type: ignore[arg-type]


_COLORS = {
    "random": "tab:blue", "tpe": "tab:orange", "gp": "tab:green", "re": "tab:red", "mfkd-gpr": "tab:purple",
    "bohb": "tab:brown", "hyperband": "tab:pink", "mfkd": "black", "mfkd-nst": "black", "mfkd-ce": "tab:olive",
    "mfkd-kd": "tab:cyan", "mfkd-paper": "tab:gray", "dehb": "black", "syne-bohb": "gold",
    "syne-asha": "navy", "smac-mf": "lime", "smac-hb": "teal",
}


def plot_curves(runs: Sequence[Run], path: Path, title: str, n_grid: int = 200,
                method_order: Sequence[str] | None = None) -> None:
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
    refs = reference_methods(by_method)
    for m in _ordered(set(by_method), method_order):
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


def _fmt(x: object, nd: int = 2) -> str:
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


def _fmt_budget(budget: float) -> str:
    return f"{budget:,.0f}" if budget >= 1000 else f"{budget:g}"


def _at_cell(row: dict[str, object], frac: float) -> str:
    # The mean once frac x budget is spent, and how many seeds had an incumbent by then.
    n, k = int(row["n_seeds"]), int(row[f"n_at_{frac:g}_budget"])  # type: ignore[call-overload]
    text = _fmt(row[f"mean_at_{frac:g}_budget"])
    return text if k == n else f"{text} ({k}/{n})"


_NB201_INTRO = [
    "NAS-Bench-201 problems: the figure of a run is the 200-epoch test accuracy (%) of the incumbent,",
    "the best trial at the protocol's top level; regret: best cell in the space minus the mean.",
    "The table holds means over NB201's training seeds, while NB201's own simulation draws one",
    "seed per query; published figures below are context only, not a side-by-side result.",
    "",
]
_SYNTHETIC_INTRO = [
    "Synthetic problems (BoTorch test functions, minimised): the figure of a run is the log10 simple",
    "regret log10(f(x_inc) - f*) of the incumbent, the best trial at the top level (lower is better);",
    "costs are in top-level evaluations (a top-level evaluation costs 1).",
    "",
]


def _overview(rows: list[dict[str, object]], fractions: Sequence[float], tuning: Sequence[str]) -> list[str]:
    """One table per reference (its verdict against each method on every problem), and the
    CPU cost of a run of each method on each problem."""
    lines: list[str] = []
    problems = list(dict.fromkeys((str(r["protocol"]), str(r["dataset"])) for r in rows))
    refs = list(dict.fromkeys(
        ref for pid in problems
        for ref in reference_methods({str(r["method"]) for r in rows if (r["protocol"], r["dataset"]) == pid})))
    points = [*(f"{frac:.0%}" for frac in fractions), "final"]
    for ref in refs:
        others = list(dict.fromkeys(str(r["method"]) for r in rows if r["method"] != ref))
        lines += [f"## Verdicts: `{ref}` against each method", "",
                  f"`{ref}` ahead / level / behind (Holm-corrected two-sided Mann-Whitney U, p < 0.05) at "
                  f"{' / '.join(points)} of the budget; `*`: a problem used to choose defaults.", "",
                  "| problem | " + " | ".join(f"vs `{m}`" for m in others) + " |",
                  "|---|" + "---|" * len(others)]
        for protocol, dataset in problems:
            grp = {str(r["method"]): r for r in rows if (r["protocol"], r["dataset"]) == (protocol, dataset)}
            if ref not in grp:
                continue
            pid = f"{protocol}/{dataset}"
            cells = []
            for m in others:
                row = grp.get(m)
                words = [verdict_word(row, ref, frac) or "—" for frac in (*fractions, None)] if row else []
                cells.append(" / ".join(words) if words else "—")
            lines.append(f"| {pid}{' *' if pid in tuning else ''} | " + " | ".join(cells) + " |")
        lines.append("")
    if all(math.isnan(float(r["cpu_s_per_run"])) for r in rows):  # type: ignore[arg-type]
        return [*lines, ""]  # studies from before the harness recorded CPU time
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    lines += ["## Cost of a run", "", "CPU seconds per run (mean over seeds, one thread); last column: all methods.", "",
              "| problem | " + " | ".join(f"`{m}`" for m in methods) + " | all |", "|---|" + "---|" * (len(methods) + 1)]
    for protocol, dataset in problems:
        cpu = {str(r["method"]): float(r["cpu_s_per_run"]) for r in rows  # type: ignore[arg-type]
               if (r["protocol"], r["dataset"]) == (protocol, dataset)}
        total = sum(v for v in cpu.values() if not math.isnan(v))
        lines.append(f"| {protocol}/{dataset} | " + " | ".join(_fmt(cpu.get(m, math.nan), 1) for m in methods)
                     + f" | {total:.1f} |")
    return [*lines, ""]


def write_report(
    storage: Storages,
    out_dir: str | Path,
    protocols: Sequence[str] | None = None,
    command: str | None = None,
    table_path: str | None = None,
    title: str = "NAS-Bench-201 benchmark results",
    notes: Sequence[str] = (),
    anytime_tests: bool = False,
    tuning: Sequence[str] = (),
    problem_order: Sequence[str] = (),
    method_order: Sequence[str] | None = None,
    anytime: Sequence[float] = ANYTIME_FRACTIONS,
) -> Path:
    """Write README.md, runs.csv, summary.csv and the curve PNGs for ``storage`` into ``out_dir``.

    Args:
        storage: one storage (URL or object) or several, read by :func:`load_runs`.
        out_dir: the folder to write.
        protocols: only these problems (names or ``<name>/<variant>`` ids).
        command: the command that made the report (quoted at the top).
        table_path: unused when the studies record their table (kept for callers that pass it).
        title: the README's title.
        notes: paragraphs (Markdown lines) after the introduction.
        anytime_tests: also test and show the verdicts at each point of ``anytime``, and
            open with an overview of every problem's verdicts.
        tuning: ``<name>/<variant>`` ids of the problems used to choose defaults (marked).
        problem_order, method_order: the order of problems and methods (see :func:`summarise`).
        anytime: the budget fractions of the anytime columns (default :data:`ANYTIME_FRACTIONS`;
            1 is the incumbent after the last trial that fits in the budget).

    Returns:
        The README path.
    """
    import pandas as pd

    if not anytime or any(not 0 < f <= 1 for f in anytime):
        raise ValueError(f"anytime fractions must lie in (0, 1], got {list(anytime)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(storage, protocols)
    if not runs:
        raise ValueError(f"no finished benchmark studies in {storage!r}.")
    pd.DataFrame(
        [{"protocol": r.protocol, "dataset": r.dataset, "method": r.method, "seed": r.seed,
          "metric": r.metric.attr, "final": r.final_test,
          "final_test_acc": r.final_test if r.metric == NB201_TEST_ACCURACY else math.nan,
          "final_val": r.final_val, "n_trials": r.n_trials,
          "total_cost_s": r.total_cost, "budget_s": r.budget, "cost_unit": r.cost_unit,
          "wall_seconds": r.wall_seconds, "cpu_seconds": r.cpu_seconds} for r in runs]
    ).sort_values(["protocol", "dataset", "method", "seed"]).to_csv(out / "runs.csv", index=False)
    rows = summarise(runs, anytime, problem_order=problem_order, method_order=method_order)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)

    metrics = {r.metric for r in runs}
    lines = [f"# {title}", ""]
    if command:
        lines += ["Report written by:", "", "```", command, "```", ""]
    if NB201_TEST_ACCURACY in metrics:
        lines += _NB201_INTRO
    if metrics - {NB201_TEST_ACCURACY}:
        lines += _SYNTHETIC_INTRO
    lines += [
        f"At {' / '.join(f'{f:g}' for f in anytime)} budget: the incumbent's mean once that fraction of the budget",
        "is spent, after the last trial that fits in it (seeds without an incumbent by then are left out of",
        "the mean; (k/n): seeds with one).",
        "Tests: two-sided Mann-Whitney U of each method against each MFKDSampler variant, Holm",
        "correction within each family (one problem, one reference, one point of the budget);",
        "P = P(MFKDSampler variant better than the method) + 0.5 P(tie); a seed with no incumbent yet",
        "ranks below every seed with one.",
        "Wall s/trial: the whole ask -> objective -> tell step on this machine (1 thread); CPU s/run:",
        "the CPU seconds of a whole run (not inflated by other jobs on the machine).",
        "",
        *notes,
    ]
    if notes:
        lines.append("")
    if anytime_tests:
        lines += _overview(rows, anytime, tuning)
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["protocol"]), str(row["dataset"])), []).append(row)
    for (protocol, dataset), grp in groups.items():  # in the order of summarise
        group_runs = [r for r in runs if r.protocol == protocol and r.dataset == dataset]
        metric = group_runs[0].metric
        refs = reference_methods({str(r["method"]) for r in grp})
        seeds = sorted({int(r["n_seeds"]) for r in grp})  # type: ignore[call-overload]
        pid = f"{protocol}/{dataset}"
        lines += [f"## {protocol} / {dataset}", "",
                  f"Budget {_fmt_budget(float(grp[0]['budget']))} {grp[0]['cost_unit']}; "  # type: ignore[arg-type]
                  f"seeds per method: {', '.join(map(str, seeds))}; metric: {metric.label} "
                  f"({'higher' if metric.higher_is_better else 'lower'} is better)"
                  + ("; a problem used to choose defaults." if pid in tuning else "."), ""]
        if refs and refs[0] in FALLBACK_REFERENCE_METHODS:
            lines += [f"No run of {', '.join(f'`{m}`' for m in REFERENCE_METHODS)} on this problem: the methods "
                      f"are compared with {', '.join(f'`{m}`' for m in refs)} instead.", ""]
        show_regret = any(not math.isnan(float(r["mean_regret"])) for r in grp)  # type: ignore[arg-type]
        at_cols = [f"at {frac:g} budget" for frac in anytime]
        header = (["method", "n", "mean +- std", "median", *at_cols, *(["regret"] if show_regret else []),
                   "queries", "wall s/trial", "CPU s/run"] + [f"vs {r}" for r in refs])
        if anytime_tests:
            header += [f"vs {r} at {frac:g}" for r in refs for frac in anytime]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in grp:
            cells = [f"`{r['method']}`", str(r["n_seeds"]), f"{_fmt(r['mean'])} +- {_fmt(r['std'])}", _fmt(r["median"]),
                     *(_at_cell(r, frac) for frac in anytime),
                     *([_fmt(r["mean_regret"])] if show_regret else []),
                     _fmt(r["mean_trials"], 1), _fmt(r["wall_s_per_trial"], 3), _fmt(r["cpu_s_per_run"], 1)]
            cells += [verdict(r, ref) or "—" for ref in refs]
            if anytime_tests:
                cells += [_short_verdict(r, ref, frac) for ref in refs for frac in anytime]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for ref in refs:
            others = [r for r in grp if r["method"] != ref]
            ahead = [str(r["method"]) for r in others if verdict_word(r, ref) == "ahead"]
            behind = [str(r["method"]) for r in others if verdict_word(r, ref) == "behind"]
            tied = [str(r["method"]) for r in others if verdict_word(r, ref) == "level"]
            answer = "yes" if others and len(ahead) == len(others) else "no"
            lines.append(
                f"- Is `{ref}` ahead of every other method here (p_Holm < 0.05)? **{answer}**. "
                f"Ahead of: {', '.join(ahead) or 'none'}; no significant difference: {', '.join(tied) or 'none'}; "
                f"behind: {', '.join(behind) or 'none'}."
            )
        png = f"curves-{protocol}-{dataset}.png"
        plot_curves(group_runs, out / png, f"{protocol} / {dataset}", method_order=method_order)
        lines += ["", f"![anytime curves {protocol} {dataset}]({png})", ""]
    lines += _methods_section(runs)
    if NB201_TEST_ACCURACY in metrics:
        lines += ["## Published figures (context)", "", "| | " + " | ".join(DATASETS) + " |", "|---|---|---|---|"]
        for name, vals in PAPER_FIGURES.items():
            lines.append(f"| {name} | " + " | ".join(vals[d] for d in DATASETS) + " |")
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
    p.add_argument("--anytime-tests", action="store_true", help="also test against MFKDSampler at those fractions")
    p.add_argument("--title", default=None, help="the README's title")
    p.add_argument("--notes", type=Path, default=None, help="Markdown file placed after the introduction")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "optuna-mfkd report " + " ".join(shlex.quote(a) for a in argv)
    notes = args.notes.read_text().rstrip("\n").splitlines() if args.notes else ()
    extra = {"title": args.title} if args.title else {}
    path = write_report(args.storage, args.out, args.protocols, command=command, notes=notes,
                        anytime_tests=args.anytime_tests, anytime=args.anytime, **extra)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
