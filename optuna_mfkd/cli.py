"""The ``optuna-mfkd`` command.

Subcommands:

- ``search``: create (or resume) an MF-KD study and run it in this process.
- ``worker``: join a study made by ``search`` in the same storage (one per process/machine).
- ``proxy``: serve the study database to many workers through Optuna's gRPC storage proxy.
- ``benchmark`` / ``report``: the benchmark harness and its report (arguments pass through).
- ``teacher``: inspect, train or fine-tune a distillation teacher.
- ``nb201``: look up a NAS-Bench-201 cell by index or arch string.

Every bad argument ends the command with one line ``optuna-mfkd <cmd>: error: ...`` that
names it, and exit code 2. Ctrl-C (or SIGTERM) fails the running trial, queues it again and
exits with code 130; running the same ``search`` (or ``worker``) again resumes the study.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from optuna_mfkd import defaults
from optuna_mfkd.datasets import DATASETS

PROG = "optuna-mfkd"
DEFAULT_STORAGE = "sqlite:///optuna-mfkd.db"
#: Study user attribute holding the search configuration (JSON object).
CONFIG_ATTR = "mfkd:config"
#: Trial user attribute naming the process that ran the trial (``host:pid``).
WORKER_ATTR = "worker"
MODES = ("tabular", "hybrid", "train")
DATASET_CHOICES = DATASETS
KD_LOSSES = ("nst", "kd", "ce")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A bad argument or input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- argument types
def _number(kind: type, check: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
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


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonneg_int = _number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
nonneg_float = _number(float, lambda v: v >= 0, "a non-negative number")


class _Renamed(argparse.Action):
    """An option's old name: stores the value under the new one and prints a deprecation line."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _nonempty_path(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; give a file or folder")
    return Path(text).expanduser()


def _existing_path(text: str) -> Path:
    path = _nonempty_path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return path


# --------------------------------------------------------------------------- configuration
@dataclass
class SearchConfig:
    """What defines a study; stored in the study (``mfkd:config``) so workers can join it.

    ``protocol="nb201"`` (tabular mode only) is NAS-Bench-201's own search protocol: one
    level, the 12-epoch validation accuracy, searched by GP-UCB after ``n2`` random trials.
    ``e1``/``e2`` are the epochs of the low and high fidelity; ``n1``/``n2`` the random
    warm-up evaluations at each; ``acquisition`` the sampler's acquisition (``logei`` or the
    paper's ``ucb``) and ``beta`` its UCB weight; ``n_candidates`` the random cells scored per
    step (``None``: every cell, one per isomorphism class); ``train_images`` the training
    images of a live low fidelity (``None``: all) and ``eval_images`` its validation images
    (``None``: all); ``time_ratio`` the
    training-time ratio of the low-fidelity loss to cross-entropy charged in hybrid mode
    (``None``: the measured :data:`optuna_mfkd.training.objectives.TIME_RATIOS`);
    ``budget`` the total cost (seconds, simulated in tabular mode).
    """

    mode: str = "tabular"
    protocol: str = "mf"
    dataset: str = "cifar10"
    e1: int = 12
    e2: int = 200
    n1: int = defaults.CLI_N_WARMUP_LOW
    n2: int = defaults.CLI_N_WARMUP_HIGH
    beta: float = defaults.UCB_BETA
    n_candidates: int | None = None
    acquisition: str = "logei"
    kd_loss: str = "nst"
    train_images: int | None = None
    eval_images: int | None = None
    time_ratio: float | None = None
    budget: float = defaults.CLI_BUDGET

    # Options that may change when a study is resumed (the budget may grow).
    RESUMABLE = ("budget",)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _mode_defaults(mode: str, protocol: str) -> dict[str, Any]:
    """Defaults that depend on the mode (live low fidelity: the paper's 1 epoch)."""
    if protocol == "nb201":  # NB201's protocol: 12-epoch accuracy, 12,000 simulated seconds
        return {"e1": 12, "e2": 12, "n1": 0, "budget": defaults.NB201_BUDGET}
    if mode == "tabular":
        return {"e1": 12, "e2": 200}
    return {"e1": defaults.LOW_EPOCHS, "e2": defaults.HIGH_EPOCHS}


def resolve_config(args: argparse.Namespace, stored: dict[str, Any] | None) -> SearchConfig:
    """Merge command-line options with the configuration a study was created with.

    An option given explicitly that differs from the stored value is an error (the study
    would silently mix two searches); options not given take the stored value.
    """
    given = {n: getattr(args, n, None) for n in SearchConfig.names()}
    if stored is None:
        mode = given["mode"] or SearchConfig.mode
        protocol = given["protocol"] or SearchConfig.protocol
        values = {**asdict(SearchConfig()), **_mode_defaults(mode, protocol)}
        values.update({k: v for k, v in given.items() if v is not None})
        return SearchConfig(**values)
    # Studies stored before an option existed ran with its earlier behaviour.
    legacy = {"acquisition": "ucb"}
    values = {n: stored.get(n, legacy.get(n, getattr(SearchConfig, n))) for n in SearchConfig.names()}
    for name, value in given.items():
        if value is None:
            continue
        if name not in SearchConfig.RESUMABLE and value != values[name]:
            flag = "--" + name.replace("_", "-")
            raise CLIError(
                f"{flag} {value} differs from the value {values[name]!r} the study was created "
                f"with; drop {flag} to resume it, or pick a new --study-name"
            )
        values[name] = value
    return SearchConfig(**values)


# --------------------------------------------------------------------------- storage & study
def _masked(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    try:
        import sqlalchemy

        return sqlalchemy.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


GRPC_SCHEME = "grpc://"
#: Seconds to wait for a gRPC storage proxy to answer.
GRPC_TIMEOUT_S = 5.0


def open_grpc_storage(url: str) -> Any:
    """A client of Optuna's gRPC storage proxy at ``grpc://HOST:PORT`` (``optuna-mfkd proxy``).

    Trials through a proxy send no heartbeat (Optuna's ``GrpcStorageProxy`` has none): a
    worker killed mid-trial leaves its trial RUNNING; Ctrl-C and SIGTERM still requeue it.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise CLIError(f"--storage {url!r}: a gRPC proxy URL is grpc://HOST:PORT (e.g. grpc://127.0.0.1:13000)")
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError as exc:
        raise CLIError(f"--storage {url}: the gRPC storage proxy needs grpcio and protobuf "
                       f"(pip install 'optuna-mfkd[grpc]'): {_one_line(exc)}") from None
    storage = GrpcStorageProxy(host=parts.hostname, port=port)
    try:
        storage.wait_server_ready(timeout=GRPC_TIMEOUT_S)
    except ConnectionError:
        storage.close()
        raise CLIError(f"--storage {url}: no gRPC storage proxy answers within {GRPC_TIMEOUT_S:g} s "
                       f"(start one with '{PROG} proxy --storage DATABASE_URL --port {port}')") from None
    return storage


def open_storage(url: str, heartbeat: int | None, grace: int | None) -> Any:
    """Open an Optuna RDB storage with heartbeats and retry of stale trials.

    A process that dies mid-trial stops its heartbeat; after ``grace`` seconds another
    process fails that trial and queues it again (``RetryHeartbeatStaleTrialCallback``).
    ``grpc://HOST:PORT`` connects to a gRPC storage proxy instead (:func:`open_grpc_storage`).
    """
    import optuna
    import sqlalchemy
    import sqlalchemy.exc

    from optuna_mfkd.storage import rdb_storage

    if "://" not in url:
        raise CLIError(
            f"--storage {url!r} is not a database URL (e.g. sqlite:///study.db or "
            "postgresql+psycopg://user:password@host:5432/db)"
        )
    if url.startswith(GRPC_SCHEME):
        return open_grpc_storage(url)
    if url.startswith("sqlite"):
        try:
            database = sqlalchemy.make_url(url).database
        except sqlalchemy.exc.ArgumentError:
            database = None
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            raise CLIError(f"--storage {url!r} names no database file (an in-memory database would lose "
                           "the study); e.g. sqlite:///optuna-mfkd.db")
    try:
        return rdb_storage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=(
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat else None
            ),
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as exc:
        raise CLIError(f"--storage {_masked(url)}: cannot open the database: {_storage_reason(exc, url)}") from None


def _storage_reason(exc: BaseException, url: str) -> str:
    """The first line of a database error, with a hint for SQLite files that cannot be written."""
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if url.startswith("sqlite") and ("unable to open database file" in reason or "readonly database" in reason):
        reason += " (the SQLite file's folder must exist and be writable)"
    return reason


def _study_id(storage: Any, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def _check_direction(storage: Any, study_id: int, name: str) -> None:
    import optuna

    directions = storage.get_study_directions(study_id)
    if directions != [optuna.study.StudyDirection.MAXIMIZE]:
        got = ", ".join(d.name.lower() for d in directions)
        raise CLIError(
            f"--study-name {name!r}: the stored study has direction(s) [{got}], MF-KD maximises "
            "accuracy; pick a new --study-name"
        )


#: Configuration keys of studies made by older versions -> their current names.
_RENAMED_CONFIG_KEYS = {"kd_overhead": "time_ratio"}


def _stored_config(storage: Any, study_id: int) -> dict[str, Any] | None:
    value = storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)
    if not isinstance(value, dict):
        return None
    config = dict(value)
    for old, new in _RENAMED_CONFIG_KEYS.items():
        if old in config:
            config.setdefault(new, config.pop(old))
    return config


# --------------------------------------------------------------------------- objectives
def _resolve_path(value: Path | None, env: str, what: str, flag: str, must_exist: bool = True) -> Path:
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


def _load_table(args: argparse.Namespace) -> Any:
    """The NB201 table of ``--table``, else ``$NB201_TABLE``, else the one bundled with the package."""
    from optuna_mfkd.nasbench201.table import TABLE_ENV, load_table, table_path_from_env

    if args.table is not None:
        source, path = "--table", args.table
    else:
        try:
            path = table_path_from_env()
        except (FileNotFoundError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        source = TABLE_ENV if os.environ.get(TABLE_ENV) is not None else "bundled NB201 table"
    try:
        return load_table(path)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise CLIError(f"{source}: {exc}") from None


#: Environment variable holding the data root of each dataset (as ``training.data.load_split``).
DATA_ENV = {"cifar10": "MFKD_CIFAR10", "cifar100": "MFKD_CIFAR100", "imagenet16": "MFKD_IMAGENET16"}


def _data_root(config: SearchConfig, args: argparse.Namespace) -> Path:
    """The dataset root of a live search; with ``--download`` torchvision fetches CIFAR there."""
    from optuna_mfkd.training.data import cache_dir, load_split

    env = DATA_ENV[config.dataset]
    download = getattr(args, "download", False)
    if download and config.dataset == "imagenet16":
        raise CLIError("--download fetches CIFAR-10/100 only; ImageNet16-120 needs NB201's pickles "
                       f"(--data-root or {env})")
    if download and args.data_root is None and os.environ.get(env) is None:
        root, flag = cache_dir() / "datasets", "the default --data-root"
    else:
        root = _resolve_path(args.data_root, env, f"{config.dataset} data", "--data-root",
                             must_exist=not download)
        flag = _source("--data-root", env, args.data_root)
    if download:
        print(f"fetching {config.dataset} into {root} (torchvision; skipped where present)", flush=True)
        for split in ("train", "test"):
            try:
                load_split(config.dataset, root, split, download=True)
            except (OSError, RuntimeError, ValueError) as exc:  # no network, bad checksum, ...
                raise CLIError(f"--download: cannot fetch {config.dataset} into {flag} {root}: "
                               f"{_one_line(exc)}") from None
    return root


def _check_device(device: str | None) -> None:
    """A ``--device`` torch knows and this machine has."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--device {device!r}: {_one_line(exc)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available on this machine (torch "
                       f"{torch.__version__}); use --device cpu or install a CUDA build of torch")


def _preflight(objective: Any, config: SearchConfig, data: Path, teacher: Path | None,
               args: argparse.Namespace) -> None:
    """Read the data and the teacher of a live objective now, so a bad file is an error before
    anything is stored (otherwise the first trial would fail on it)."""
    try:
        objective.evaluator.n_train  # noqa: B018 (loads and caches the training split)
    except (FileNotFoundError, ValueError, OSError) as exc:
        source = _source("--data-root", DATA_ENV[config.dataset], args.data_root)
        raise CLIError(f"{source} {data}: {_one_line(exc)}") from None
    if teacher is not None:
        try:
            objective.evaluator.teacher()
        except (FileNotFoundError, ValueError, OSError) as exc:
            source = _source("--teacher", "MFKD_TEACHERS", args.teacher)
            raise CLIError(f"{source} {teacher}: {_one_line(exc)}") from None


def _source(flag: str, env: str, given: Any) -> str:
    """How a message names an input: the option, or the variable that stood in for it."""
    return flag if given is not None else f"{env} (default of {flag})"


def _one_line(exc: BaseException | str) -> str:
    """An error message on one line (some libraries' messages span several)."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text


def level_settings(config: SearchConfig) -> dict[str, dict[str, Any]]:
    """Fidelity name -> settings (recorded on each trial), cheapest level first.

    Tabular levels are named after their epochs (``12ep``, ``200ep``; NB201 trained them with
    cross-entropy); a live low fidelity also names its training loss (``1ep-nst``).
    """
    if config.protocol == "nb201":
        return {"12ep": {"epochs": 12, "kd_loss": "ce"}}
    if config.mode == "tabular":  # NB201's schedules, trained with cross-entropy
        return {f"{e}ep": {"epochs": e, "kd_loss": "ce"} for e in (config.e1, config.e2)}
    low: dict[str, Any] = {"epochs": config.e1, "kd_loss": config.kd_loss}
    if config.train_images:
        low["train_images"] = config.train_images
    if config.eval_images:
        low["eval_images"] = config.eval_images
    return {f"{config.e1}ep-{config.kd_loss}": low, f"{config.e2}ep": {"epochs": config.e2, "kd_loss": "ce"}}


def build_sampler(config: SearchConfig, seed: int | None) -> Any:
    """The MFKDSampler of a configuration (levels cheapest first; isomorphic cells are one)."""
    from optuna_mfkd import MFKDSampler
    from optuna_mfkd.nasbench201.space import cell_key

    levels = level_settings(config)
    names = list(levels)
    warmup = {names[-1]: config.n2} if len(names) == 1 else {names[0]: config.n1, names[-1]: config.n2}
    return MFKDSampler(
        fidelities=levels,
        n_warmup=warmup,
        n_candidates=config.n_candidates,
        beta=config.beta,
        acquisition=config.acquisition,
        seed=seed,
        point_key=cell_key,
    )


def build_objective(config: SearchConfig, args: argparse.Namespace) -> Callable[[Any], float]:
    """The objective of a configuration: table lookups, live training, or both."""
    table = _load_table(args)
    if config.mode == "tabular":
        from optuna_mfkd.nasbench201.tabular import TabularObjective

        levels = {name: int(lv["epochs"]) for name, lv in level_settings(config).items()}
        return TabularObjective(table, config.dataset, levels=levels)
    _check_device(args.device)
    data = _data_root(config, args)
    teacher: Path | None = None
    if config.kd_loss != "ce":
        from optuna_mfkd.distill.teacher import default_teacher_path

        teacher = _resolve_path(args.teacher, "MFKD_TEACHERS", "a teacher .pth or folder", "--teacher")
        if teacher.is_dir():
            teacher = default_teacher_path(config.dataset, teacher)
        if not teacher.is_file():
            source = _source("--teacher", "MFKD_TEACHERS", args.teacher)
            raise CLIError(f"{source}: no checkpoint {teacher} for --dataset {config.dataset}")
    from optuna_mfkd.training.objectives import (
        CellEvaluator,
        HybridNB201Objective,
        NB201TrainingObjective,
    )

    levels = level_settings(config)
    low_name, high_name = levels
    objective: Any
    if config.mode == "hybrid":
        evaluator = CellEvaluator(config.dataset, data, teacher=teacher, device=args.device)
        objective = HybridNB201Objective(table, evaluator, levels[low_name], time_ratio=config.time_ratio,
                                         low_name=low_name, high_name=high_name, dataset=config.dataset)
    else:
        objective = NB201TrainingObjective(config.dataset, data, fidelities=levels, teacher=teacher,
                                           device=args.device)
    _preflight(objective, config, data, teacher, args)
    # Only now, with data and teacher read, the evaluation cache gets its table in the study's
    # database (a gRPC proxy offers no database to keep it in).
    if not args.storage.startswith(GRPC_SCHEME):
        from optuna_mfkd.training.cache import EvaluationCache

        objective.evaluator.cache = EvaluationCache(args.storage)
    return objective


class _Worker:
    """Wraps an objective: records which process ran the trial, optionally slows it down.

    ``time_scale > 0`` sleeps ``time_scale * cost`` seconds after each evaluation, so a
    tabular search runs at a watchable pace (and a worker can be stopped mid-trial).
    """

    def __init__(self, objective: Callable[[Any], float], time_scale: float = 0.0) -> None:
        self.objective = objective
        self.time_scale = time_scale
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.current: int | None = None  # trial id of the evaluation in progress

    def __call__(self, trial: Any) -> float:
        from optuna_mfkd.fidelity import COST_ATTR

        self.current = trial._trial_id
        trial.set_user_attr(WORKER_ATTR, self.name)
        value = self.objective(trial)
        if self.time_scale > 0:
            cost = float(trial.user_attrs.get(COST_ATTR, 0.0) or 0.0)
            time.sleep(self.time_scale * cost)
        return value


class _Progress:
    """Prints one line per finished trial: number, level, value, cost spent, best so far."""

    def __init__(self, budget: float | None, high: str, out: Any = sys.stdout) -> None:
        self.budget = budget
        self.high = high
        self.out = out

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna_mfkd.fidelity import best_high_fidelity_trial, fidelity_of, total_cost

        level = fidelity_of(trial, default="-")
        value = "-" if trial.value is None else f"{trial.value:.2f}"
        spent = total_cost(study)
        budget = f"/{self.budget:,.0f}" if self.budget else ""
        try:
            best = f"{best_high_fidelity_trial(study, self.high).value:.2f}"
        except ValueError:
            best = "-"
        print(
            f"trial {trial.number:4d}  {level:5s} {trial.state.name.lower():8s} value {value:>6s}"
            f"  cost {spent:,.0f}{budget}  best(high) {best}",
            file=self.out,
            flush=True,
        )


# --------------------------------------------------------------------------- search / worker
def _optimize(study: Any, worker: _Worker, args: argparse.Namespace, config: SearchConfig) -> None:
    from optuna_mfkd.fidelity import MaxCostCallback

    callbacks: list[Any] = [MaxCostCallback(config.budget)]
    if not args.quiet:
        callbacks.append(_Progress(config.budget, list(level_settings(config))[-1]))
    study.optimize(
        worker,
        n_trials=args.n_trials,
        callbacks=callbacks,
        catch=(FloatingPointError, ArithmeticError),
        gc_after_trial=False,
    )


def _no_interrupt_traceback(record: Any) -> bool:
    """Logging filter: a trial stopped by Ctrl-C is logged without its traceback."""
    if record.exc_info and record.exc_info[0] is not None and issubclass(record.exc_info[0], KeyboardInterrupt):
        record.exc_info = None
    return True


def _sigterm_interrupts() -> None:
    """Treat SIGTERM (a scheduler stopping the job) like Ctrl-C: fail, requeue, exit 130."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _requeue_interrupted(study: Any, trial_id: int | None) -> None:
    """Fail the trial an interrupt stopped (if still RUNNING) and queue it again."""
    import optuna
    from optuna.trial import TrialState

    if trial_id is None:
        return
    trial = study._storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING:
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
        trial = study._storage.get_trial(trial_id)
    if trial.state == TrialState.FAIL:
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


def summary_lines(study: Any, config: SearchConfig, table: Any | None) -> list[str]:
    """The end-of-search summary: trials per level, cost, best high-fidelity cell."""
    from collections import Counter

    from optuna.trial import TrialState

    from optuna_mfkd.fidelity import best_high_fidelity_trial, fidelity_of, total_cost
    from optuna_mfkd.nasbench201.space import architecture_from_params

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    per_level = Counter(fidelity_of(t, default="-") for t in done)
    levels = ", ".join(f"{n} at {name}" for name, n in sorted(per_level.items()))
    lines = [f"study {study.study_name!r}: {len(study.trials)} trials ({levels or 'none complete'}), "
             f"cost {total_cost(study):,.0f} s"]
    try:
        best = best_high_fidelity_trial(study, list(level_settings(config))[-1])
    except ValueError:
        return [*lines, "no high-fidelity trial has finished yet"]
    arch = architecture_from_params(best.params)
    lines += [f"best high-fidelity cell: {arch.arch_str} (NB201 index {arch.index}, trial {best.number})",
              f"  {config.e2}-epoch validation accuracy: {best.value:.2f}%"]
    if table is not None:
        lines.append(f"  200-epoch test accuracy (NB201 table): {table.test_acc(config.dataset, arch.index):.2f}%")
    return lines


def summary_figure(study: Any, config: SearchConfig, path: Path) -> Path:
    """Two panels: the best high-fidelity value against the cost spent (anytime curve), and
    every trial's value by trial number, coloured by fidelity (fidelity scatter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    from optuna_mfkd.fidelity import fidelity_of, is_top_level, trial_cost

    high = list(level_settings(config))[-1]
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    spent, best, curve = 0.0, -math.inf, []
    for t in trials:
        spent += trial_cost(t)
        if t.state == TrialState.COMPLETE and is_top_level(t, high) and t.value > best:
            best = t.value
        if best > -math.inf:
            curve.append((spent, best))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if curve:
        left.step(*zip(*curve, strict=True), where="post")
    left.set(xlabel="cost spent (s)", ylabel=f"best {high} accuracy (%)", title="anytime curve")
    for name in level_settings(config):
        pts = [(t.number, t.value) for t in trials
               if t.state == TrialState.COMPLETE and fidelity_of(t, default=high) == name]
        if pts:
            right.scatter(*zip(*pts, strict=True), s=12, label=name)
    right.set(xlabel="trial", ylabel="accuracy (%)", title="trials by fidelity")
    right.legend(fontsize=8)
    fig.suptitle(f"study {study.study_name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _upload_figure(study: Any, config: SearchConfig, artifact_dir: Path) -> None:
    """Store the summary figure as a study artifact (``optuna-dashboard --artifact-dir``)."""
    import tempfile

    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifact_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        png = summary_figure(study, config, Path(tmp) / "mfkd-summary.png")
        upload_artifact(artifact_store=FileSystemArtifactStore(str(artifact_dir)), file_path=str(png),
                        study_or_trial=study, mimetype="image/png")


def _summary(study: Any, config: SearchConfig, args: argparse.Namespace, url: str) -> None:
    """Print the summary and store it as the study's note (shown by optuna-dashboard)."""
    table = None
    if config.mode in ("tabular", "hybrid"):
        table = _load_table(args)
    lines = summary_lines(study, config, table)
    print("\n".join(lines))
    artifacts = getattr(args, "artifact_dir", None)
    if artifacts is not None:
        _upload_figure(study, config, artifacts)
        print(f"open the dashboard: optuna-dashboard {url} --artifact-dir {artifacts}")
    else:
        print(f"open the dashboard: optuna-dashboard {url}")
    try:
        from optuna_dashboard import save_note

        settings = ", ".join(f"{k}={v}" for k, v in asdict(config).items())
        save_note(study, "## MF-KD search\n\n" + "\n".join(f"    {line}" for line in lines)
                  + f"\n\nSettings: {settings}\n")
    except ImportError:  # the dashboard is optional at run time
        pass


def cmd_search(args: argparse.Namespace, join: bool = False) -> int:
    """Create/resume (``search``) or join (``worker``) a study and run trials in this process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import logging

    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_no_interrupt_traceback)
    url = args.storage
    storage = open_storage(url, args.heartbeat, args.grace_period)
    study_id = _study_id(storage, args.study_name)
    stored = None
    if study_id is not None:
        _check_direction(storage, study_id, args.study_name)
        stored = _stored_config(storage, study_id)
        if stored is None:
            raise CLIError(
                f"--study-name {args.study_name!r}: the stored study was not made by "
                f"{PROG} search (it has no {CONFIG_ATTR} attribute); pick a new --study-name"
            )
    elif join:
        raise CLIError(
            f"--study-name {args.study_name!r}: no such study in {_masked(url)}; "
            f"create it with '{PROG} search --storage URL --study-name NAME'"
        )
    config = resolve_config(args, stored)
    if config.protocol == "nb201":
        if config.mode != "tabular":
            raise CLIError(f"--protocol nb201 is a tabular protocol; --mode {config.mode} trains cells")
        if (config.e1, config.e2) != (12, 12) or config.n1:
            raise CLIError("--protocol nb201 searches the 12-epoch accuracy alone: drop --e1/--e2/--n1")
    elif config.mode == "tabular":
        for flag, epochs in (("--e1", config.e1), ("--e2", config.e2)):
            if epochs not in (12, 200):
                raise CLIError(f"{flag} {epochs}: the NB201 table holds 12 and 200 epochs only")
    if config.time_ratio is not None and config.mode != "hybrid":
        raise CLIError(f"--time-ratio {config.time_ratio}: only hybrid mode charges a time ratio "
                       f"(this study's mode is {config.mode})")
    if config.mode == "hybrid" and config.e2 != 12:
        raise CLIError(f"--e2 {config.e2}: in hybrid mode the high fidelity is the table's 12 epochs")
    if config.protocol != "nb201" and config.e1 >= config.e2:
        raise CLIError(f"--e1 {config.e1} must be smaller than --e2 {config.e2}")
    objective = build_objective(config, args)  # checks data paths before anything is stored
    sampler = build_sampler(config, args.seed)
    if study_id is None:
        study = optuna.create_study(
            storage=storage, study_name=args.study_name, direction="maximize", sampler=sampler
        )
        study.set_user_attr(CONFIG_ATTR, asdict(config))
        print(f"created study {args.study_name!r} in {_masked(url)}")
    else:
        study = optuna.load_study(study_name=args.study_name, storage=storage, sampler=sampler)
        if config.budget != (stored or {}).get("budget") and not join:
            study.set_user_attr(CONFIG_ATTR, asdict(config))
        print(f"{'joined' if join else 'resumed'} study {args.study_name!r} ({len(study.trials)} trials)")
    worker = _Worker(objective, args.time_scale)
    _sigterm_interrupts()
    from optuna_mfkd.fidelity import total_cost

    if total_cost(study) >= config.budget:
        print(f"the budget of {config.budget:,.0f} s is spent; pass a larger --budget to go on")
        _summary(study, config, args, _masked(url))
        return 0
    try:
        _optimize(study, worker, args, config)
    except KeyboardInterrupt:
        _requeue_interrupted(study, worker.current)
        print(
            f"\ninterrupted: study {args.study_name!r} is saved; resume with "
            f"'{PROG} {'worker' if join else 'search'} --storage {_masked(url)} "
            f"--study-name {args.study_name}'",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _summary(study, config, args, _masked(url))
    return 0


# --------------------------------------------------------------------------- nb201
def _parse_cell(text: str) -> Any:
    from optuna_mfkd.nasbench201.space import Architecture

    try:
        return Architecture.from_index(int(text)) if text.strip().lstrip("-").isdigit() else Architecture.from_str(text)
    except ValueError as exc:
        raise CLIError(f"cell {text!r}: {exc}") from None


def cmd_nb201(args: argparse.Namespace) -> int:
    """Print a cell's index, arch string and (with a table) its accuracies."""
    arch = _parse_cell(args.cell)
    info: dict[str, Any] = {"index": arch.index, "arch_str": arch.arch_str, "ops": list(arch.ops),
                            "canonical": arch.canonical_form()}
    from optuna_mfkd.datasets import DATASETS

    table = _load_table(args)
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


# --------------------------------------------------------------------------- proxy
def cmd_proxy(args: argparse.Namespace) -> int:
    """Serve a study database to many workers through Optuna's gRPC storage proxy.

    One process holds the database connection and caches the studies; workers connect with
    ``--storage grpc://HOST:PORT``. Runs until stopped (Ctrl-C).
    """
    import optuna

    if args.storage.startswith(GRPC_SCHEME):
        raise CLIError(f"--storage {args.storage}: the proxy serves a database URL, not another proxy")
    try:
        from optuna.storages import run_grpc_proxy_server
    except ImportError as exc:
        raise CLIError(f"the gRPC storage proxy needs grpcio and protobuf (pip install 'optuna-mfkd[grpc]'): "
                       f"{_one_line(exc)}") from None
    storage = optuna.storages.get_storage(open_storage(args.storage, None, None))
    print(f"serving {_masked(args.storage)} on grpc://{args.host}:{args.port} "
          f"(workers: --storage grpc://{args.host}:{args.port})", flush=True)
    _sigterm_interrupts()  # a scheduler's SIGTERM stops it like Ctrl-C (exit 130)
    try:
        run_grpc_proxy_server(storage, host=args.host, port=args.port)
    except RuntimeError as exc:  # grpc cannot bind the address
        raise CLIError(f"--host {args.host} --port {args.port}: {_one_line(exc)}") from None
    return 0


# --------------------------------------------------------------------------- pass-through
def cmd_passthrough(module: str, args: argparse.Namespace) -> int:
    """Run ``<module>.main(argv)`` with the remaining arguments."""
    import importlib

    main_fn = importlib.import_module(module).main
    code = main_fn(list(args.rest))
    return int(code or 0)


# --------------------------------------------------------------------------- parser
TABLE_HELP = ("NB201 table: the compact CSV (plain or .csv.gz) or the official file "
              "(default: $NB201_TABLE, else the table bundled with the package)")


def _add_study_options(p: argparse.ArgumentParser, join: bool) -> None:
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"Optuna storage URL, or grpc://HOST:PORT of an '{PROG} proxy' "
                        f"(default: {DEFAULT_STORAGE} in this folder)")
    p.add_argument("--study-name", default=None if join else "mfkd", required=join,
                   help="study to join" if join else "study name; an existing study is resumed (default: mfkd)")
    p.add_argument("--table", type=_existing_path, help=TABLE_HELP)
    p.add_argument("--data-root", type=_nonempty_path,
                   help="dataset for live training: CIFAR-10 zip, ImageFolder root or torchvision folder "
                        "(default: $MFKD_CIFAR10, $MFKD_CIFAR100 or $MFKD_IMAGENET16)")
    p.add_argument("--download", action="store_true",
                   help="live training: let torchvision download CIFAR-10/100 into --data-root "
                        "(default there: ~/.cache/optuna-mfkd/datasets); skipped where present")
    p.add_argument("--teacher", type=_existing_path,
                   help="teacher checkpoint .pth or folder of them (default: $MFKD_TEACHERS)")
    p.add_argument("--device", help="torch device for live training (default: cuda when available, else cpu)")
    p.add_argument("--n-trials", type=positive_int, help="stop after this many trials in this process")
    p.add_argument("--budget", type=positive_float,
                   help="total cost of the study in seconds (simulated in tabular mode)")
    p.add_argument("--seed", type=nonneg_int, help="sampler seed (default: random)")
    p.add_argument("--heartbeat", type=positive_int, default=30,
                   help="seconds between heartbeats of a running trial (default: 30)")
    p.add_argument("--grace-period", type=positive_int,
                   help="seconds without heartbeat before a trial is failed and retried "
                        "(default: twice --heartbeat)")
    p.add_argument("--time-scale", type=nonneg_float, default=0.0,
                   help="sleep this many seconds per second of evaluation cost (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no line per trial")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="MF-KD: multi-fidelity NAS with knowledge distillation, on Optuna.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    p = sub.add_parser("search", help="run (or resume) an MF-KD search",
                       description="Create an MF-KD study (or resume it) and run it in this process.")
    p.add_argument("--mode", choices=MODES, help="tabular: table lookups; hybrid: live low fidelity + "
                   "table high fidelity; train: live training at both (default: tabular)")
    p.add_argument("--protocol", choices=("mf", "nb201"),
                   help="mf: two levels (default); nb201: NAS-Bench-201's protocol, one level "
                        "(12-epoch validation accuracy, budget 12,000 s), tabular mode only")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="default: cifar10")
    p.add_argument("--e1", type=positive_int, help="low-fidelity epochs (default: 12 tabular, 1 otherwise)")
    p.add_argument("--e2", type=positive_int, help="high-fidelity epochs (default: 200 tabular, 12 otherwise)")
    p.add_argument("--n1", type=nonneg_int, help=f"random warm-up trials at low fidelity (default: {defaults.CLI_N_WARMUP_LOW})")
    p.add_argument("--n2", type=nonneg_int, help=f"random warm-up trials at high fidelity (default: {defaults.CLI_N_WARMUP_HIGH})")
    p.add_argument("--beta", type=nonneg_float, help=f"UCB weight of the variance (default: {defaults.UCB_BETA})")
    p.add_argument("--acquisition", choices=("logei", "ucb"),
                   help="logei (default) or the paper's ucb (mean + beta * variance)")
    p.add_argument("--n-candidates", type=positive_int,
                   help=f"score this many random cells per step, as the paper ({defaults.N_CANDIDATES}; default: every cell)")
    p.add_argument("--train-images", type=positive_int,
                   help="training images of the live low fidelity (default: all of the split)")
    p.add_argument("--eval-images", type=positive_int,
                   help="validation images of the live low fidelity (default: all of the split)")
    p.add_argument("--time-ratio", type=positive_float,
                   help="hybrid mode: training-time ratio of the low-fidelity loss to cross-entropy, "
                        "charged to each low-fidelity evaluation (default: the measured ratio, "
                        "optuna_mfkd.training.objectives.TIME_RATIOS)")
    p.add_argument("--kd-overhead", dest="time_ratio", type=positive_float, action=_Renamed,
                   new="--time-ratio", help=argparse.SUPPRESS)
    p.add_argument("--kd-loss", choices=KD_LOSSES, help="low-fidelity training loss: nst, kd (Hinton) or ce (default: nst)")
    p.add_argument("--artifact-dir", type=_nonempty_path,
                   help="store a summary figure (anytime curve, trials by fidelity) as a study "
                        "artifact in this folder, for optuna-dashboard --artifact-dir")
    _add_study_options(p, join=False)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join a study made by 'search' (one per process or machine)",
                       description="Run trials of an existing MF-KD study; start as many as you like.")
    _add_study_options(p, join=True)
    p.set_defaults(func=lambda a: cmd_search(a, join=True))

    p = sub.add_parser("proxy", help="serve a study database to many workers (Optuna's gRPC storage proxy)",
                       description="Serve a study database through Optuna's gRPC storage proxy; "
                                   "search and worker processes connect with --storage grpc://HOST:PORT.")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"database URL to serve (default: {DEFAULT_STORAGE} in this folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_number(int, lambda v: 0 < v < 65536, "a port number 1..65535"),
                   default=13000, help="port to listen on (default: 13000)")
    p.set_defaults(func=cmd_proxy)

    for name, module, text in (
        ("benchmark", "optuna_mfkd.bench.harness", "run the benchmark harness (see its --help)"),
        ("report", "optuna_mfkd.bench.report", "summarise benchmark results (see its --help)"),
        ("teacher", "optuna_mfkd.training.teacher_training", "load, train or fine-tune a teacher (see its --help)"),
    ):
        p = sub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda a, m=module: cmd_passthrough(m, a))

    p = sub.add_parser("nb201", help="look up a NAS-Bench-201 cell",
                       description="Print a NAS-Bench-201 cell given by official index or arch string.")
    p.add_argument("cell", help="official index (0..15624) or arch string |op~0|+|op~0|op~1|+|...|")
    p.add_argument("--table", type=_existing_path, help=TABLE_HELP)
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="only this dataset")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_nb201)
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
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
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
        print(f"{PROG} {args.command}: error: --storage {_masked(url)}: the database refused a "
              f"write: {_storage_reason(exc, url)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
