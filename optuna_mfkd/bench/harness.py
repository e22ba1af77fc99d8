"""Run benchmark studies side by side in one Optuna storage.

Each run is an Optuna study named ``<problem>/<variant>/<method>/seed-<k>`` in one storage
(an SQLite file by default; any RDB URL works): for an NB201 protocol
``<protocol>/<dataset>/<method>/seed-<k>``, for any other problem
(:mod:`optuna_mfkd.bench.problems`) its name and variant. A run executes in an in-memory storage and
is copied to the target storage when it ends, then marked finished (study user attribute
``bench:finished``); on a restart, finished studies are skipped and unfinished ones
(interrupted mid-copy) are deleted and run again, so the harness resumes where it stopped.
Runs go in the order seed, problem (dataset), method, so an interrupted benchmark holds about
the same number of seeds for every method.

Entry points: :func:`run_benchmark` (NB201 protocols), :func:`run_specs` (any problems;
the sampler suite, ``benchmarks/sampler_suite.py``) and :func:`main` (command line)::

    python -m optuna_mfkd.bench.harness --storage sqlite:///nb201.db --protocol nb201 \\
        --datasets cifar10 --methods random tpe gp re --seeds 0-99
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any

import optuna

from optuna_mfkd.bench.incumbent import result_record
from optuna_mfkd.bench.methods import check_installed
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric, Problem
from optuna_mfkd.bench.protocols import (
    LiveLowFidelity,
    LowFidelityPool,
    NB201Problem,
    Protocol,
    get_protocol,
)
from optuna_mfkd.datasets import DATASETS
from optuna_mfkd.defaults import N_WARMUP_LOW
from optuna_mfkd.fidelity import MaxCostCallback
from optuna_mfkd.storage import rdb_storage

FINISHED_ATTR = "bench:finished"
META_ATTR = "bench:meta"
RESULT_ATTR = "bench:result"
#: Safety cap on the trials of one run (the budget stops every run before it). Asynchronous
#: successive halving on the wing weight's four levels (cheapest 1/1000 of the top) takes about
#: 9,600 trials to spend 40 top-level evaluations, so the cap is far above that.
MAX_TRIALS = 50_000


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


@dataclass(frozen=True)
class RunSpec:
    """One run: a problem (e.g. an NB201 protocol on one dataset), a method and a seed."""

    problem: Problem
    method: str
    seed: int

    @property
    def name(self) -> str:
        return study_name(self.problem.name, self.problem.variant, self.method, self.seed)


def _storage(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if "://" not in storage:
        raise ValueError(f"storage must be an RDB URL such as 'sqlite:///bench.db', got {storage!r}.")
    return rdb_storage(storage)


def finished_studies(storage: optuna.storages.BaseStorage) -> set[str]:
    """Names of the studies in ``storage`` that a run completed."""
    return {s.study_name for s in storage.get_all_studies() if s.user_attrs.get(FINISHED_ATTR)}


def run_one(
    spec: RunSpec,
    storage: str | optuna.storages.BaseStorage,
    in_memory: bool = True,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Run one study to its budget and store it; returns its summary (name, trials, seconds).

    The study's user attributes record the run (``bench:meta``: problem, method, seed,
    budget, levels, metric, wall and CPU seconds, versions, and the problem's own facts) and
    its incumbent curve (``bench:result``, :func:`~optuna_mfkd.bench.incumbent.result_record`).
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = _storage(storage)
    name = spec.name
    try:
        study_id = target.get_study_id_from_name(name)
    except KeyError:
        study_id = None
    if study_id is not None:
        if target.get_study_user_attrs(study_id).get(FINISHED_ATTR):
            return {"study": name, "skipped": True}
        optuna.delete_study(study_name=name, storage=target)

    problem = spec.problem
    method = problem.method(spec.method)
    objective = problem.objective(spec.method)
    context = problem.context(spec.method)
    sampler, pruner, _ = method.build(spec.seed, context)
    budget = problem.budget()
    run_storage = optuna.storages.InMemoryStorage() if in_memory else target
    study = optuna.create_study(
        storage=run_storage, sampler=sampler, pruner=pruner, study_name=name, direction=problem.direction
    )
    meta = {
        "protocol": problem.name,
        "dataset": problem.variant,
        "method": spec.method,
        "method_description": method.description,
        "seed": spec.seed,
        "budget": budget,
        "cost_unit": problem.cost_unit,
        "top_level": problem.top_level,
        "levels": list(context.levels),
        "metric": problem.metric.to_json(),
        **problem.meta(spec.method),
        "optuna": optuna.__version__,
        **getattr(sampler, "bench_meta", {}),  # a peer's package versions and settings
    }
    for params, attrs in problem.warmup_queue(spec.method, spec.seed):
        study.enqueue_trial(params, user_attrs=attrs)
    start, cpu_start = time.perf_counter(), time.process_time()
    study.optimize(objective, n_trials=MAX_TRIALS, callbacks=[MaxCostCallback(budget)], gc_after_trial=False)
    wall = time.perf_counter() - start
    meta["wall_seconds"] = wall
    meta["cpu_seconds"] = time.process_time() - cpu_start
    if in_memory:
        store_study(study, target)
    stored = optuna.load_study(study_name=name, storage=target)
    stored.set_user_attr(META_ATTR, meta)
    stored.set_user_attr(RESULT_ATTR, result_record(study.get_trials(deepcopy=False), problem.top_level,
                                                    problem.metric.attr, problem.direction))
    stored.set_user_attr(FINISHED_ATTR, True)
    return {"study": name, "skipped": False, "trials": len(study.trials), "wall_seconds": wall}


def study_metric(meta: dict[str, Any]) -> Metric:
    """The metric a study's ``bench:meta`` records (NB201's test accuracy for older studies)."""
    return Metric.from_json(meta["metric"]) if "metric" in meta else NB201_TEST_ACCURACY


def backfill_results(storage: optuna.storages.BaseStorage) -> int:
    """Store the result summary of finished studies that lack one (made by older versions).

    Returns the number of studies updated.
    """
    n = 0
    for study in storage.get_all_studies():
        attrs = study.user_attrs
        if attrs.get(FINISHED_ATTR) and RESULT_ATTR not in attrs and parse_study_name(study.study_name):
            trials = storage.get_all_trials(study._study_id, deepcopy=False)
            meta = attrs.get(META_ATTR, {})
            metric = study_metric(meta)
            direction = "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
            record = result_record(trials, meta.get("top_level", ""), metric.attr, direction)
            storage.set_study_user_attr(study._study_id, RESULT_ATTR, record)
            n += 1
    return n


def _run_safely(spec: RunSpec, *args: Any) -> dict[str, Any]:
    # One failing run (e.g. a method whose dependency is missing) must not stop the others.
    try:
        return run_one(spec, *args)
    except Exception as exc:  # noqa: BLE001 - reported, and the study stays unfinished
        traceback.print_exc(file=sys.stderr)
        return {"study": spec.name, "skipped": False, "error": f"{type(exc).__name__}: {exc}"}


#: What the bulk copy writes into Optuna's private RDB models (``optuna.storages._rdb.models``):
#: model name -> the columns it fills (the primary keys are left to the database). Optuna
#: changes these tables with its schema versions; :func:`bulk_copy_matches_schema` compares
#: them with the installed Optuna, and the bulk copy runs only while they agree.
BULK_COPY_COLUMNS: dict[str, frozenset[str]] = {
    "TrialModel": frozenset({"study_id", "number", "state", "datetime_start", "datetime_complete"}),
    "TrialValueModel": frozenset({"trial_id", "objective", "value", "value_type"}),
    "TrialParamModel": frozenset({"trial_id", "param_name", "param_value", "distribution_json"}),
    "TrialUserAttributeModel": frozenset({"trial_id", "key", "value_json"}),
    "TrialSystemAttributeModel": frozenset({"trial_id", "key", "value_json"}),
    "TrialIntermediateValueModel": frozenset(
        {"trial_id", "step", "intermediate_value", "intermediate_value_type"}
    ),
}


def schema_differences() -> dict[str, tuple[set[str], set[str]]]:
    """Model name -> (columns Optuna has that the bulk copy does not write, columns it writes
    that Optuna lacks), for every model where the two differ (empty: they agree)."""
    from optuna.storages._rdb import models

    out = {}
    for name, written in BULK_COPY_COLUMNS.items():
        model = getattr(models, name, None)
        table = getattr(model, "__table__", None)
        have = set() if table is None else {c.name for c in table.columns if not c.primary_key}
        if have != written:
            out[name] = (have - written, written - have)
    return out


def bulk_copy_matches_schema() -> bool:
    """Whether the installed Optuna's trial tables are the ones :data:`BULK_COPY_COLUMNS` fills."""
    try:
        return not schema_differences()
    except ImportError:
        return False


def store_study(study: optuna.Study, target: optuna.storages.BaseStorage) -> None:
    """Copy a finished in-memory ``study`` into ``target`` under the same name.

    For an :class:`~optuna.storages.RDBStorage` whose trial tables match
    :data:`BULK_COPY_COLUMNS`, all trials are written in one transaction (Optuna's
    ``copy_study`` writes trial by trial, about 50 ms each on SQLite, which dominated the
    harness's time); other storages, or an Optuna whose schema differs, use
    :func:`optuna.copy_study`. ``tests/test_bench_harness.py`` checks the columns against
    the installed Optuna and compares the copy with ``copy_study``'s, field by field.
    """
    if isinstance(target, optuna.storages.RDBStorage) and bulk_copy_matches_schema():
        try:
            _bulk_copy(study, target)
            return
        except (ImportError, AttributeError, TypeError):  # private Optuna API changed
            try:
                optuna.delete_study(study_name=study.study_name, storage=target)
            except KeyError:
                pass
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=target)


def _bulk_copy(study: optuna.Study, target: optuna.storages.RDBStorage) -> None:
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def row(name: str, **columns: Any) -> Any:
        if columns.keys() != BULK_COPY_COLUMNS[name]:  # the declaration describes this code
            raise TypeError(f"bulk copy of {name}: columns {sorted(columns)} are not BULK_COPY_COLUMNS")
        return getattr(models, name)(**columns)

    study_id = target.create_new_study(study.directions, study.study_name)
    for key, value in study._storage.get_study_system_attrs(study._study_id).items():
        target.set_study_system_attr(study_id, key, value)
    for key, value in study.user_attrs.items():
        target.set_study_user_attr(study_id, key, value)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    with _create_scoped_session(target.scoped_session) as session:
        rows = [
            row("TrialModel", study_id=study_id, number=t.number, state=t.state,
                datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)
            for t in trials
        ]
        session.add_all(rows)
        session.flush()  # assigns trial ids
        children: list[Any] = []
        for parent, t in zip(rows, trials, strict=True):
            tid = parent.trial_id
            for objective, value in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                children.append(row("TrialValueModel", trial_id=tid, objective=objective, value=stored,
                                    value_type=kind))
            for pname, pvalue in t.params.items():
                dist = t.distributions[pname]
                children.append(row("TrialParamModel", trial_id=tid, param_name=pname,
                                    param_value=dist.to_internal_repr(pvalue),
                                    distribution_json=distribution_to_json(dist)))
            for key, value in t.user_attrs.items():
                children.append(row("TrialUserAttributeModel", trial_id=tid, key=key, value_json=json.dumps(value)))
            for key, value in t.system_attrs.items():
                children.append(row("TrialSystemAttributeModel", trial_id=tid, key=key, value_json=json.dumps(value)))
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                children.append(row("TrialIntermediateValueModel", trial_id=tid, step=step,
                                    intermediate_value=stored, intermediate_value_type=kind))
        session.add_all(children)


def make_specs(
    protocol: Protocol,
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Iterable[int],
    table_path: str | None = None,
) -> list[RunSpec]:
    """All runs of an NB201 protocol in the order seed, dataset, method (validated up front)."""
    problems = [NB201Problem(protocol, d, table_path) for d in datasets]
    return problem_specs(problems, methods, seeds)


def problem_specs(problems: Sequence[Problem], methods: Sequence[str] | None, seeds: Iterable[int]) -> list[RunSpec]:
    """All runs in the order seed, problem, method, each method checked against each problem.

    ``methods`` ``None``: each problem's own methods.
    """
    for p in problems:
        for m in methods or p.methods:
            check_installed(p.method(m))
    return [RunSpec(p, m, s) for s in seeds for p in problems for m in (methods or p.methods)]


def run_benchmark(
    storage: str,
    protocol: Protocol | str,
    datasets: Sequence[str],
    methods: Sequence[str] | None = None,
    seeds: Iterable[int] = range(10),
    n_jobs: int = 1,
    table_path: str | None = None,
    progress: bool = True,
    in_memory: bool = True,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Run every (seed, dataset, method) study of an NB201 protocol not yet finished in ``storage``.

    Args:
        storage: RDB URL of the storage holding all studies.
        protocol: a :class:`Protocol` or its name (see :mod:`optuna_mfkd.bench.protocols`).
        datasets: NB201 datasets.
        methods: method names (default: the protocol's methods).
        seeds: seeds of the runs.
        n_jobs: processes running studies in parallel (SQLite serialises the writes at the
            end of each run; use PostgreSQL for many processes).
        table_path: the NB201 table (default ``$NB201_TABLE``).
        progress: show a tqdm progress bar.
        in_memory: run each study in memory and copy it to ``storage`` at its end (fast);
            ``False`` writes every trial to ``storage`` as it happens (live dashboard).
        threads: torch threads per process (``None`` leaves torch's default).

    Returns:
        One summary dict per run (``skipped`` for studies finished before).
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    specs = make_specs(protocol, datasets, methods or protocol.methods, seeds, table_path)
    return run_specs(storage, specs, n_jobs, progress, in_memory, threads, desc=protocol.name)


def run_specs(
    storage: str,
    specs: Sequence[RunSpec],
    n_jobs: int = 1,
    progress: bool = True,
    in_memory: bool = True,
    threads: int | None = 1,
    desc: str = "bench",
) -> list[dict[str, Any]]:
    """Run every study of ``specs`` not yet finished in ``storage`` (see :func:`run_benchmark`).

    Returns one summary dict per run (``skipped`` for studies finished before; ``error``
    for a run that raised, whose study stays unfinished).
    """
    from tqdm.auto import tqdm

    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("the runs name the same study twice (a problem, method or seed given twice).")
    target = _storage(storage)
    backfill_results(target)
    done = finished_studies(target)
    todo = [s for s in specs if s.name not in done]
    results: list[dict[str, Any]] = [{"study": s.name, "skipped": True} for s in specs if s.name in done]
    bar = tqdm(total=len(specs), initial=len(results), disable=not progress, unit="study", desc=desc)
    try:
        if n_jobs <= 1:
            for spec in todo:
                bar.set_postfix_str(spec.name, refresh=False)
                results.append(_run_safely(spec, target, in_memory, threads))
                bar.update()
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
                futures = [pool.submit(_run_safely, s, storage, in_memory, threads) for s in todo]
                for fut in as_completed(futures):
                    res = fut.result()
                    results.append(res)
                    bar.set_postfix_str(res["study"], refresh=False)
                    bar.update()
    finally:
        bar.close()
    return results


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


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="optuna-mfkd benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default="sqlite:///nb201-bench.db", help="RDB URL holding all studies")
    p.add_argument("--protocol", default="nb201", help="nb201, nb201-12k or mf")
    p.add_argument("--datasets", nargs="+", default=["cifar10"], help=" ".join(DATASETS))
    p.add_argument("--methods", nargs="+", default=None, help="default: the protocol's methods")
    p.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="e.g. 0-99 or 0,3,5-7")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--table", default=None, help="NB201 table (default $NB201_TABLE)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--live", action="store_true", help="write each trial to the storage as it happens")
    p.add_argument("--pool", default=None, help="low-fidelity pool CSV (adds mfkd-nst / mfkd-ce / mfkd-kd, by the losses it holds, to nb201)")
    p.add_argument("--pool-train-size", type=int, default=25_000, help="images of the table's training split")
    p.add_argument("--n-warmup-low", type=int, default=None, help=f"low-fidelity warm-up trials (default {N_WARMUP_LOW})")
    g = p.add_argument_group("live low fidelity (protocol nb201-live: mfkd-nst / mfkd-ce / mfkd-kd train their low level)")
    g.add_argument("--live-low", action="store_true", help="train the low level live instead of reading a pool")
    g.add_argument("--data-root", default=None, help="CIFAR-10 zip or folder (default $MFKD_CIFAR10)")
    g.add_argument("--teacher", default=None, help="teacher checkpoint (default: $MFKD_TEACHERS's CIFAR-10 teacher)")
    g.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    g.add_argument("--train-images", type=int, default=6000, help="training images of one low-fidelity run")
    g.add_argument("--eval-images", type=int, default=2000, help="validation images scoring it")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--low-epochs", type=int, default=1)
    g.add_argument("--time-ratio", default=None,
                   help="loss=ratio,... training-time ratios to CE charged to the low level "
                        "(default: the measured optuna_mfkd.training.objectives.TIME_RATIOS)")
    return p


def _live_from_args(args: argparse.Namespace) -> LiveLowFidelity:
    from optuna_mfkd.training.objectives import TIME_RATIOS

    data = args.data_root or os.environ.get("MFKD_CIFAR10")
    if not data:
        raise ValueError("--live-low needs --data-root (or $MFKD_CIFAR10): the CIFAR-10 images to train on.")
    ratios = dict(TIME_RATIOS)
    for part in filter(None, (args.time_ratio or "").split(",")):
        loss, sep, value = part.partition("=")
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not sep or not ratio > 0:
            raise ValueError(f"--time-ratio {args.time_ratio!r}: expected loss=ratio pairs with ratio > 0, e.g. nst=1.1")
        ratios[loss.strip()] = ratio
    settings = {"epochs": args.low_epochs, "train_images": args.train_images,
                "eval_images": args.eval_images, "batch_size": args.batch_size}
    return LiveLowFidelity(data_root=str(data), settings=settings, cache=args.storage, time_ratios=ratios,
                           teacher=args.teacher, device=args.device)


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    pool = None
    if args.pool:
        pool = LowFidelityPool.from_csv(args.pool, train_size=args.pool_train_size)
    live = _live_from_args(args) if args.live_low else None
    protocol = get_protocol(args.protocol, pool, live)
    if args.n_warmup_low is not None:
        protocol = replace(protocol, n_warmup_low=args.n_warmup_low)
    return protocol


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = run_benchmark(
        storage=args.storage,
        protocol=protocol_from_args(args),
        datasets=args.datasets,
        methods=args.methods,
        seeds=args.seeds,
        n_jobs=args.n_jobs,
        table_path=args.table,
        progress=not args.no_progress,
        in_memory=not args.live,
    )
    ran = [r for r in results if not r.get("skipped")]
    errors = [r for r in ran if "error" in r]
    print(json.dumps({"studies": len(results), "ran": len(ran), "skipped": len(results) - len(ran), "errors": len(errors)}))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
