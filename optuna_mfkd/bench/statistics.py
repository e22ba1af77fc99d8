"""The statistics of a report: each method's figures and its tests against the references.

- :func:`summarise`: one row per (problem, method): mean, std, median of the incumbent's final
  metric, its mean at fractions of the budget, and two-sided Mann-Whitney U tests of each
  method against each reference (:func:`compare`), Holm-corrected (:func:`holm`) within each
  family (one problem, one reference, one point of the budget);
- :func:`verdict_word` / :func:`verdict`: ahead / level / behind, in words;
- :func:`worst_decile`: the mean of the worst tenth of the seeds.

Holm's step-down correction of m p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
``p'_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from optuna_mfkd.bench.methods import METHODS, reference_methods
from optuna_mfkd.bench.results import Run, incumbent_at

#: Fractions of the budget at which the report gives the incumbent's mean (anytime view).
ANYTIME_FRACTIONS: tuple[float, ...] = (0.25, 0.5)


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


def worst_decile(values: Sequence[float] | np.ndarray, higher_is_better: bool) -> float:
    """The mean of the worst tenth of the seeds' values (at least one seed): the figure a user
    running one seed should fear. A seed without a value (NaN) is the worst of all, and a worst
    tenth that holds one has no mean (NaN)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return math.nan
    worst_first = np.sort(np.where(np.isnan(v), -np.inf if higher_is_better else np.inf, v))
    if not higher_is_better:
        worst_first = worst_first[::-1]
    tail = worst_first[: max(1, v.size // 10)]
    return math.nan if np.isinf(tail).any() else float(np.mean(tail))


#: Method order of tables and plots: the registry's.
METHOD_ORDER: tuple[str, ...] = tuple(METHODS)


def ordered(methods: Sequence[str] | set[str], preferred: Sequence[str] | None = None) -> list[str]:
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
    references: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """One row per (problem, method) with statistics and tests against the references.

    Figures of the final incumbent: ``mean``, ``std``, ``median`` and ``worst_decile``
    (:func:`worst_decile`); ``mean_at_<frac>_budget`` at each of ``fractions``.

    Problems in ``problem_order`` (``<name>/<variant>`` ids) come first in that order, the
    rest sorted; methods in ``method_order`` first, then the registry's order.

    ``references``: the methods the others are compared with, where present (default: the
    MFKDSampler variants, :func:`~optuna_mfkd.bench.methods.reference_methods`).

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
        order = ordered(set(by_method), method_order)
        refs = reference_methods(by_method, references)
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
                "worst_decile": worst_decile(vals, metric.higher_is_better),
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


def short_verdict(row: dict[str, object], ref: str, frac: float | None) -> str:
    word = verdict_word(row, ref, frac)
    return f"{word} (p_Holm={float(row[f'p_holm_vs_{ref}{_at_key(frac)}']):.2g})" if word else "—"  # type: ignore[arg-type]
