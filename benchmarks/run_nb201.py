"""Run the NAS-Bench-201 benchmark stages into one storage, then write the report.

Stages run in order (each resumable: finished studies are skipped), seeds interleaved so an
interrupted run holds about the same number of seeds per method::

    OMP_NUM_THREADS=1 NB201_TABLE=/path/nb201_compact.csv \\
        python benchmarks/run_nb201.py --storage sqlite:///benchmarks/results/nb201-bench/studies.db \\
        --seeds 0-99 --out benchmarks/results/nb201-bench

``--stages`` picks stages by name (default: all, in the order below). ``--chunk K`` runs the
seeds K at a time through all stages, so a run stopped early holds about as many seeds for
every stage. The runs are those of ``optuna-mfkd benchmark --protocol ...`` and the report
that of ``optuna-mfkd report`` (the same functions), with the NAS-Bench-201 introduction and
published figures of ``report_text.py``. The two-level MFKDSampler with the paper's settings
is ``mfkd-paper`` (stored as ``mfkd`` before it had a name of its own; such studies are read as
``mfkd-paper``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report_text  # noqa: E402

from optuna_mfkd.bench import harness  # noqa: E402
from optuna_mfkd.bench.runs import parse_seeds  # noqa: E402

SINGLE = ["random", "tpe", "gp", "re", "mfkd-gpr"]
MULTI = ["random", "tpe", "gp", "re", "mfkd-gpr", "bohb", "hyperband", "mfkd-paper"]

#: name -> (protocol, datasets, methods)
STAGES: dict[str, tuple[str, list[str], list[str]]] = {
    "nb201-cifar10": ("nb201", ["cifar10"], SINGLE),
    "mf-cifar10": ("mf", ["cifar10"], MULTI),
    "nb201-cifar100": ("nb201", ["cifar100"], SINGLE),
    "nb201-imagenet16": ("nb201", ["imagenet16"], SINGLE),
    "nb201-12k-imagenet16": ("nb201-12k", ["imagenet16"], SINGLE),
    "mf-cifar100": ("mf", ["cifar100"], MULTI),
    "mf-imagenet16": ("mf", ["imagenet16"], MULTI),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--seeds", type=parse_seeds, default=list(range(100)))
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--table", default=None)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--chunk", type=int, default=0, help="seeds per round through all stages (0: all)")
    p.add_argument("--out", default=None, help="write the report here after the stages")
    args = p.parse_args(argv)
    failed = 0
    k = args.chunk or len(args.seeds)
    for start in range(0, len(args.seeds), k):
        seeds = args.seeds[start : start + k]
        for stage in args.stages:
            protocol, datasets, methods = STAGES[stage]
            print(f"== stage {stage}, seeds {seeds[0]}-{seeds[-1]}", flush=True)
            results = harness.run_benchmark(
                args.storage, protocol, datasets, methods, seeds, n_jobs=args.n_jobs, table_path=args.table
            )
            failed += sum("error" in r for r in results)
        if args.out:
            from optuna_mfkd.bench import report

            command = "OMP_NUM_THREADS=1 NB201_TABLE=... python benchmarks/run_nb201.py " + " ".join(
                shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
            )
            report.write_report(args.storage, args.out, command=command, **report_text.for_storage(args.storage))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
