"""The sampler suite: every problem and method side by side in one storage, then the report.

Problems, methods, groups and the report's notes are the settings of ``suite_settings.py``
beside this script; the runs and the report are those of ``optuna-mfkd benchmark`` and
``optuna-mfkd report`` (the same functions of ``optuna_mfkd.bench``). Every run is an Optuna
study ``<problem>/<variant>/<method>/seed-<k>`` in one storage, so the command resumes where
it stopped (finished studies are skipped)::

    OMP_NUM_THREADS=1 NB201_TABLE=/path/nb201_compact.csv python benchmarks/sampler_suite.py \\
        --storage sqlite:///benchmarks/results/sampler-suite/studies.db --problems all \\
        --seeds 0-29 --n-jobs 2 --out benchmarks/results/sampler-suite

``--problems synthetic`` runs the BoTorch functions only (no NB201 table needed);
``--redo mfkd`` deletes the stored ``mfkd`` studies of the selected runs first (after a
change of the sampler). The report covers every finished suite study in the storage, not
only the selected ones; ``--report-only`` writes it and runs nothing; ``--title``,
``--notes`` (a Markdown file) and ``--anytime`` shape it.

``--records FILE`` keeps the finished runs in a small file (``optuna_mfkd/bench/records.py``):
the runs it holds are read into the storage first (and so skipped), and every finished run
of the storage is written back to it at the end, so a long benchmark continues on another
machine from the committed file.

The multi-fidelity problems also run the peers when named (``--problems synthetic-mf
--methods dehb syne-bohb ...``; optional extra ``peers``); they are not in the default list.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite_settings as suite  # noqa: E402

from optuna_mfkd.bench import records  # noqa: E402
from optuna_mfkd.bench.runs import parse_seeds  # noqa: E402
from optuna_mfkd.storage import rdb_storage  # noqa: E402

DEFAULT_OUT = "benchmarks/results/sampler-suite"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default=f"sqlite:///{DEFAULT_OUT}/studies.db", help="RDB URL holding all studies")
    p.add_argument("--problems", nargs="+", default=["all"],
                   help=f"problem ids, names or groups ({', '.join(suite.GROUPS)}); default: all")
    p.add_argument("--methods", nargs="+", default=list(suite.METHOD_NAMES), help="default: %(default)s")
    p.add_argument("--seeds", type=parse_seeds, default=list(range(30)), help="e.g. 0-29 or 0,3,5-7")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--table", default=None, help="NB201 table (default $NB201_TABLE)")
    p.add_argument("--pool", default=None,
                   help="low-fidelity pool of mf3 (default $MFKD_POOL, else benchmarks/results/paper-protocol/pool-snapshot.csv)")
    p.add_argument("--redo", nargs="+", default=[], metavar="METHOD",
                   help="delete the stored studies of these methods (of the selected runs) and run them again")
    p.add_argument("--out", default=DEFAULT_OUT, help="report folder (README.md, CSVs, PNGs)")
    p.add_argument("--report-only", action="store_true", help="write the report from the storage, run nothing")
    p.add_argument("--title", default=None, help="the report's title (default: Sampler suite)")
    p.add_argument("--notes", type=Path, default=None,
                   help="Markdown file placed in the report after the suite's own notes")
    p.add_argument("--anytime", nargs="+", type=float, default=None,
                   help="budget fractions of the anytime columns and tests (default: 0.25 0.5)")
    p.add_argument("--records", type=Path, default=None,
                   help="finished runs kept in a file (.jsonl or .jsonl.gz): read into the storage first, "
                        "written back at the end")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_jobs < 1:
        parser.error(f"--n-jobs must be at least 1, got {args.n_jobs}.")
    try:
        problems = suite.expand(args.problems)
        if args.storage.startswith("sqlite:///"):
            folder = os.path.dirname(args.storage[len("sqlite:///"):])
            if folder:
                os.makedirs(folder, exist_ok=True)
        errors = 0
        if args.records is not None and args.records.exists():
            imported = records.import_runs(args.records, rdb_storage(args.storage))
            print(json.dumps({"records": str(args.records), "imported": imported}))
        if not args.report_only:
            results = suite.run_suite(args.storage, problems, args.methods, args.seeds, n_jobs=args.n_jobs,
                                      table_path=args.table, progress=not args.no_progress, redo=args.redo,
                                      pool=args.pool)
            ran = [r for r in results if not r.get("skipped")]
            errors = sum("error" in r for r in ran)
            print(json.dumps({"studies": len(results), "ran": len(ran), "skipped": len(results) - len(ran),
                              "errors": errors}))
        if args.records is not None:
            kept = records.export_runs(rdb_storage(args.storage), args.records)
            print(json.dumps({"records": str(args.records), "written": kept}))
        command = "OMP_NUM_THREADS=1 python benchmarks/sampler_suite.py " + " ".join(shlex.quote(a) for a in argv)
        notes = args.notes.read_text().rstrip("\n").splitlines() if args.notes else ()
        options = {k: v for k, v in {"title": args.title, "anytime": args.anytime}.items() if v is not None}
        readme = suite.write_suite_report(args.storage, args.out, command=command, notes=notes, **options)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    print(f"wrote {readme}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
