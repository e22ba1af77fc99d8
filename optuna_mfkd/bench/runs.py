"""What a benchmark run is called and how a storage says it is done.

Each run is an Optuna study named ``<problem>/<variant>/<method>/seed-<k>`` (for an NB201
protocol ``<protocol>/<dataset>/<method>/seed-<k>``) in one storage; the harness marks it
finished (study user attribute ``bench:finished``) once it is stored, with its summary
(``bench:meta``: problem, method, seed, budget, levels, metric, seconds, versions;
``bench:result``: the incumbent curve).

Studies stored before ``mfkd`` had one meaning hold the paper's two-level MFKDSampler under
``mfkd`` too; their recorded method description tells them apart, and :data:`LEGACY_METHODS`
reads them under the name the method has now (``mfkd-paper``). Reports, resuming and
``--redo`` all go by that current name (:func:`stored_runs`); a new run whose name an old
study of another method holds is refused (:func:`check_no_legacy_clash`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from optuna_mfkd.bench.methods import check_installed
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric, Problem
from optuna_mfkd.storage import rdb_storage

FINISHED_ATTR = "bench:finished"
META_ATTR = "bench:meta"
RESULT_ATTR = "bench:result"

#: Method names of studies stored before the two MFKDSampler methods had names of their own:
#: (the method in the study's name, the method description its ``bench:meta`` records) ->
#: the method's name now. The NB201 benchmark's two-level ``mfkd`` with the paper's settings
#: is ``mfkd-paper`` (the same sampler, warm-up and levels).
LEGACY_METHODS: dict[tuple[str, str], str] = {
    ("mfkd", "MFKDSampler, two levels (AR1 co-kriging)"): "mfkd-paper",
}


def study_name(problem: str, variant: str, method: str, seed: int) -> str:
    return f"{problem}/{variant}/{method}/seed-{seed}"


def parse_study_name(name: str) -> tuple[str, str, str, int] | None:
    """Inverse of :func:`study_name`; ``None`` for names the harness did not make."""
    parts = name.split("/")
    if len(parts) != 4 or not parts[3].startswith("seed-"):
        return None
    try:
        return parts[0], parts[1], parts[2], int(parts[3][5:])
    except ValueError:
        return None


def current_method(method: str, meta: Mapping[str, Any]) -> str:
    """The name that the method of a stored study (``method`` in its name, ``meta`` its
    ``bench:meta``) has now (:data:`LEGACY_METHODS`)."""
    return LEGACY_METHODS.get((method, str(meta.get("method_description", ""))), method)


def current_name(name: str, meta: Mapping[str, Any]) -> str:
    """A stored study's name with its method's current name (unchanged for other studies)."""
    parsed = parse_study_name(name)
    if parsed is None:
        return name
    problem, variant, method, seed = parsed
    return study_name(problem, variant, current_method(method, meta), seed)


@dataclass(frozen=True)
class RunSpec:
    """One run: a problem (e.g. an NB201 protocol on one dataset), a method and a seed."""

    problem: Problem
    method: str
    seed: int

    @property
    def name(self) -> str:
        return study_name(self.problem.name, self.problem.variant, self.method, self.seed)


def as_storage(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage``, or the RDB storage at the URL ``storage``."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if "://" not in storage:
        raise ValueError(f"storage must be an RDB URL such as 'sqlite:///bench.db', got {storage!r}.")
    return rdb_storage(storage)


def stored_runs(storage: optuna.storages.BaseStorage) -> dict[str, optuna.study.FrozenStudy]:
    """Current name (:func:`current_name`) -> stored study, for every harness study."""
    return {current_name(s.study_name, s.user_attrs.get(META_ATTR, {})): s
            for s in storage.get_all_studies() if parse_study_name(s.study_name)}


def finished_studies(storage: optuna.storages.BaseStorage) -> set[str]:
    """Current names of the studies in ``storage`` that a run completed."""
    return {name for name, s in stored_runs(storage).items() if s.user_attrs.get(FINISHED_ATTR)}


def check_no_legacy_clash(storage: optuna.storages.BaseStorage, specs: Sequence[RunSpec]) -> None:
    """Raise :class:`ValueError` when a run's study name is held by an old study of another
    method (e.g. ``mfkd`` with the paper's settings, now ``mfkd-paper``)."""
    renamed = {s.study_name: name for name, s in stored_runs(storage).items() if name != s.study_name}
    clash = [s.name for s in specs if s.name in renamed]
    if clash:
        raise ValueError(
            f"the storage holds {clash[0]!r} from before the methods were renamed: it is "
            f"{renamed[clash[0]]!r} ({len(clash)} such runs); run {clash[0].split('/')[2]!r} in another storage."
        )


def study_metric(meta: Mapping[str, Any]) -> Metric:
    """The metric a study's ``bench:meta`` records (NB201's test accuracy for older studies)."""
    return Metric.from_json(meta["metric"]) if "metric" in meta else NB201_TEST_ACCURACY


def problem_specs(problems: Sequence[Problem], methods: Sequence[str] | None, seeds: Iterable[int]) -> list[RunSpec]:
    """All runs in the order seed, problem, method, each method checked against each problem.

    ``methods`` ``None``: each problem's own methods.
    """
    for p in problems:
        for m in methods or p.methods:
            check_installed(p.method(m))
    return [RunSpec(p, m, s) for s in seeds for p in problems for m in (methods or p.methods)]


def parse_seeds(text: str) -> list[int]:
    """``"0-99"`` -> 0..99; ``"0,3,5-7"`` -> [0, 3, 5, 6, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad seed list {text!r} (use e.g. '0-99' or '0,3,5-7').") from exc
    return seeds
