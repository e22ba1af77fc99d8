"""The ``optuna-mfkd`` parser and entry point: each subcommand's module registers its options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from optuna_mfkd.cli import nb201, passthrough, proxy, search
from optuna_mfkd.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, CLIError, Parser, one_line
from optuna_mfkd.cli.study import masked, storage_reason


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (search, worker, proxy, benchmark, report, teacher, nb201)."""
    parser = Parser(prog=PROG, description="MF-KD: multi-fidelity NAS with knowledge distillation, on Optuna.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)
    search.register(sub)
    proxy.register(sub)
    passthrough.register(sub)
    nb201.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optuna-mfkd")
    except PackageNotFoundError:
        return "unknown"


def _quiet_warnings() -> None:
    """Hide warnings about experimental/deprecated APIs the command uses on purpose."""
    import warnings

    warnings.filterwarnings("ignore", message=".*experimental.*")
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``optuna-mfkd``; returns the exit code."""
    _quiet_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError) as exc:
        # Clear messages raised by the package (missing table, malformed input, ...).
        print(f"{PROG} {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        # A database that refuses a write (read-only SQLite file or folder, lost server):
        # the transaction is rolled back, so nothing stored changed.
        import optuna.exceptions
        import sqlalchemy.exc

        url = getattr(args, "storage", None)
        if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
            exc = exc.__cause__  # Optuna wraps the database's own error
        if url is None or not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            raise
        print(f"{PROG} {args.command}: error: --storage {masked(url)}: the database refused a "
              f"write: {storage_reason(exc, url)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
