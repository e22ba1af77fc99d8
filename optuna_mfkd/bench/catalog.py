"""Every benchmark problem by id (``<name>/<variant>``, the first two parts of its study names).

- NAS-Bench-201 (:mod:`optuna_mfkd.bench.protocols`; they need the NB201 table): one level
  (protocol ``nb201``) ``nb201/cifar10``, ``nb201/cifar100``, ``nb201/imagenet16``; two levels,
  12 -> 200 epochs (protocol ``mf``) ``mf/cifar10``, ``mf/cifar100``, ``mf/imagenet16``; three
  levels, a pool's one-epoch NST score -> 12 -> 200 epochs (protocol ``mf3``) ``mf3/cifar10``,
  which needs the pool too (``pool_path`` or ``$MFKD_POOL``);
- BoTorch's test functions (:data:`~optuna_mfkd.bench.synthetic.SYNTHETIC_PROBLEMS`);
- single-level problems with constraints, a conditional space or an ordinal grid
  (:data:`~optuna_mfkd.bench.structured.STRUCTURED_PROBLEMS`).

A bare name (``hartmann6``, ``mf``) means every problem of that name; callers may add named
groups of ids (:func:`expand`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from optuna_mfkd.bench.lowfi import LowFidelityPool
from optuna_mfkd.bench.problems import Problem
from optuna_mfkd.bench.protocols import NB201Problem, get_protocol
from optuna_mfkd.bench.structured import STRUCTURED_PROBLEMS
from optuna_mfkd.bench.synthetic import SYNTHETIC_PROBLEMS

#: NB201 problems: id -> (protocol, dataset).
NB201_PROBLEMS: dict[str, tuple[str, str]] = {
    **{
        f"{protocol}/{dataset}": (protocol, dataset)
        for protocol in ("nb201", "mf")
        for dataset in ("cifar10", "cifar100", "imagenet16")
    },
    "mf3/cifar10": ("mf3", "cifar10"),
}
#: The environment variable naming the low-fidelity pool of ``mf3`` when none is given.
POOL_ENV = "MFKD_POOL"


def problem_ids() -> list[str]:
    """Every problem id: the NB201 problems, the synthetic ones, then the structured ones."""
    return [*NB201_PROBLEMS, *SYNTHETIC_PROBLEMS, *STRUCTURED_PROBLEMS]


def expand(names: Iterable[str], groups: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Problem ids of ``names`` (group names of ``groups``, ids and bare names), in order,
    without repeats."""
    groups = groups or {}
    known = problem_ids()
    out: list[str] = []
    for name in names:
        if name in groups:
            ids = list(groups[name])
        elif name in known:
            ids = [name]
        else:
            ids = [p for p in known if p.split("/")[0] == name]
            if not ids:
                raise ValueError(f"unknown problem {name!r}; known: {known}" +
                                 (f" and groups {list(groups)}." if groups else "."))
        out += [p for p in ids if p not in out]
    return out


def mf3_pool(pool_path: str | Path | None = None) -> LowFidelityPool:
    """The NST scores of ``mf3``'s pool: ``pool_path``, else ``$MFKD_POOL``."""
    path = pool_path or os.environ.get(POOL_ENV)
    if not path:
        raise ValueError(f"problem 'mf3/cifar10' needs a low-fidelity pool: give --pool FILE (pool_path) "
                         f"or set ${POOL_ENV}.")
    return LowFidelityPool.from_csv(path, losses=["nst"])


def make_problem(pid: str, table_path: str | None = None, pool_path: str | Path | None = None,
                 methods: Sequence[str] | None = None) -> Problem:
    """The problem with id ``pid``.

    NB201 problems read ``table_path`` (default ``$NB201_TABLE``, else the bundled table);
    ``mf3`` also its pool (:func:`mf3_pool`). ``methods``: the methods the problem runs by
    default, in place of its own (its protocol's, or
    :data:`~optuna_mfkd.bench.synthetic.SYNTHETIC_METHODS`); it refuses others, save those it
    runs on request (the peers, ...).
    """
    if pid in SYNTHETIC_PROBLEMS or pid in STRUCTURED_PROBLEMS:
        problem = (SYNTHETIC_PROBLEMS.get(pid) or STRUCTURED_PROBLEMS[pid])()
        return dataclasses.replace(problem, methods=tuple(methods)) if methods is not None else problem
    if pid in NB201_PROBLEMS:
        name, dataset = NB201_PROBLEMS[pid]
        protocol = get_protocol(name, mf3_pool(pool_path) if name == "mf3" else None)
        if methods is not None:
            protocol = dataclasses.replace(protocol, methods=tuple(methods))
        return NB201Problem(protocol, dataset, table_path)
    raise ValueError(f"unknown problem {pid!r}; known: {problem_ids()}.")
