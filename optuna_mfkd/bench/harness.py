"""Run benchmark studies side by side in one Optuna storage.

Each run is an Optuna study named ``<protocol>/<dataset>/<method>/seed-<k>`` in one storage
(an SQLite file by default; any RDB URL works). A run executes in an in-memory storage and
is copied to the target storage when it ends, then marked finished (study user attribute
``bench:finished``); on a restart, finished studies are skipped and unfinished ones
(interrupted mid-copy) are deleted and run again, so the harness resumes where it stopped.
Runs go in the order seed, dataset, method, so an interrupted benchmark holds about the
same number of seeds for every method.

Entry points: :func:`run_benchmark` (library) and :func:`main` (command line)::

    python -m optuna_mfkd.bench.harness --storage sqlite:///nb201.db --protocol nb201 \\
        --datasets cifar10 --methods random tpe gp re --seeds 0-99
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import optuna

from optuna_mfkd.bench.incumbent import result_record
from optuna_mfkd.bench.methods import check_installed
from optuna_mfkd.bench.protocols import (
    KD_METHODS,
    LiveLowFidelity,
    LowFidelityPool,
    Protocol,
    get_protocol,
)
from optuna_mfkd.fidelity import MaxCostCallback
from optuna_mfkd.nasbench201.table import load_table, normalise_dataset

FINISHED_ATTR = "bench:finished"
META_ATTR = "bench:meta"
RESULT_ATTR = "bench:result"
#: Safety cap on the trials of one run (a budget normally stops it long before).
MAX_TRIALS = 5000


def study_name(protocol: str, dataset: str, method: str, seed: int) -> str:
    return f"{protocol}/{dataset}/{method}/seed-{seed}"


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
    """One run: a protocol, dataset, method and seed."""

    protocol: Protocol
    dataset: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return study_name(self.protocol.name, self.dataset, self.method, self.seed)


def _storage(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if "://" not in storage:
        raise ValueError(f"storage must be an RDB URL such as 'sqlite:///bench.db', got {storage!r}.")
    return optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {})


def finished_studies(storage: optuna.storages.BaseStorage) -> set[str]:
    """Names of the studies in ``storage`` that a run completed."""
    return {s.study_name for s in storage.get_all_studies() if s.user_attrs.get(FINISHED_ATTR)}


def run_one(
    spec: RunSpec,
    storage: str | optuna.storages.BaseStorage,
    table_path: str | None = None,
    in_memory: bool = True,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Run one study to its budget and store it; returns its summary (name, trials, seconds)."""
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

    table = load_table(table_path)
    protocol, dataset = spec.protocol, normalise_dataset(spec.dataset)
    method = protocol.check(spec.method, dataset)
    objective = protocol.objective(table, dataset, spec.method)
    sampler, pruner, _ = method.build(spec.seed, protocol.context(spec.method))
    budget = protocol.budget(table, dataset)
    run_storage = optuna.storages.InMemoryStorage() if in_memory else target
    study = optuna.create_study(
        storage=run_storage, sampler=sampler, pruner=pruner, study_name=name, direction="maximize"
    )
    meta = {
        "protocol": protocol.name,
        "dataset": dataset,
        "method": spec.method,
        "method_description": method.description,
        "seed": spec.seed,
        "budget": budget,
        "top_level": protocol.top_level,
        "levels": list(objective.levels),
        "table": table.source,
        "best_test_acc_in_space": table.best_test_acc(dataset),
        "optuna": optuna.__version__,
        **getattr(sampler, "bench_meta", {}),  # a peer's package versions and settings
    }
    loss = KD_METHODS.get(spec.method)
    if loss is not None and protocol.pool is not None:
        meta["pool"] = protocol.pool.source
        meta["pool_cells"] = len(protocol.pool.scores[loss])
        meta["low_cost_epochs"] = protocol.pool.cost_epochs[loss]
    if loss is not None and protocol.live is not None:
        meta["low_fidelity"] = {"live": True, "loss": loss, **dict(protocol.live.settings),
                                "time_ratio_to_ce": protocol.live.overhead[loss], "seed": protocol.live.seed}
    if loss is not None:
        meta["n_warmup_low"] = protocol.n_warmup_low
    for params, attrs in protocol.warmup_queue(spec.method, spec.seed):
        study.enqueue_trial(params, user_attrs=attrs)
    start = time.perf_counter()
    study.optimize(objective, n_trials=MAX_TRIALS, callbacks=[MaxCostCallback(budget)], gc_after_trial=False)
    wall = time.perf_counter() - start
    meta["wall_seconds"] = wall
    if in_memory:
        store_study(study, target)
    stored = optuna.load_study(study_name=name, storage=target)
    stored.set_user_attr(META_ATTR, meta)
    stored.set_user_attr(RESULT_ATTR, result_record(study.get_trials(deepcopy=False), protocol.top_level))
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
            top = attrs.get(META_ATTR, {}).get("top_level", "")
            storage.set_study_user_attr(study._study_id, RESULT_ATTR, result_record(trials, top))
            n += 1
    return n


def _run_safely(spec: RunSpec, *args: Any) -> dict[str, Any]:
    # One failing run (e.g. a method whose dependency is missing) must not stop the others.
    try:
        return run_one(spec, *args)
    except Exception as exc:  # noqa: BLE001 - reported, and the study stays unfinished
        import sys
        import traceback

        traceback.print_exc(file=sys.stderr)
        return {"study": spec.name, "skipped": False, "error": f"{type(exc).__name__}: {exc}"}


def store_study(study: optuna.Study, target: optuna.storages.BaseStorage) -> None:
    """Copy a finished in-memory ``study`` into ``target`` under the same name.

    For an :class:`~optuna.storages.RDBStorage` all trials are written in one transaction
    (Optuna's ``copy_study`` writes trial by trial, about 50 ms each on SQLite, which
    dominated the harness's time); other storages, or an RDB schema this code does not know,
    fall back to :func:`optuna.copy_study`.
    """
    if isinstance(target, optuna.storages.RDBStorage):
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
    import json

    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    study_id = target.create_new_study(study.directions, study.study_name)
    for key, value in study._storage.get_study_system_attrs(study._study_id).items():
        target.set_study_system_attr(study_id, key, value)
    for key, value in study.user_attrs.items():
        target.set_study_user_attr(study_id, key, value)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    with _create_scoped_session(target.scoped_session) as session:
        rows = [
            models.TrialModel(
                study_id=study_id,
                number=t.number,
                state=t.state,
                datetime_start=t.datetime_start,
                datetime_complete=t.datetime_complete,
            )
            for t in trials
        ]
        session.add_all(rows)
        session.flush()  # assigns trial ids
        children: list[Any] = []
        for row, t in zip(rows, trials, strict=True):
            for objective, value in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                children.append(models.TrialValueModel(trial_id=row.trial_id, objective=objective, value=stored, value_type=kind))
            for pname, pvalue in t.params.items():
                dist = t.distributions[pname]
                children.append(
                    models.TrialParamModel(
                        trial_id=row.trial_id,
                        param_name=pname,
                        param_value=dist.to_internal_repr(pvalue),
                        distribution_json=distribution_to_json(dist),
                    )
                )
            for key, value in t.user_attrs.items():
                children.append(models.TrialUserAttributeModel(trial_id=row.trial_id, key=key, value_json=json.dumps(value)))
            for key, value in t.system_attrs.items():
                children.append(models.TrialSystemAttributeModel(trial_id=row.trial_id, key=key, value_json=json.dumps(value)))
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                children.append(
                    models.TrialIntermediateValueModel(
                        trial_id=row.trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind
                    )
                )
        session.add_all(children)


def make_specs(protocol: Protocol, datasets: Sequence[str], methods: Sequence[str], seeds: Iterable[int]) -> list[RunSpec]:
    """All runs in the order seed, dataset, method (validated up front)."""
    datasets = [normalise_dataset(d) for d in datasets]
    for d in datasets:
        for m in methods:
            check_installed(protocol.check(m, d))
    return [RunSpec(protocol, d, m, s) for s in seeds for d in datasets for m in methods]


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
    """Run every (seed, dataset, method) study not yet finished in ``storage``.

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
    from tqdm.auto import tqdm

    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    specs = make_specs(protocol, datasets, methods or protocol.methods, seeds)
    target = _storage(storage)
    backfill_results(target)
    done = finished_studies(target)
    todo = [s for s in specs if s.name not in done]
    results: list[dict[str, Any]] = [{"study": s.name, "skipped": True} for s in specs if s.name in done]
    bar = tqdm(total=len(specs), initial=len(results), disable=not progress, unit="study", desc=protocol.name)
    try:
        if n_jobs <= 1:
            for spec in todo:
                bar.set_postfix_str(spec.name, refresh=False)
                results.append(_run_safely(spec, target, table_path, in_memory, threads))
                bar.update()
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
                futures = [pool.submit(_run_safely, s, storage, table_path, in_memory, threads) for s in todo]
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
    p.add_argument("--datasets", nargs="+", default=["cifar10"], help="cifar10 cifar100 imagenet16")
    p.add_argument("--methods", nargs="+", default=None, help="default: the protocol's methods")
    p.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="e.g. 0-99 or 0,3,5-7")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--table", default=None, help="NB201 table (default $NB201_TABLE)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--live", action="store_true", help="write each trial to the storage as it happens")
    p.add_argument("--pool", default=None, help="low-fidelity pool CSV (adds mfkd-nst / mfkd-ce / mfkd-kd, by the losses it holds, to nb201)")
    p.add_argument("--pool-train-size", type=int, default=25_000, help="images of the table's training split")
    p.add_argument("--n-warmup-low", type=int, default=None, help="low-fidelity warm-up trials (default 100)")
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
                        "(default: the measured optuna_mfkd.training.objective.KD_TIME_RATIO)")
    return p


def _live_from_args(args: argparse.Namespace) -> LiveLowFidelity:
    import os

    from optuna_mfkd.training.objective import KD_TIME_RATIO

    data = args.data_root or os.environ.get("MFKD_CIFAR10")
    if not data:
        raise ValueError("--live-low needs --data-root (or $MFKD_CIFAR10): the CIFAR-10 images to train on.")
    ratios = dict(KD_TIME_RATIO)
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
    return LiveLowFidelity(data_root=str(data), settings=settings, cache=args.storage, overhead=ratios,
                           teacher=args.teacher, device=args.device)


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    pool = None
    if args.pool:
        pool = LowFidelityPool.from_csv(args.pool, train_size=args.pool_train_size)
    live = _live_from_args(args) if args.live_low else None
    protocol = get_protocol(args.protocol, pool, live)
    if args.n_warmup_low is not None:
        import dataclasses

        protocol = dataclasses.replace(protocol, n_warmup_low=args.n_warmup_low)
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
