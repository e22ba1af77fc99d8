"""The sampler suite's settings: every problem and method side by side in one storage, one report.

Problems (ids ``<name>/<variant>``, the first two parts of their study names;
:mod:`optuna_mfkd.bench.catalog`):

- NAS-Bench-201, one level (protocol ``nb201``): ``nb201/cifar10``, ``nb201/cifar100``,
  ``nb201/imagenet16``; two levels, 12 -> 200 epochs (protocol ``mf``): ``mf/cifar10``,
  ``mf/cifar100``, ``mf/imagenet16`` (see :mod:`optuna_mfkd.bench.protocols`; they need the
  NB201 table); three levels, a one-epoch NST score on a pool's cells -> 12 -> 200 epochs
  (protocol ``mf3``): ``mf3/cifar10`` (it needs the pool too: :data:`DEFAULT_POOL`);
- synthetic functions from BoTorch (:mod:`optuna_mfkd.bench.synthetic`): single-level
  ``branin``, ``hartmann6``, ``ackley10``, ``ackley-mixed``, and multi-fidelity
  ``augmented-hartmann``, ``augmented-branin``, ``wing-weight``;
- single-level problems beyond a box (:mod:`optuna_mfkd.bench.structured`):
  ``constrained-hartmann`` (BoTorch's ConstrainedHartmann, ``trial.set_constraint``; the
  incumbent is the best feasible trial), ``branches`` (a conditional space) and
  ``tabular-grid`` (an ordinal grid shaped like tabular HPO benchmarks).

Groups on the command line (:data:`GROUPS`): ``synthetic`` (the seven BoTorch functions),
``synthetic-1`` (single-level), ``synthetic-mf`` (multi-fidelity), ``synthetic-dropin`` (the
three structured problems), ``nb201``, ``mf``, ``mf3``, ``all``; a bare name (``hartmann6``)
means its one variant.

Methods (:data:`METHOD_NAMES`, the same names on every problem): ``mfkd`` (MFKDSampler with the
problem's levels and its defaults), ``mfkd-paper`` (the paper's settings), ``gp``, ``tpe``,
``random``. Single-fidelity methods evaluate the top level only; ``mfkd`` and ``mfkd-paper``
choose the level of each trial.

The multi-fidelity problems (``mf/*`` and ``synthetic-mf``) also run the peers
(:mod:`optuna_mfkd.bench.peers`) when ``methods`` names them; the default list does not.
The report compares every method with ``mfkd``, or with ``mfkd-paper`` on a problem where
``mfkd`` did not run (:func:`optuna_mfkd.bench.methods.reference_methods`).

Defaults of MFKDSampler are chosen on :data:`TUNING_PROBLEMS` only; the report marks them
and says so. The ``synthetic-dropin`` problems are not among them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import report_text  # beside this module

from optuna_mfkd.bench import catalog, harness, report
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import Problem, problem_id
from optuna_mfkd.bench.results import load_runs
from optuna_mfkd.bench.runs import RunSpec, problem_specs
from optuna_mfkd.bench.statistics import ANYTIME_FRACTIONS
from optuna_mfkd.bench.structured import STRUCTURED_PROBLEMS
from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

#: The suite's methods, in report order.
METHOD_NAMES: tuple[str, ...] = ("mfkd", "mfkd-paper", "gp", "tpe", "random")
#: The pool of ``mf3`` (its cheapest level: the NST scores of the paper protocol's 180
#: evaluation cells), in this repository; ``--pool`` or ``$MFKD_POOL`` give another.
DEFAULT_POOL = Path(__file__).resolve().parent / "results" / "paper-protocol" / "pool-snapshot.csv"
#: Problems MFKDSampler's defaults may be chosen on (the rest are reported untouched).
TUNING_PROBLEMS: tuple[str, ...] = ("nb201/cifar10", "mf/cifar10", "hartmann6/1-level", "augmented-hartmann/3-level")
#: Named groups of problem ids.
GROUPS: dict[str, tuple[str, ...]] = {
    "synthetic": tuple(SYNTHETIC_PROBLEMS),
    "synthetic-1": tuple(p for p in SYNTHETIC_PROBLEMS if p.endswith("/1-level")),
    "synthetic-mf": tuple(p for p in SYNTHETIC_PROBLEMS if not p.endswith("/1-level")),
    "nb201": tuple(p for p in catalog.NB201_PROBLEMS if p.startswith("nb201/")),
    "mf": tuple(p for p in catalog.NB201_PROBLEMS if p.startswith("mf/")),
    "mf3": ("mf3/cifar10",),
    "synthetic-dropin": tuple(STRUCTURED_PROBLEMS),
}
GROUPS["all"] = (GROUPS["nb201"] + GROUPS["synthetic-1"] + GROUPS["mf"] + GROUPS["mf3"] + GROUPS["synthetic-mf"]
                 + GROUPS["synthetic-dropin"])

NOTES: tuple[str, ...] = (
    "Discipline: MFKDSampler's defaults are chosen on the problems marked `*` only (NB201",
    "CIFAR-10, one level and 12 -> 200 epochs; Hartmann 6D; AugmentedHartmann); every other",
    "problem is reported untouched, run once with the defaults chosen there.",
    "",
    "Methods, the same on every problem: `mfkd` = `MFKDSampler(fidelities=<the problem's levels>,",
    "seed=s)` (the sampler's defaults); `mfkd-paper` = the paper's settings (random warm-up of 20",
    "top-level trials on one level, or 100 on each cheaper level and 20 on the top one, then UCB",
    "with beta = 1 over 5,000 random candidates at the top level); `gp`, `tpe`, `random` =",
    "Optuna's GPSampler, TPESampler, RandomSampler with their defaults. Single-fidelity methods",
    "evaluate the top level only.",
)


def pool_path(path: str | Path | None = None) -> str | Path:
    """The pool of ``mf3``: ``path``, else ``$MFKD_POOL``, else :data:`DEFAULT_POOL`."""
    return path or os.environ.get(catalog.POOL_ENV) or DEFAULT_POOL


def expand(names: Iterable[str]) -> list[str]:
    """Problem ids of group names (:data:`GROUPS`), ids and bare names, in order, without repeats."""
    return catalog.expand(names, GROUPS)


def make_problem(pid: str, table_path: str | None = None, pool: str | Path | None = None) -> Problem:
    """The problem ``pid`` running the suite's methods (``mf3``'s pool: :func:`pool_path`)."""
    needs_pool = catalog.NB201_PROBLEMS.get(pid, ("",))[0] == "mf3"
    return catalog.make_problem(pid, table_path, pool_path(pool) if needs_pool else None, methods=METHOD_NAMES)


def specs(problems: Sequence[Problem], methods: Sequence[str] | None, seeds: Iterable[int]) -> list[RunSpec]:
    """The runs, in the order seed, problem, method (methods checked against every problem)."""
    return problem_specs(problems, list(methods or METHOD_NAMES), seeds)


def run_suite(
    storage: str,
    problems: Sequence[str],
    methods: Sequence[str] | None = None,
    seeds: Iterable[int] = range(30),
    n_jobs: int = 1,
    table_path: str | None = None,
    progress: bool = True,
    redo: Sequence[str] = (),
    pool: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every (seed, problem, method) of the suite not yet finished in ``storage``
    (:func:`optuna_mfkd.bench.harness.run_problems`).

    ``problems``: ids, bare names or group names (:func:`expand`); ``redo``: methods whose
    stored studies among these runs are deleted first and run again.
    """
    chosen = [make_problem(p, table_path, pool) for p in expand(problems)]
    return harness.run_problems(storage, chosen, list(methods or METHOD_NAMES), seeds, n_jobs=n_jobs,
                                progress=progress, redo=redo, desc="suite")


def problem_table(pids: Sequence[str]) -> list[str]:
    """Markdown lines describing the synthetic and structured problems among ``pids`` (levels,
    costs, budget)."""
    factories = {**SYNTHETIC_PROBLEMS, **STRUCTURED_PROBLEMS}
    rows = [factories[p]() for p in pids if p in factories]
    if not rows:
        return []
    lines = ["Synthetic problems (`optuna_mfkd/bench/synthetic.py`, `optuna_mfkd/bench/structured.py`; "
             "f* = the top level at its known minimiser, the best feasible value of a constrained problem):", "",
             "| problem | function | levels (cost per evaluation) | budget | f* |", "|---|---|---|---|---|"]
    for p in rows:
        levels = ", ".join(f"{lv.name} ({lv.cost:g})" for lv in p.levels)
        lines.append(f"| {problem_id(p)} | {p.description} | {levels} | {p.budget():g} | {p.optimum:.6g} |")
    return [*lines, ""]


def write_suite_report(storage: str | Sequence[str], out: str | Path, command: str | None = None,
                       problems: Sequence[str] | None = None, title: str = "Sampler suite",
                       notes: Sequence[str] = (), anytime: Sequence[float] = ANYTIME_FRACTIONS) -> Path:
    """The suite's report (:func:`optuna_mfkd.bench.report.write_report` with anytime tests).

    ``notes``: Markdown lines after the suite's own notes and problem table; ``anytime``: the
    budget fractions of the anytime columns and tests. The methods are compared with ``mfkd``
    (with ``mfkd-paper`` on a problem without ``mfkd`` runs); peers come after the suite's methods.
    """
    runs = load_runs(storage, problems)
    present = list(dict.fromkeys(f"{r.protocol}/{r.dataset}" for r in runs))
    lines = [*NOTES, "", *problem_table([p for p in GROUPS["all"] if p in present])]
    if notes:
        lines += [*notes, ""]
    order = [p for p in GROUPS["all"] if p in present] + [p for p in present if p not in GROUPS["all"]]
    return report.write_report(storage, out, problems, command=command, title=title,
                               notes=lines, anytime_tests=True, tuning=TUNING_PROBLEMS,
                               problem_order=order, method_order=METHOD_NAMES + tuple(PEERS), anytime=anytime,
                               **report_text.for_metrics(r.metric for r in runs))
