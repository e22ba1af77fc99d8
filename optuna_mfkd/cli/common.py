"""What every subcommand shares: the error type, the one-line parser, argument types, messages.

Every bad argument ends the command with one line ``optuna-mfkd <cmd>: error: ...`` that
names it, and exit code :data:`EXIT_USAGE`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

PROG = "optuna-mfkd"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TABLE_HELP = ("NB201 table: the compact CSV (plain or .csv.gz) or the official file "
              "(default: $NB201_TABLE, else the table bundled with the package)")


class CLIError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- argument types
def number(kind: type, check: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argument type: ``kind(text)``, finite and passing ``check``, else an error naming ``what``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = number(int, lambda v: v > 0, "a positive integer")
nonneg_int = number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = number(float, lambda v: v > 0, "a positive number")
nonneg_float = number(float, lambda v: v >= 0, "a non-negative number")
port_number = number(int, lambda v: 0 < v < 65536, "a port number 1..65535")


class Renamed(argparse.Action):
    """An option's old name: stores the value under the new one and prints a deprecation line."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def nonempty_path(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; give a file or folder")
    return Path(text).expanduser()


def study_name(text: str) -> str:
    """A study name: not empty, no leading or trailing blanks."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: a study name must be non-empty without leading or trailing blanks")
    return text


def existing_path(text: str) -> Path:
    """A path argument that must exist."""
    path = nonempty_path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return path


# --------------------------------------------------------------------------- messages
def source(flag: str, env: str, given: Any) -> str:
    """How a message names an input: the option, or the variable that stood in for it."""
    return flag if given is not None else f"{env} (default of {flag})"


def one_line(exc: BaseException | str) -> str:
    """An error message on one line (some libraries' messages span several)."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text


# --------------------------------------------------------------------------- signals
def sigterm_interrupts() -> None:
    """Treat SIGTERM (a scheduler stopping the job) like Ctrl-C: fail, requeue, exit 130."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
