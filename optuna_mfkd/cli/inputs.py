"""The command's inputs on disk: the NB201 table, the dataset, the teacher, the torch device.

Each comes from its option, else from an environment variable; a missing, empty or unreadable
input is a one-line :class:`~optuna_mfkd.cli.common.CLIError` naming the option and the
variable that stood in for it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from optuna_mfkd.cli.common import CLIError, one_line, source
from optuna_mfkd.cli.config import SearchConfig

TEACHER_ENV = "MFKD_TEACHERS"


def resolve_path(value: Path | None, env: str, what: str, flag: str, must_exist: bool = True) -> Path:
    """``value`` (an option), else the path in environment variable ``env``.

    An unset variable, an empty one (which would mean the current folder) and, with
    ``must_exist``, a path that does not exist are errors naming the option and the variable.
    """
    if value is None:
        text = os.environ.get(env)
        if text is None:
            raise CLIError(f"{flag} is required ({what}; or set {env})")
        if not text.strip():
            raise CLIError(f"{flag}: {env} is set but empty ({what}); set it to a path or pass {flag}")
        value = Path(text).expanduser()
        if must_exist and not value.exists():
            raise CLIError(f"{flag}: {env}={text} does not exist ({what})")
    elif must_exist and not value.exists():
        raise CLIError(f"{flag} {value}: no such file or folder ({what})")
    return value


def load_table(args: argparse.Namespace) -> Any:
    """The NB201 table of ``--table``, else ``$NB201_TABLE``, else the one bundled with the package."""
    from optuna_mfkd.nasbench201.table import TABLE_ENV, table_path_from_env
    from optuna_mfkd.nasbench201.table import load_table as load

    if args.table is not None:
        where, path = "--table", args.table
    else:
        try:
            path = table_path_from_env()
        except (FileNotFoundError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        where = TABLE_ENV if os.environ.get(TABLE_ENV) is not None else "bundled NB201 table"
    try:
        return load(path)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise CLIError(f"{where}: {exc}") from None


def data_env(dataset: str) -> str:
    """The environment variable holding the data root of ``dataset`` (as ``training.data.load_split``)."""
    from optuna_mfkd.training.data import ROOT_ENV

    return ROOT_ENV[dataset]


def data_root(config: SearchConfig, args: argparse.Namespace) -> Path:
    """The dataset root of a live search; with ``--download`` torchvision fetches CIFAR there."""
    from optuna_mfkd.training.data import cache_dir, load_split

    env = data_env(config.dataset)
    download = getattr(args, "download", False)
    if download and config.dataset == "imagenet16":
        raise CLIError("--download fetches CIFAR-10/100 only; ImageNet16-120 needs NB201's pickles "
                       f"(--data-root or {env})")
    if download and args.data_root is None and os.environ.get(env) is None:
        root, flag = cache_dir() / "datasets", "the default --data-root"
    else:
        root = resolve_path(args.data_root, env, f"{config.dataset} data", "--data-root",
                            must_exist=not download)
        flag = source("--data-root", env, args.data_root)
    if download:
        print(f"fetching {config.dataset} into {root} (torchvision; skipped where present)", flush=True)
        for split in ("train", "test"):
            try:
                load_split(config.dataset, root, split, download=True)
            except (OSError, RuntimeError, ValueError) as exc:  # no network, bad checksum, ...
                raise CLIError(f"--download: cannot fetch {config.dataset} into {flag} {root}: "
                               f"{one_line(exc)}") from None
    return root


def teacher_path(config: SearchConfig, args: argparse.Namespace) -> Path:
    """The teacher checkpoint of ``--teacher`` (a file, or a folder holding one per dataset),
    else of ``$MFKD_TEACHERS``."""
    from optuna_mfkd.distill.teacher import default_teacher_path

    teacher = resolve_path(args.teacher, TEACHER_ENV, "a teacher .pth or folder", "--teacher")
    if teacher.is_dir():
        teacher = default_teacher_path(config.dataset, teacher)
    if not teacher.is_file():
        where = source("--teacher", TEACHER_ENV, args.teacher)
        raise CLIError(f"{where}: no checkpoint {teacher} for --dataset {config.dataset}")
    return teacher


def check_device(device: str | None) -> None:
    """A ``--device`` torch knows and this machine has."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--device {device!r}: {one_line(exc)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available on this machine (torch "
                       f"{torch.__version__}); use --device cpu or install a CUDA build of torch")
