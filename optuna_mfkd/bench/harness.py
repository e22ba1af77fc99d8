"""Run benchmark studies side by side in one Optuna storage.

A run (:class:`~optuna_mfkd.bench.runs.RunSpec`: a problem, a method, a seed) executes in an
in-memory storage and is copied to the target storage when it ends
(:func:`~optuna_mfkd.bench.bulk_copy.store_study`), then marked finished; on a restart,
finished studies are skipped and unfinished ones (interrupted mid-copy) are deleted and run
again, so the harness resumes where it stopped. Runs go in the order seed, problem (dataset),
method, so an interrupted benchmark holds about the same number of seeds for every method.
Names and stored attributes: :mod:`optuna_mfkd.bench.runs`.

Entry points: :func:`run_benchmark` (an NB201 protocol on datasets), :func:`run_problems`
(any problems, e.g. from :func:`optuna_mfkd.bench.catalog.make_problem`) and
:func:`run_specs` (given runs). The command line is ``optuna-mfkd benchmark``
(:mod:`optuna_mfkd.cli.benchmark`).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import optuna

from optuna_mfkd.bench.bulk_copy import store_study
from optuna_mfkd.bench.incumbent import result_record
from optuna_mfkd.bench.problems import Problem
from optuna_mfkd.bench.protocols import NB201Problem, Protocol, get_protocol
from optuna_mfkd.bench.runs import (
    FINISHED_ATTR,
    META_ATTR,
    RESULT_ATTR,
    RunSpec,
    as_storage,
    check_no_legacy_clash,
    finished_studies,
    parse_study_name,
    problem_specs,
    stored_runs,
    study_metric,
)
from optuna_mfkd.fidelity import MaxCostCallback

#: Safety cap on the trials of one run (the budget stops every run before it). Asynchronous
#: successive halving on the wing weight's four levels (cheapest 1/1000 of the top) takes about
#: 9,600 trials to spend 40 top-level evaluations, so the cap is far above that.
MAX_TRIALS = 50_000


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
    target = as_storage(storage)
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
    target = as_storage(storage)
    backfill_results(target)
    check_no_legacy_clash(target, specs)
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


def forget(storage: str | optuna.storages.BaseStorage, runs: Sequence[RunSpec], methods: Sequence[str]) -> list[str]:
    """Delete the stored studies of ``runs`` whose method is in ``methods`` (to run them again,
    e.g. after a change of the sampler); returns their names."""
    target = as_storage(storage)
    stored = stored_runs(target)
    gone = [r.name for r in runs if r.method in methods and r.name in stored]
    for name in gone:
        optuna.delete_study(study_name=stored[name].study_name, storage=target)
    return gone


def run_problems(
    storage: str,
    problems: Sequence[Problem],
    methods: Sequence[str] | None = None,
    seeds: Iterable[int] = range(10),
    n_jobs: int = 1,
    progress: bool = True,
    redo: Sequence[str] = (),
    in_memory: bool = True,
    threads: int | None = 1,
    desc: str = "bench",
) -> list[dict[str, Any]]:
    """Run every (seed, problem, method) of ``problems`` not yet finished in ``storage``.

    ``methods`` ``None``: each problem's own methods; ``redo``: methods whose stored studies
    among these runs are deleted first and run again. A missing NB201 table fails here, not
    once per run. Returns what :func:`run_specs` returns.
    """
    for problem in problems:
        if isinstance(problem, NB201Problem):
            problem.table()
    runs = problem_specs(problems, methods, list(seeds))
    if redo:
        unknown = [m for m in redo if m not in {r.method for r in runs}]
        if unknown:
            raise ValueError(f"--redo names methods that are not run: {unknown}.")
        forget(storage, runs, redo)
    return run_specs(storage, runs, n_jobs=n_jobs, progress=progress, in_memory=in_memory, threads=threads,
                     desc=desc)
