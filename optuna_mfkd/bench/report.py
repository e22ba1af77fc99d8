"""Summarise benchmark studies from their storage: tables, tests, anytime curves (the report engine).

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

The runs come from :mod:`optuna_mfkd.bench.results`, the tests from
:mod:`optuna_mfkd.bench.statistics`, the curves from :mod:`optuna_mfkd.bench.plots`. What a
report says about its problems beyond its tables (what the figures mean, published figures
quoted as context, notes) is given by the caller: ``intro``, ``notes`` and ``appendix`` of
:func:`write_report`; the repository's benchmark scripts take theirs from ``benchmarks/``.
The command line is ``optuna-mfkd report`` (:mod:`optuna_mfkd.cli.report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from optuna_mfkd.bench.methods import (
    METHODS,
    principal_references,
    reference_methods,
    stand_in_references,
)
from optuna_mfkd.bench.plots import plot_curves
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY
from optuna_mfkd.bench.results import Run, Storages, load_runs
from optuna_mfkd.bench.statistics import (
    ANYTIME_FRACTIONS,
    short_verdict,
    summarise,
    verdict,
    verdict_word,
)


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


def _overview(rows: list[dict[str, object]], fractions: Sequence[float], tuning: Sequence[str],
              references: Sequence[str] | None = None) -> list[str]:
    """One table per reference (its verdict against each method on every problem), and the
    CPU cost of a run of each method on each problem."""
    lines: list[str] = []
    problems = list(dict.fromkeys((str(r["protocol"]), str(r["dataset"])) for r in rows))
    refs = list(dict.fromkeys(
        ref for pid in problems
        for ref in reference_methods({str(r["method"]) for r in rows if (r["protocol"], r["dataset"]) == pid},
                                     references)))
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
    intro: Sequence[str] = (),
    appendix: Sequence[str] = (),
    references: Sequence[str] | None = None,
) -> Path:
    """Write README.md, runs.csv, summary.csv and the curve PNGs for ``storage`` into ``out_dir``.

    Args:
        storage: one storage (URL or object) or several, read by :func:`load_runs`.
        out_dir: the folder to write.
        protocols: only these problems (names or ``<name>/<variant>`` ids).
        command: the command that made the report (quoted at the top).
        table_path: unused when the studies record their table (kept for callers that pass it).
        title: the README's title.
        notes: paragraphs (Markdown lines) after the report's account of its statistics.
        anytime_tests: also test and show the verdicts at each point of ``anytime``, and
            open with an overview of every problem's verdicts.
        tuning: ``<name>/<variant>`` ids of the problems used to choose defaults (marked).
        problem_order, method_order: the order of problems and methods (see :func:`summarise`).
        anytime: the budget fractions of the anytime columns (default :data:`ANYTIME_FRACTIONS`;
            1 is the incumbent after the last trial that fits in the budget).
        intro: Markdown lines after the command, before the account of the statistics (what
            the figures are; the repository's: ``benchmarks/report_text.py``).
        appendix: Markdown lines at the end (e.g. published figures quoted as context).
        references: the methods the others are compared with, where present (default: the
            MFKDSampler variants, :func:`~optuna_mfkd.bench.methods.reference_methods`).

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
    rows = summarise(runs, anytime, problem_order=problem_order, method_order=method_order, references=references)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)

    lines = [f"# {title}", ""]
    if command:
        lines += ["Report written by:", "", "```", command, "```", ""]
    lines += [
        *intro,
        f"At {' / '.join(f'{f:g}' for f in anytime)} budget: the incumbent's mean once that fraction of the budget",
        "is spent, after the last trial that fits in it (seeds without an incumbent by then are left out of",
        "the mean; (k/n): seeds with one).",
        "Tests: two-sided Mann-Whitney U of each method against each MFKDSampler variant, Holm",
        "correction within each family (one problem, one reference, one point of the budget);",
        "P = P(MFKDSampler variant better than the method) + 0.5 P(tie); a seed with no incumbent yet",
        "ranks below every seed with one. Worst 10%: the mean of the worst tenth of the seeds (at least",
        "one) at the end of the budget, the figure a user running one seed should fear.",
        "Wall s/trial: the whole ask -> objective -> tell step on this machine (1 thread); CPU s/run:",
        "the CPU seconds of a whole run (not inflated by other jobs on the machine).",
        "",
        *notes,
    ]
    if notes:
        lines.append("")
    if anytime_tests:
        lines += _overview(rows, anytime, tuning, references)
    groups: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["protocol"]), str(row["dataset"])), []).append(row)
    for (protocol, dataset), grp in groups.items():  # in the order of summarise
        group_runs = [r for r in runs if r.protocol == protocol and r.dataset == dataset]
        metric = group_runs[0].metric
        refs = reference_methods({str(r["method"]) for r in grp}, references)
        seeds = sorted({int(r["n_seeds"]) for r in grp})  # type: ignore[call-overload]
        pid = f"{protocol}/{dataset}"
        lines += [f"## {protocol} / {dataset}", "",
                  f"Budget {_fmt_budget(float(grp[0]['budget']))} {grp[0]['cost_unit']}; "  # type: ignore[arg-type]
                  f"seeds per method: {', '.join(map(str, seeds))}; metric: {metric.label} "
                  f"({'higher' if metric.higher_is_better else 'lower'} is better)"
                  + ("; a problem used to choose defaults." if pid in tuning else "."), ""]
        if references is None and stand_in_references(refs):
            lines += [f"No run of {', '.join(f'`{m}`' for m in principal_references())} on this problem: the methods "
                      f"are compared with {', '.join(f'`{m}`' for m in refs)} instead.", ""]
        show_regret = any(not math.isnan(float(r["mean_regret"])) for r in grp)  # type: ignore[arg-type]
        at_cols = [f"at {frac:g} budget" for frac in anytime]
        header = (["method", "n", "mean +- std", "median", "worst 10%", *at_cols, *(["regret"] if show_regret else []),
                   "queries", "wall s/trial", "CPU s/run"] + [f"vs {r}" for r in refs])
        if anytime_tests:
            header += [f"vs {r} at {frac:g}" for r in refs for frac in anytime]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in grp:
            cells = [f"`{r['method']}`", str(r["n_seeds"]), f"{_fmt(r['mean'])} +- {_fmt(r['std'])}", _fmt(r["median"]),
                     _fmt(r["worst_decile"]), *(_at_cell(r, frac) for frac in anytime),
                     *([_fmt(r["mean_regret"])] if show_regret else []),
                     _fmt(r["mean_trials"], 1), _fmt(r["wall_s_per_trial"], 3), _fmt(r["cpu_s_per_run"], 1)]
            cells += [verdict(r, ref) or "—" for ref in refs]
            if anytime_tests:
                cells += [short_verdict(r, ref, frac) for ref in refs for frac in anytime]
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
        plot_curves(group_runs, out / png, f"{protocol} / {dataset}", method_order=method_order, references=references)
        lines += ["", f"![anytime curves {protocol} {dataset}]({png})", ""]
    lines += [*_methods_section(runs), *appendix]
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
