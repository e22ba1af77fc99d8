"""``optuna-mfkd benchmark`` / ``report`` / ``teacher``: command lines with parsers of their own
(:mod:`optuna_mfkd.cli.benchmark`, :mod:`optuna_mfkd.cli.report`,
:mod:`optuna_mfkd.training.teacher_training`), arguments passed through unchanged."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: Subcommand -> (module whose ``main(argv)`` runs it, help line).
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "benchmark": ("optuna_mfkd.cli.benchmark", "run benchmark studies into one storage (see its --help)"),
    "report": ("optuna_mfkd.cli.report", "summarise benchmark results (see its --help)"),
    "teacher": ("optuna_mfkd.training.teacher_training", "load, train or fine-tune a teacher (see its --help)"),
}


def cmd_passthrough(module: str, args: argparse.Namespace) -> int:
    """Run ``<module>.main(argv)`` with the remaining arguments."""
    main_fn = importlib.import_module(module).main
    code = main_fn(list(args.rest))
    return int(code or 0)


def register(sub: Any) -> None:
    """Add the pass-through subcommands to ``sub``."""
    for name, (module, text) in PASSTHROUGH.items():
        p = sub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda a, m=module: cmd_passthrough(m, a))
