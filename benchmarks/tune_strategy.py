"""Choose the multi-fidelity defaults of MFKDSampler on the tuning problems only.

Every variant is a method of the sampler suite's registry (``gp``, ``tpe``, ``mfkd-paper``,
...) or ``mfkd`` with MFKDSampler keyword arguments, run for the same seeds on

- ``mf/cifar10``: NAS-Bench-201 CIFAR-10, 12- and 200-epoch levels (the suite's ``mf``
  protocol; isomorphic cells are one point); metric: 200-epoch test accuracy of the
  incumbent (%, higher is better);
- ``augmented-hartmann/3-level``: BoTorch's AugmentedHartmann with fidelities 0.5 / 0.75 / 1
  at costs 0.01 / 0.1 / 1; metric: log10 simple regret (lower is better);
- the one-level tuning problems, ``nb201/cifar10`` (NAS-Bench-201 CIFAR-10 at 200 epochs)
  and ``hartmann6/1-level`` (Hartmann 6D), with the same metrics.

For each run the incumbent's metric at 25%, 50% and 100% of the budget is appended to
``--out/runs.csv`` as runs finish (a rerun skips rows already there); ``--out/summary.md``
gets the mean at each point and a two-sided Mann-Whitney U p-value of every variant against
the first one. No other problem is used to choose defaults; ``--held-out`` runs the suite's
other problems too, to report a chosen default there or to read a run (their sections say so)::

    OMP_NUM_THREADS=1 python benchmarks/tune_strategy.py --seeds 0-7 --jobs 2 \\
        --variant paper='{}' --variant cost='{"strategy": "cost-aware"}' --variant gp=gp

``--reuse NAME=METHOD --records FILE`` takes the variant ``NAME``'s rows from the finished runs
of the suite method ``METHOD`` in a records file (``sampler_suite.py --records``) instead of
running them, for code whose searches have not changed since (``trial_trace.py`` shows it);
such rows have no level counts, and the reused variants come first (the reference of the p-values).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from scipy import stats

from optuna_mfkd.bench.runs import parse_seeds

PROBLEMS = ("mf/cifar10", "augmented-hartmann/3-level", "nb201/cifar10", "hartmann6/1-level")


def held_out_problems() -> tuple[str, ...]:
    """The suite's other multi-fidelity and one-level problems: run with ``--held-out`` to
    report a chosen default there or to read a run, never to choose one."""
    import suite_settings as suite  # beside this script

    return tuple(p for p in suite.GROUPS["all"] if p not in PROBLEMS)
FRACTIONS = (0.25, 0.5, 1.0)


def _run(problem_id: str, variant: str, spec: str | dict, seed: int, table: str | None) -> dict:
    import optuna
    import suite_settings as suite  # beside this script
    import torch

    from optuna_mfkd import MaxCostCallback, MFKDSampler
    from optuna_mfkd.bench.incumbent import incumbent_curve

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    problem = suite.make_problem(problem_id, table)
    if isinstance(spec, dict):
        method = "mfkd"
        ctx = problem.context(method)
        options = {"point_key": ctx.point_key} if ctx.point_key is not None else {}
        levels = list(ctx.levels) or [ctx.low_level, ctx.high_level]
        sampler = MFKDSampler(fidelities=levels, seed=seed, **{**options, **spec})
    else:
        method = spec
        sampler, _, _ = problem.method(method).build(seed, problem.context(method))
    start = time.process_time()
    study = optuna.create_study(direction=problem.direction, sampler=sampler)
    budget = problem.budget()
    study.optimize(problem.objective(method), callbacks=[MaxCostCallback(budget)], n_trials=5000)
    top = problem.context(method).high_level or problem.top_level
    costs, metrics, final, _ = incumbent_curve(study.trials, top, problem.metric.attr, problem.direction)
    row: dict = {"problem": problem_id, "variant": variant, "seed": seed}
    for f in FRACTIONS:
        fit = np.flatnonzero(costs <= f * budget) if f < 1 else np.arange(len(costs))
        row[f"at{int(f * 100)}"] = float(metrics[fit[-1]]) if len(fit) else math.nan
    levels_used = [t.user_attrs.get("fidelity", top) for t in study.trials]
    row["trials"] = len(study.trials)
    row["top_trials"] = sum(lv == top for lv in levels_used)
    row["cpu_s"] = round(time.process_time() - start, 1)
    return row


def reused_rows(records: Path, method: str, variant: str, problems: list[str], seeds: list[int]) -> list[dict]:
    """The rows of ``variant`` from the finished suite runs of ``method`` in ``records``
    (the incumbent after the last trial that fits in each fraction of the budget, as
    :func:`_run` takes it)."""
    from optuna_mfkd.bench.incumbent import from_record
    from optuna_mfkd.bench.records import read_runs
    from optuna_mfkd.bench.runs import META_ATTR, RESULT_ATTR, parse_study_name

    rows = []
    for rec in read_runs(records):
        parsed = parse_study_name(rec["study"])
        if parsed is None:
            continue
        protocol, dataset, name, seed = parsed
        problem = f"{protocol}/{dataset}"
        if name != method or problem not in problems or seed not in seeds:
            continue
        attrs = rec["user_attrs"]
        costs, metrics, _, _, n_trials = from_record(attrs[RESULT_ATTR])
        budget = float(attrs[META_ATTR]["budget"])
        row: dict = {"problem": problem, "variant": variant, "seed": seed}
        for f in FRACTIONS:
            fit = np.flatnonzero(costs <= f * budget) if f < 1 else np.arange(len(costs))
            row[f"at{int(f * 100)}"] = float(metrics[fit[-1]]) if len(fit) else math.nan
        row.update(trials=n_trials, top_trials=math.nan, cpu_s=round(float(attrs[META_ATTR]["cpu_seconds"]), 1))
        rows.append(row)
    return rows


def summarise(rows: list[dict], variants: list[str]) -> str:
    lines = [
        "# MFKDSampler multi-fidelity defaults: tuning problems only",
        "",
        "Metric: NB201 (mf/cifar10, nb201/cifar10), 200-epoch test accuracy of the incumbent (%, higher",
        "is better); synthetic, log10 simple regret (lower is better); at 25 / 50 / 100% of the budget.",
        "p: two-sided Mann-Whitney U against the first variant listed under each problem.",
        "",
    ]
    for problem in dict.fromkeys([*PROBLEMS, *(r["problem"] for r in rows)]):
        got = [r for r in rows if r["problem"] == problem and r["variant"] in variants]
        if not got:  # no row of the variants asked for
            continue
        held = "" if problem in PROBLEMS else " (held out: reported, never used to choose a default)"
        lines += [f"## {problem}{held}", "",
                  "| variant | n | 25% | 50% | 100% | s.e. 100% | p 25% | p 50% | p 100% | top trials | CPU s/run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        # the reference: the first variant with rows on this problem
        first = next(v for v in variants if any(r["variant"] == v for r in got))
        ref = {f: [r[f] for r in got if r["variant"] == first] for f in ("at25", "at50", "at100")}
        for v in variants:
            mine = [r for r in got if r["variant"] == v]
            if not mine:
                continue
            cells = []
            for f in ("at25", "at50", "at100"):
                x = np.array([r[f] for r in mine], dtype=float)
                cells.append(f"{np.nanmean(x):.3f}")
            x100 = np.array([r["at100"] for r in mine], dtype=float)
            se = np.nanstd(x100, ddof=1) / math.sqrt(len(x100)) if len(x100) > 1 else math.nan
            ps = []
            for f in ("at25", "at50", "at100"):
                x = [r[f] for r in mine if not math.isnan(r[f])]
                y = [a for a in ref[f] if not math.isnan(a)]
                ps.append(f"{stats.mannwhitneyu(x, y).pvalue:.3g}" if v != first and x and y else "")
            top = np.mean([float(r["top_trials"]) for r in mine])
            cpu = np.mean([r["cpu_s"] for r in mine])
            lines.append(f"| `{v}` | {len(mine)} | {' | '.join(cells)} | {se:.3f} | {' | '.join(ps)} | {'' if math.isnan(top) else f'{top:.0f}'} | {cpu:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS[:2]), help=f"of {', '.join(PROBLEMS)}")
    parser.add_argument("--held-out", action="store_true",
                        help="also accept the suite's other problems (to report a default there, not to choose one)")
    parser.add_argument("--variant", action="append", required=True,
                        help="name=JSON keyword arguments of MFKDSampler, or name=<suite method>")
    parser.add_argument("--table", default=None, help="NB201 table (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tune-strategy"))
    parser.add_argument("--report-only", action="store_true",
                        help="write summary.md from the rows of runs.csv; run nothing")
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=METHOD",
                        help="variant NAME's rows from the suite method METHOD's runs in --records")
    parser.add_argument("--records", type=Path, default=None, help="suite records file for --reuse")
    args = parser.parse_args()
    allowed = PROBLEMS + (held_out_problems() if args.held_out else ())
    for problem in args.problems:
        if problem not in allowed:
            parser.error(f"--problems: {problem!r} is not a tuning problem ({', '.join(PROBLEMS)})"
                         + ("" if args.held_out else "; --held-out accepts the suite's other problems"))
    variants: dict[str, str | dict] = {}
    reuse = dict(text.partition("=")[::2] for text in args.reuse)
    if any(not name or not method for name, method in reuse.items()):
        parser.error(f"--reuse takes NAME=METHOD, got {args.reuse}")
    if reuse and (args.records is None or not args.records.is_file()):
        parser.error(f"--reuse needs --records naming a records file, got {args.records}")
    for text in args.variant:
        name, _, spec = text.partition("=")
        spec = spec.strip() or "{}"
        variants[name] = json.loads(spec) if spec.startswith("{") else spec
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.csv"
    fields = ["problem", "variant", "seed", "at25", "at50", "at100", "trials", "top_trials", "cpu_s"]
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    for r in rows:
        for f in ("at25", "at50", "at100", "cpu_s"):
            r[f] = float(r[f])
        r["seed"], r["top_trials"] = int(r["seed"]), float(r["top_trials"])
    rows = [r for r in rows if r["variant"] not in reuse]
    for name, method in reuse.items():
        rows += reused_rows(args.records, method, name, args.problems, parse_seeds(args.seeds))
    done = {(r["problem"], r["variant"], r["seed"]) for r in rows}
    todo = [(p, v, s) for s in parse_seeds(args.seeds) for p in args.problems for v in variants
            if (p, v, s) not in done and v not in reuse and not args.report_only]
    new = not path.exists()
    with ProcessPoolExecutor(args.jobs) as pool, path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if new:
            writer.writeheader()
        futures = [pool.submit(_run, p, v, variants[v], s, args.table) for p, v, s in todo]
        for fut in as_completed(futures):
            row = fut.result()
            writer.writerow(row)
            fh.flush()
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "summary.md").write_text(summarise(rows, [*reuse, *(v for v in variants if v not in reuse)]) + "\n")


if __name__ == "__main__":
    main()
