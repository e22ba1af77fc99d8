"""The step (learning-curve) mode against Optuna's pruners, the level mode and the peers, on
learning-curve problems (:mod:`optuna_mfkd.bench.curves`, :mod:`optuna_mfkd.bench.curve_runs`).

Problems (values minimised):

- ``augmented-hartmann`` (6-D), ``augmented-branin`` (2-D): BoTorch's multi-fidelity
  functions read as learning curves, ``f(x, s = k / 9)`` reported at steps ``k = 1..9``,
  rungs 1, 3, 9; every step costs 1.
- ``mlp-digits``, ``torch-mlp``: tables of real training runs (every epoch's validation
  error, 27 epochs; ``benchmarks/curve_tables.py`` builds them, ``benchmarks/results/
  curve-tables/`` holds them), rungs 1, 3, 9, 27; every epoch costs 1.
- ``nb201-cifar10``: NAS-Bench-201, the 12-epoch and 200-epoch validation errors as two rungs
  of one run (steps 12 and 200); continuing to 200 costs the 188 epochs left.

The budget is in full trainings (``--budget``, default per problem in :data:`BUDGETS`); the
metric is the simple regret of the best final value at 25 / 50 / 100 % of the budget (log10
for the functions). Finished runs are appended to ``--records`` (JSON lines) and skipped when
the command runs again, so a long comparison continues; ``--storage`` also keeps every run as
a study in one Optuna storage::

    OMP_NUM_THREADS=1 python benchmarks/step_mode.py --seeds 0-29 --jobs 2 \\
        --records benchmarks/results/step-mode/runs.jsonl --out benchmarks/results/step-mode
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from optuna_mfkd.bench.curve_runs import PEER_METHODS, best_at, check_method, run  # noqa: E402
from optuna_mfkd.bench.curves import CurveProblem  # noqa: E402
from optuna_mfkd.bench.runs import parse_seeds  # noqa: E402
from optuna_mfkd.bench.statistics import holm, worst_decile  # noqa: E402

TABLES = Path(__file__).resolve().parent / "results" / "curve-tables"
PROBLEMS = ("augmented-hartmann", "augmented-branin", "mlp-digits", "torch-mlp", "nb201-cifar10")
#: Default budget per problem, in full trainings.
BUDGETS = {
    "augmented-hartmann": 30.0,
    "augmented-branin": 30.0,
    "mlp-digits": 30.0,
    "torch-mlp": 30.0,
    "nb201-cifar10": 20.0,
}
#: Problems whose regret is reported as log10 (the functions' regret spans orders of magnitude).
LOG_REGRET = {"augmented-hartmann", "augmented-branin"}
#: Methods of the comparison, the reference first.
METHODS = (
    "mfkd+pruner",
    "mfkd+hyperband",
    "tpe+hyperband",
    "tpe+sha",
    "gp+hyperband",
    "random+hyperband",
    "mfkd-levels",
    *PEER_METHODS,
)
REFERENCE = "mfkd+pruner"
#: The methods every other one is tested against: the step mode with its own pruner, and the
#: level mode (one level per rung) with its default level rule.
REFERENCES = (REFERENCE, "mfkd-levels")
#: Problems the step mode's settings may be tuned on (the others are reported untouched).
TUNING_PROBLEMS = ("augmented-hartmann", "mlp-digits")
FRACTIONS = (0.25, 0.5, 1.0)


def make_problem(name: str) -> CurveProblem:
    """The problem ``name`` (tables read from :data:`TABLES`, NB201 from the bundled table)."""
    from optuna_mfkd.bench import curves

    if name in curves.FunctionCurve.FUNCTIONS:
        return curves.FunctionCurve(name)
    if name == "nb201-cifar10":
        from optuna_mfkd.nasbench201.table import CompactTable, bundled_table_path

        return curves.NB201Curve(CompactTable(bundled_table_path()), "cifar10")
    from optuna_mfkd.bench.curve_tables import TableCurve, read_sums

    return TableCurve.load(
        TABLES / f"{name}.csv.gz",
        name=name,
        sha256=read_sums(TABLES / "SHA256SUMS")[f"{name}.csv.gz"],
    )


def _run(problem: str, method: str, seed: int, budget: float, storage: str | None) -> dict:
    from optuna_mfkd.storage import rdb_storage

    return run(
        make_problem(problem), method, seed, budget, rdb_storage(storage) if storage else None
    )


def _regret(value: float | None, optimum: float, log: bool) -> float:
    """The regret of ``value``; ``inf`` where no run had finished (ranked last)."""
    if value is None:
        return math.inf
    regret = max(value - optimum, 0.0)
    return math.log10(max(regret, 1e-12)) if log else regret


def _mean(values: list[float]) -> str:
    """The mean over the seeds that finished a run, with the count of those that did not."""
    finite = [v for v in values if math.isfinite(v)]
    missing = len(values) - len(finite)
    text = f"{np.mean(finite):.3g}" if finite else "-"
    return text + (f" ({missing} none)" if missing else "")


def plot(problem: CurveProblem, rows: dict[str, list[dict]], path: Path, log: bool) -> None:
    """Anytime curves: the median regret of the best final value against the fraction of the
    budget spent, one line per method (band: the seeds' quartiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0.02, 1.0, 50)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, rs in rows.items():
        mat = np.array(
            [
                [_regret(best_at(r, f, problem.final_step), problem.optimum, log) for f in grid]
                for r in rs
            ]
        )
        mat[np.isinf(mat)] = np.nan
        with np.errstate(all="ignore"):
            q1, med, q3 = (
                np.nanpercentile(mat, [25, 50, 75], axis=0) if len(rs) > 1 else (mat[0],) * 3
            )
        style = (
            {"lw": 2.4, "color": "black"}
            if m == REFERENCE
            else {"lw": 2.4} if m in REFERENCES else {"lw": 1.3, "ls": "--" if m in PEER_METHODS else "-"}
        )
        line = ax.plot(grid, med, label=f"{m} (n={len(rs)})", **style)[0]
        ax.fill_between(grid, q1, q3, alpha=0.12, color=line.get_color())
    ax.set_xlabel("fraction of the budget spent")
    ax.set_ylabel(
        "log10 simple regret"
        if log
        else "simple regret (validation error, %)"
        if "nb201" in problem.name
        else "simple regret (validation error)"
    )
    ax.set_title(f"{problem.name}: median over seeds, band: quartiles", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _marks(at: dict[str, list[list[float]]], ref: str) -> dict[str, list[str]]:
    """Per method other than ``ref``: the Holm-corrected (over the methods) two-sided
    Mann-Whitney U p-value against ``ref`` at each fraction, marked ``+`` where ``ref`` is
    ahead and ``-`` where it is behind (by the medians, where p < 0.05)."""
    others = [m for m in at if m != ref]
    marks: dict[str, list[str]] = {m: [] for m in others}
    for k in range(len(FRACTIONS)):
        raw = []
        for m in others:
            a, b = at[ref][k], at[m][k]
            ok = len(a) > 1 and len(b) > 1 and len(set(a) | set(b)) > 1
            raw.append(stats.mannwhitneyu(a, b).pvalue if ok else 1.0)
        for m, adj in zip(others, holm(raw) if raw else []):
            sign = "+" if np.median(at[ref][k]) < np.median(at[m][k]) else "-"
            marks[m].append(f"{adj:.2g}{sign if adj < 0.05 else ''}")
    return marks


def report(records: list[dict], out: Path, command: str) -> None:
    """The results README: per problem, mean regret at each budget fraction, the worst decile
    at the end, trials, pruned trials, seconds per run, and Holm-corrected two-sided
    Mann-Whitney U p-values against each of :data:`REFERENCES` at every fraction."""
    lines = [
        "# Learning-curve problems: the step mode, Optuna's pruners, the level mode and the peers",
        "",
        f"Command: `{command}`",
        "",
        __doc__.split("\n\n")[1],
        "",
        "Simple regret of the best final value (lower is better; log10 for the functions), mean over the seeds "
        "(`(k none)`: k seeds had no finished run yet, ranked last in the tests); "
        "worst 10%: the mean of the worst tenth of the seeds at 100%; p: two-sided Mann-Whitney U against "
        + " and against ".join(f"`{r}`" for r in REFERENCES)
        + " at 25 / 50 / 100 %, Holm-corrected over the methods (`+`: the reference is ahead, "
        "`-`: behind, by the medians). Tuning problems: " + ", ".join(TUNING_PROBLEMS) + ".",
        "",
    ]
    if (out / "notes.md").exists():  # the status and findings, written by hand beside the report
        lines += [(out / "notes.md").read_text().strip(), ""]
    # The comparison's methods in their order, then any other method of the records (e.g.
    # MFKDPruner thresholds ``mfkd+pruner@<p>``).
    methods = [*METHODS, *sorted({r["method"] for r in records} - set(METHODS))]
    for problem in PROBLEMS:
        rows = {
            m: [r for r in records if r["problem"] == problem and r["method"] == m] for m in methods
        }
        rows = {m: rs for m, rs in rows.items() if rs}
        if not rows:
            continue
        p = make_problem(problem)
        log = problem in LOG_REGRET
        at = {
            m: [
                [_regret(best_at(r, f, p.final_step), p.optimum, log) for r in rs]
                for f in FRACTIONS
            ]
            for m, rs in rows.items()
        }
        refs = [r for r in REFERENCES if r in rows]
        marks = {ref: _marks(at, ref) for ref in refs}
        lines += [
            f"## {problem} (optimum {p.optimum:.6g}, budget {rows[next(iter(rows))][0]['budget']:g} full "
            "trainings)",
            "",
            "| method | seeds | 25% | 50% | 100% | worst 10% | trials | pruned | s/run | "
            + " | ".join(f"p_Holm vs `{ref}` 25/50/100%" for ref in refs) + " |",
            "|---|---|---|---|---|---|---|---|---|" + "---|" * len(refs),
        ]
        for m, rs in rows.items():
            worst = worst_decile(at[m][-1], higher_is_better=False)
            means = " | ".join(_mean(a) for a in at[m])
            lines.append(
                f"| `{m}` | {len(rs)} | {means} | {worst:.3g} | {np.mean([r['trials'] for r in rs]):.0f} | "
                f"{np.mean([r['pruned'] for r in rs]):.0f} | {np.mean([r.get('seconds', math.nan) for r in rs]):.0f}"
                f" | {' | '.join(' / '.join(marks[ref].get(m, [])) for ref in refs)} |"
            )
        out.mkdir(parents=True, exist_ok=True)
        plot(p, rows, out / f"anytime-{problem}.png", log)
        lines += ["", f"![anytime curves of {problem}](anytime-{problem}.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), type=check_method)
    p.add_argument("--seeds", type=parse_seeds, default=list(range(10)))
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="full trainings' worth of cost (default: per problem)",
    )
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument(
        "--records", type=Path, required=True, help="JSON lines of finished runs (appended)"
    )
    p.add_argument(
        "--storage", default=None, help="also keep every run as a study in this Optuna storage URL"
    )
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report of the finished runs; run nothing",
    )
    args = p.parse_args(argv)
    done = []
    if args.records.exists():
        done = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    have = {(r["problem"], r["method"], r["seed"]) for r in done}
    todo = [
        (pr, m, s, args.budget or BUDGETS[pr], args.storage)
        for s in args.seeds
        for pr in args.problems
        for m in args.methods
        if (pr, m, s) not in have and not args.report_only
    ]
    args.records.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for record in pool.map(_run, *zip(*todo)) if todo else ():
            with args.records.open("a") as f:
                f.write(json.dumps(record) + "\n")
            done.append(record)
            print(
                json.dumps(
                    {
                        k: record[k]
                        for k in ("problem", "method", "seed", "trials", "pruned", "seconds")
                    }
                ),
                flush=True,
            )
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    command = "OMP_NUM_THREADS=1 python benchmarks/step_mode.py " + " ".join(shown)
    report(done, args.out, command)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
