"""The sampler suite: every problem and method side by side in one storage, one report.

Problems (ids ``<name>/<variant>``, the first two parts of their study names):

- NAS-Bench-201, one level (protocol ``nb201``): ``nb201/cifar10``, ``nb201/cifar100``,
  ``nb201/imagenet16``; two levels, 12 -> 200 epochs (protocol ``mf``): ``mf/cifar10``,
  ``mf/cifar100``, ``mf/imagenet16`` (see :mod:`optuna_mfkd.bench.protocols`; they need the
  NB201 table); three levels, a one-epoch NST score on a pool's cells -> 12 -> 200 epochs
  (protocol ``mf3``): ``mf3/cifar10`` (it needs the pool too: :data:`DEFAULT_POOL`);
- synthetic functions from BoTorch (:mod:`optuna_mfkd.bench.synthetic`): single-level
  ``branin``, ``hartmann6``, ``ackley10``, ``ackley-mixed``, and multi-fidelity
  ``augmented-hartmann``, ``augmented-branin``, ``wing-weight``.

Groups on the command line: ``synthetic`` (all seven), ``synthetic-1`` (single-level),
``synthetic-mf`` (multi-fidelity), ``nb201``, ``mf``, ``mf3``, ``all``; a bare name (``hartmann6``)
means its one variant.

Methods (:data:`~optuna_mfkd.bench.methods.SUITE_METHODS`, the same names on every
problem): ``mfkd`` (MFKDSampler with the problem's levels and its defaults), ``mfkd-paper``
(the paper's settings), ``gp``, ``tpe``, ``random``. Single-fidelity methods evaluate the
top level only; ``mfkd`` and ``mfkd-paper`` choose the level of each trial.

The multi-fidelity problems (``mf/*`` and ``synthetic-mf``) also run the peers
(:mod:`optuna_mfkd.bench.peers`) when ``methods`` names them; the default list does not.
The report compares every method with ``mfkd``, or with ``mfkd-paper`` on a problem where
``mfkd`` did not run (:func:`~optuna_mfkd.bench.methods.reference_methods`).

Defaults of MFKDSampler are chosen on :data:`TUNING_PROBLEMS` only; the report marks them
and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna

from optuna_mfkd.bench import harness, report
from optuna_mfkd.bench.methods import SUITE_METHODS
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import Problem, problem_id
from optuna_mfkd.bench.protocols import LowFidelityPool, NB201Problem, Protocol, get_protocol
from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

#: The suite's methods, in report order.
METHOD_NAMES: tuple[str, ...] = tuple(SUITE_METHODS)
#: NB201 problems: id -> (protocol, dataset).
NB201_PROBLEMS: dict[str, tuple[str, str]] = {
    **{
        f"{protocol}/{dataset}": (protocol, dataset)
        for protocol in ("nb201", "mf")
        for dataset in ("cifar10", "cifar100", "imagenet16")
    },
    "mf3/cifar10": ("mf3", "cifar10"),
}
#: The pool of ``mf3`` (its cheapest level: the NST scores of the paper protocol's 180
#: evaluation cells), relative to the repository; ``$MFKD_POOL`` or ``pool_path`` override it.
DEFAULT_POOL = "benchmarks/results/paper-protocol/pool-snapshot.csv"
#: Problems MFKDSampler's defaults may be chosen on (the rest are reported untouched).
TUNING_PROBLEMS: tuple[str, ...] = ("nb201/cifar10", "mf/cifar10", "hartmann6/1-level", "augmented-hartmann/3-level")
#: Named groups of problem ids.
GROUPS: dict[str, tuple[str, ...]] = {
    "synthetic": tuple(SYNTHETIC_PROBLEMS),
    "synthetic-1": tuple(p for p in SYNTHETIC_PROBLEMS if p.endswith("/1-level")),
    "synthetic-mf": tuple(p for p in SYNTHETIC_PROBLEMS if not p.endswith("/1-level")),
    "nb201": tuple(p for p in NB201_PROBLEMS if p.startswith("nb201/")),
    "mf": tuple(p for p in NB201_PROBLEMS if p.startswith("mf/")),
    "mf3": ("mf3/cifar10",),
}
GROUPS["all"] = GROUPS["nb201"] + GROUPS["synthetic-1"] + GROUPS["mf"] + GROUPS["mf3"] + GROUPS["synthetic-mf"]

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


def suite_pool(pool_path: str | Path | None = None) -> LowFidelityPool:
    """The NST scores of ``mf3``'s pool: ``pool_path``, else ``$MFKD_POOL``, else
    :data:`DEFAULT_POOL` in this repository."""
    import os

    path = pool_path or os.environ.get("MFKD_POOL")
    if path is None:
        path = Path(__file__).resolve().parents[2] / DEFAULT_POOL
        if not path.is_file():
            raise FileNotFoundError(
                f"problem 'mf3' needs a low-fidelity pool: {DEFAULT_POOL} is not beside this installation; "
                "give --pool (pool_path) or set $MFKD_POOL."
            )
    return LowFidelityPool.from_csv(path, losses=["nst"])


def suite_protocol(name: str, pool_path: str | Path | None = None) -> Protocol:
    """An NB201 protocol (``nb201``, ``mf`` or ``mf3``) running the suite's methods."""
    pool = suite_pool(pool_path) if name == "mf3" else None
    return dataclasses.replace(get_protocol(name, pool), methods=METHOD_NAMES, method_registry="suite")


def expand(names: Iterable[str]) -> list[str]:
    """Problem ids of group names, ids and bare names, in order, without repeats."""
    known = {**{p: None for p in NB201_PROBLEMS}, **{p: None for p in SYNTHETIC_PROBLEMS}}
    out: list[str] = []
    for name in names:
        if name in GROUPS:
            ids = list(GROUPS[name])
        elif name in known:
            ids = [name]
        else:
            ids = [p for p in known if p.split("/")[0] == name]
            if not ids:
                raise ValueError(f"unknown problem {name!r}; known: {list(known)} and groups {list(GROUPS)}.")
        out += [p for p in ids if p not in out]
    return out


def make_problem(pid: str, table_path: str | None = None, pool_path: str | Path | None = None) -> Problem:
    """The problem with id ``pid`` (NB201 problems read ``table_path`` or ``$NB201_TABLE``;
    ``mf3`` also the pool, :func:`suite_pool`)."""
    if pid in SYNTHETIC_PROBLEMS:
        return SYNTHETIC_PROBLEMS[pid]()
    if pid in NB201_PROBLEMS:
        protocol, dataset = NB201_PROBLEMS[pid]
        return NB201Problem(suite_protocol(protocol, pool_path), dataset, table_path)
    raise ValueError(f"unknown problem {pid!r}; known: {list(NB201_PROBLEMS) + list(SYNTHETIC_PROBLEMS)}.")


def specs(
    problems: Sequence[Problem], methods: Sequence[str] | None, seeds: Iterable[int]
) -> list[harness.RunSpec]:
    """The runs, in the order seed, problem, method (methods checked against every problem)."""
    return harness.problem_specs(problems, list(methods or METHOD_NAMES), seeds)


def forget(storage: str, runs: Sequence[harness.RunSpec], methods: Sequence[str]) -> list[str]:
    """Delete the stored studies of ``runs`` whose method is in ``methods`` (to run them again,
    e.g. after a change of the sampler); returns their names."""
    target = harness._storage(storage)
    stored = {s.study_name for s in target.get_all_studies()}
    gone = [r.name for r in runs if r.method in methods and r.name in stored]
    for name in gone:
        optuna.delete_study(study_name=name, storage=target)
    return gone


def problem_table(pids: Sequence[str]) -> list[str]:
    """Markdown lines describing the synthetic problems among ``pids`` (levels, costs, budget)."""
    rows = [SYNTHETIC_PROBLEMS[p]() for p in pids if p in SYNTHETIC_PROBLEMS]
    if not rows:
        return []
    lines = ["Synthetic problems (`optuna_mfkd/bench/synthetic.py`; f* = the top level at its known minimiser):", "",
             "| problem | function | levels (cost per evaluation) | budget | f* |", "|---|---|---|---|---|"]
    for p in rows:
        levels = ", ".join(f"{lv.name} ({lv.cost:g})" for lv in p.levels)
        lines.append(f"| {problem_id(p)} | {p.description} | {levels} | {p.budget():g} | {p.optimum:.6g} |")
    return [*lines, ""]


def write_suite_report(storage: str | Sequence[str], out: str | Path, command: str | None = None,
                       problems: Sequence[str] | None = None, title: str = "Sampler suite",
                       notes: Sequence[str] = (), anytime: Sequence[float] = report.ANYTIME_FRACTIONS) -> Path:
    """The suite's report (:func:`optuna_mfkd.bench.report.write_report` with anytime tests).

    ``notes``: Markdown lines after the suite's own notes and problem table; ``anytime``: the
    budget fractions of the anytime columns and tests. The methods are compared with ``mfkd``
    (with ``mfkd-paper`` on a problem without ``mfkd`` runs,
    :func:`~optuna_mfkd.bench.methods.reference_methods`); peers come after the suite's methods.
    """
    runs = report.load_runs(storage, problems)
    present = list(dict.fromkeys(f"{r.protocol}/{r.dataset}" for r in runs))
    lines = [*NOTES, "", *problem_table([p for p in GROUPS["all"] if p in present])]
    if notes:
        lines += [*notes, ""]
    order = [p for p in GROUPS["all"] if p in present] + [p for p in present if p not in GROUPS["all"]]
    return report.write_report(storage, out, problems, command=command, title=title,
                               notes=lines, anytime_tests=True, tuning=TUNING_PROBLEMS,
                               problem_order=order, method_order=METHOD_NAMES + tuple(PEERS), anytime=anytime)


def run_suite(
    storage: str,
    problems: Sequence[str],
    methods: Sequence[str] | None = None,
    seeds: Iterable[int] = range(30),
    n_jobs: int = 1,
    table_path: str | None = None,
    progress: bool = True,
    redo: Sequence[str] = (),
    pool_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every (seed, problem, method) of the suite not yet finished in ``storage``.

    ``problems``: ids, bare names or group names (:func:`expand`); ``redo``: methods whose
    stored studies among these runs are deleted first and run again.
    """
    chosen = [make_problem(p, table_path, pool_path) for p in expand(problems)]
    for problem in chosen:
        if isinstance(problem, NB201Problem):
            problem.table()  # a missing table fails here, not once per run
    runs = specs(chosen, methods, list(seeds))
    if redo:
        unknown = [m for m in redo if m not in {r.method for r in runs}]
        if unknown:
            raise ValueError(f"--redo names methods that are not run: {unknown}.")
        forget(storage, runs, redo)
    return harness.run_specs(storage, runs, n_jobs=n_jobs, progress=progress, desc="suite")
