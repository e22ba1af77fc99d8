"""``optuna-mfkd benchmark``: run benchmark studies side by side into one storage.

Either an NB201 protocol on datasets (``--protocol`` / ``--datasets``, the live low fidelity
of ``--live-low``) or problems by id (``--problems``: ``branin/1-level``, a bare name such as
``hartmann6`` or ``mf``, ``mf3/cifar10`` with its pool from ``--pool`` or ``$MFKD_POOL``; see
:mod:`optuna_mfkd.bench.catalog`). Every run is a study ``<problem>/<variant>/<method>/seed-<k>``;
finished ones are skipped, so the command resumes where it stopped. ``--redo`` runs methods
again; ``--records FILE`` keeps the finished runs in a small file
(:mod:`optuna_mfkd.bench.records`). The repository's benchmark scripts (``benchmarks/``)
call the same functions with their settings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from optuna_mfkd.bench import harness, records
from optuna_mfkd.bench.catalog import POOL_ENV, expand, make_problem
from optuna_mfkd.bench.lowfi import LiveLowFidelity, LowFidelityPool
from optuna_mfkd.bench.problems import Problem
from optuna_mfkd.bench.protocols import NB201Problem, Protocol, get_protocol
from optuna_mfkd.bench.runs import parse_seeds
from optuna_mfkd.cli.common import Parser
from optuna_mfkd.datasets import DATASETS
from optuna_mfkd.defaults import N_WARMUP_LOW
from optuna_mfkd.storage import rdb_storage

DESCRIPTION = "Run benchmark studies side by side in one Optuna storage."


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or Parser(prog="optuna-mfkd benchmark", description=DESCRIPTION)
    p.add_argument("--storage", default="sqlite:///nb201-bench.db", help="RDB URL holding all studies")
    p.add_argument("--protocol", default=None, help="nb201 (default), nb201-12k, mf or mf3")
    p.add_argument("--datasets", nargs="+", default=None, help=" ".join(DATASETS) + " (default: cifar10)")
    p.add_argument("--problems", nargs="+", default=None, metavar="ID",
                   help="problems by id or name instead of --protocol/--datasets (e.g. branin/1-level, "
                        "hartmann6, mf, mf3/cifar10)")
    p.add_argument("--methods", nargs="+", default=None, help="default: each problem's methods")
    p.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="e.g. 0-99 or 0,3,5-7")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--table", default=None, help="NB201 table (default $NB201_TABLE)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--live", action="store_true", help="write each trial to the storage as it happens")
    p.add_argument("--pool", default=None,
                   help="low-fidelity pool CSV: adds mfkd-nst / mfkd-ce / mfkd-kd, by the losses it holds, to "
                        "--protocol nb201; the cheapest level of mf3 (default there: $MFKD_POOL)")
    p.add_argument("--pool-train-size", type=int, default=25_000, help="images of the table's training split")
    p.add_argument("--n-warmup-low", type=int, default=None, help=f"low-fidelity warm-up trials (default {N_WARMUP_LOW})")
    p.add_argument("--redo", nargs="+", default=[], metavar="METHOD",
                   help="delete the stored studies of these methods (of the selected runs) and run them again")
    p.add_argument("--records", type=Path, default=None,
                   help="finished runs kept in a file (.jsonl or .jsonl.gz): read into the storage first, "
                        "written back at the end")
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
    from optuna_mfkd.training.objectives import TIME_RATIOS  # loads torch

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
    """The NB201 protocol ``--protocol`` names, with ``--pool`` / ``--live-low`` / ``--n-warmup-low``."""
    name = args.protocol or "nb201"
    pool_path = args.pool or (os.environ.get(POOL_ENV) if name == "mf3" else None)
    if name == "mf3" and not pool_path:
        raise ValueError(f"protocol 'mf3' needs a low-fidelity pool: give --pool FILE or set ${POOL_ENV}.")
    pool = LowFidelityPool.from_csv(pool_path, train_size=args.pool_train_size) if pool_path else None
    live = _live_from_args(args) if args.live_low else None
    protocol = get_protocol(name, pool, live)
    if args.n_warmup_low is not None:
        protocol = replace(protocol, n_warmup_low=args.n_warmup_low)
    return protocol


def problems_from_args(args: argparse.Namespace) -> list[Problem]:
    """The problems of the command: ``--problems`` by id, else ``--protocol`` on ``--datasets``."""
    if args.problems is None:
        protocol = protocol_from_args(args)
        return [NB201Problem(protocol, d, args.table) for d in (args.datasets or ["cifar10"])]
    given = [opt for opt, value in (("--protocol", args.protocol), ("--datasets", args.datasets),
                                    ("--live-low", args.live_low), ("--n-warmup-low", args.n_warmup_low))
             if value not in (None, False)]
    if given:
        raise ValueError(f"{given[0]} applies to --protocol runs, not to --problems.")
    return [make_problem(pid, args.table, args.pool) for pid in expand(args.problems)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n_jobs < 1:
        raise ValueError(f"--n-jobs must be at least 1, got {args.n_jobs}.")
    problems = problems_from_args(args)
    if args.records is not None and args.records.exists():
        imported = records.import_runs(args.records, rdb_storage(args.storage))
        print(json.dumps({"records": str(args.records), "imported": imported}))
    desc = args.problems[0] if args.problems else problems[0].name
    results = harness.run_problems(args.storage, problems, args.methods, args.seeds, n_jobs=args.n_jobs,
                                   progress=not args.no_progress, redo=args.redo, in_memory=not args.live,
                                   desc=desc)
    ran = [r for r in results if not r.get("skipped")]
    errors = [r for r in ran if "error" in r]
    print(json.dumps({"studies": len(results), "ran": len(ran), "skipped": len(results) - len(ran), "errors": len(errors)}))
    if args.records is not None:
        kept = records.export_runs(rdb_storage(args.storage), args.records)
        print(json.dumps({"records": str(args.records), "written": kept}))
    return 1 if errors else 0
