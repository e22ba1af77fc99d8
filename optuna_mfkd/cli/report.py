"""``optuna-mfkd report``: summarise the benchmark studies of one or more storages.

Writes README.md (tables, tests, anytime curves), runs.csv, summary.csv and the curve PNGs
(:func:`optuna_mfkd.bench.report.write_report`). What the report says beyond its tables is
given as Markdown files: ``--intro`` (what the figures are), ``--notes`` and ``--appendix``
(e.g. published figures; the repository's are in ``benchmarks/report_text/``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from optuna_mfkd.bench.report import write_report
from optuna_mfkd.bench.statistics import ANYTIME_FRACTIONS
from optuna_mfkd.cli.common import Parser


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or Parser(prog="optuna-mfkd report", description="Summarise benchmark studies.")
    p.add_argument("--storage", required=True, nargs="+",
                   help="RDB URL(s) holding the benchmark studies (several: their studies are pooled)")
    p.add_argument("--out", required=True, help="folder for README.md, CSVs and PNGs")
    p.add_argument("--protocols", nargs="+", default=None, help="only these protocols")
    p.add_argument("--anytime", nargs="+", type=float, default=list(ANYTIME_FRACTIONS),
                   help="budget fractions of the anytime columns (default: 0.25 0.5)")
    p.add_argument("--anytime-tests", action="store_true", help="also test against MFKDSampler at those fractions")
    p.add_argument("--title", default=None, help="the README's title")
    p.add_argument("--intro", type=Path, nargs="+", default=[], metavar="FILE",
                   help="Markdown files placed after the command, before the account of the statistics")
    p.add_argument("--notes", type=Path, default=None, help="Markdown file placed after the introduction")
    p.add_argument("--appendix", type=Path, nargs="+", default=[], metavar="FILE",
                   help="Markdown files placed at the end (e.g. published figures quoted as context)")
    return p


def markdown_lines(path: Path) -> list[str]:
    """The lines of a Markdown file, without its trailing newlines."""
    return path.read_text().rstrip("\n").splitlines()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "optuna-mfkd report " + " ".join(shlex.quote(a) for a in argv)
    notes = markdown_lines(args.notes) if args.notes else ()
    intro = [line for path in args.intro for line in (*markdown_lines(path), "")]
    appendix = [line for path in args.appendix for line in (*markdown_lines(path), "")]
    extra = {"title": args.title} if args.title else {}
    path = write_report(args.storage, args.out, args.protocols, command=command, notes=notes,
                        anytime_tests=args.anytime_tests, anytime=args.anytime, intro=intro, appendix=appendix,
                        **extra)
    print(f"wrote {path}")
    return 0
