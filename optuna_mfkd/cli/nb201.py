"""``optuna-mfkd nb201``: look up a NAS-Bench-201 cell by official index or arch string."""

from __future__ import annotations

import argparse
import json
from typing import Any

from optuna_mfkd.cli.common import TABLE_HELP, CLIError, existing_path
from optuna_mfkd.cli.config import DATASET_CHOICES
from optuna_mfkd.cli.inputs import load_table
from optuna_mfkd.datasets import DATASETS


def parse_cell(text: str) -> Any:
    """The :class:`~optuna_mfkd.nasbench201.space.Architecture` of an index or arch string."""
    from optuna_mfkd.nasbench201.space import Architecture

    try:
        return Architecture.from_index(int(text)) if text.strip().lstrip("-").isdigit() else Architecture.from_str(text)
    except ValueError as exc:
        raise CLIError(f"cell {text!r}: {exc}") from None


def cmd_nb201(args: argparse.Namespace) -> int:
    """Print a cell's index, arch string and (with a table) its accuracies."""
    arch = parse_cell(args.cell)
    info: dict[str, Any] = {"index": arch.index, "arch_str": arch.arch_str, "ops": list(arch.ops),
                            "canonical": arch.canonical_form()}
    table = load_table(args)
    for ds in [args.dataset] if args.dataset else list(DATASETS):
        info[ds] = {
            "val_acc_12ep": table.val_acc(ds, arch.index, 12),
            "val_acc_200ep": table.val_acc(ds, arch.index, 200),
            "test_acc_200ep": table.test_acc(ds, arch.index, 200),
            "train_seconds_per_epoch": table.seconds_per_epoch(ds, arch.index),
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"index      {info['index']}")
    print(f"arch_str   {info['arch_str']}")
    print(f"canonical  {info['canonical']}")
    for key, row in info.items():
        if isinstance(row, dict):
            print(
                f"{key:10s} val@12 {row['val_acc_12ep']:6.2f}  val@200 {row['val_acc_200ep']:6.2f}"
                f"  test@200 {row['test_acc_200ep']:6.2f}  s/epoch {row['train_seconds_per_epoch']:.2f}"
            )
    return 0


def register(sub: Any) -> None:
    """Add the ``nb201`` subcommand to ``sub``."""
    p = sub.add_parser("nb201", help="look up a NAS-Bench-201 cell",
                       description="Print a NAS-Bench-201 cell given by official index or arch string.")
    p.add_argument("cell", help="official index (0..15624) or arch string |op~0|+|op~0|op~1|+|...|")
    p.add_argument("--table", type=existing_path, help=TABLE_HELP)
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="only this dataset")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_nb201)
