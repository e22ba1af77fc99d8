"""``optuna-mfkd search`` and ``optuna-mfkd worker``: run the trials of an MF-KD study here.

``search`` creates a study (or resumes it) from a :class:`~optuna_mfkd.cli.config.SearchConfig`
stored in the study; ``worker`` joins a study that ``search`` made, in the same storage, with
that stored configuration. Ctrl-C (or SIGTERM) fails the running trial, queues it again and
exits with code 130; running the same command again resumes the study.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optuna_mfkd import defaults
from optuna_mfkd.cli.common import (
    EXIT_INTERRUPTED,
    PROG,
    TABLE_HELP,
    CLIError,
    Renamed,
    existing_path,
    nonempty_path,
    nonneg_float,
    nonneg_int,
    one_line,
    positive_float,
    positive_int,
    sigterm_interrupts,
    source,
    study_name,
)
from optuna_mfkd.cli.config import (
    ACQUISITIONS,
    CONFIG_ATTR,
    DATASET_CHOICES,
    KD_LOSSES,
    MODES,
    PROTOCOLS,
    SearchConfig,
    resolve_config,
)
from optuna_mfkd.cli.inputs import (
    TEACHER_ENV,
    check_device,
    data_env,
    data_root,
    load_table,
    teacher_path,
)
from optuna_mfkd.cli.study import DEFAULT_STORAGE, GRPC_SCHEME, existing_study, masked, open_storage
from optuna_mfkd.cli.summary import report
from optuna_mfkd.sampler_factory import mfkd_sampler

#: Trial user attribute naming the process that ran the trial (``host:pid``).
WORKER_ATTR = "worker"


# --------------------------------------------------------------------------- sampler & objective
def build_sampler(config: SearchConfig, seed: int | None) -> Any:
    """The MFKDSampler of a configuration (levels cheapest first; isomorphic cells are one)."""
    from optuna_mfkd.nasbench201.space import cell_key

    return mfkd_sampler(
        config.level_settings(),
        n_warmup_high=config.n2,
        n_warmup_low=config.n1,
        seed=seed,
        n_candidates=config.n_candidates,
        beta=config.beta,
        acquisition=config.acquisition,
        strategy=config.strategy,
        point_key=cell_key,
    )


def build_objective(config: SearchConfig, args: argparse.Namespace) -> Callable[[Any], float]:
    """The objective of a configuration: table lookups, live training, or both."""
    table = load_table(args)
    if config.mode == "tabular":
        from optuna_mfkd.nasbench201.tabular import TabularObjective

        levels = {name: int(lv["epochs"]) for name, lv in config.level_settings().items()}
        return TabularObjective(table, config.dataset, levels=levels)
    check_device(args.device)
    data = data_root(config, args)
    teacher = teacher_path(config, args) if config.kd_loss != "ce" else None
    from optuna_mfkd.training.objectives import (
        CellEvaluator,
        HybridNB201Objective,
        NB201TrainingObjective,
    )

    settings = config.level_settings()
    low_name, high_name = settings
    objective: Any
    if config.mode == "hybrid":
        evaluator = CellEvaluator(config.dataset, data, teacher=teacher, device=args.device)
        objective = HybridNB201Objective(table, evaluator, settings[low_name], time_ratio=config.time_ratio,
                                         low_name=low_name, high_name=high_name, dataset=config.dataset)
    else:
        objective = NB201TrainingObjective(config.dataset, data, fidelities=settings, teacher=teacher,
                                           device=args.device)
    preflight(objective, config, data, teacher, args)
    # Only now, with data and teacher read, the evaluation cache gets its table in the study's
    # database (a gRPC proxy offers no database to keep it in).
    if not args.storage.startswith(GRPC_SCHEME):
        from optuna_mfkd.training.cache import EvaluationCache

        objective.evaluator.cache = EvaluationCache(args.storage)
    return objective


def preflight(objective: Any, config: SearchConfig, data: Path, teacher: Path | None,
              args: argparse.Namespace) -> None:
    """Read the data and the teacher of a live objective now, so a bad file is an error before
    anything is stored (otherwise the first trial would fail on it)."""
    try:
        objective.evaluator.n_train  # noqa: B018 (loads and caches the training split)
    except (FileNotFoundError, ValueError, OSError) as exc:
        where = source("--data-root", data_env(config.dataset), args.data_root)
        raise CLIError(f"{where} {data}: {one_line(exc)}") from None
    if teacher is not None:
        try:
            objective.evaluator.teacher()
        except (FileNotFoundError, ValueError, OSError) as exc:
            where = source("--teacher", TEACHER_ENV, args.teacher)
            raise CLIError(f"{where} {teacher}: {one_line(exc)}") from None


# --------------------------------------------------------------------------- running trials
class Worker:
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


class Progress:
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


def optimize(study: Any, worker: Worker, args: argparse.Namespace, config: SearchConfig) -> None:
    """Run trials until the budget is spent (or ``--n-trials`` in this process)."""
    from optuna_mfkd.fidelity import MaxCostCallback

    callbacks: list[Any] = [MaxCostCallback(config.budget)]
    if not args.quiet:
        callbacks.append(Progress(config.budget, config.top_level))
    study.optimize(
        worker,
        n_trials=args.n_trials,
        callbacks=callbacks,
        catch=(FloatingPointError, ArithmeticError),
        gc_after_trial=False,
    )


def no_interrupt_traceback(record: Any) -> bool:
    """Logging filter: a trial stopped by Ctrl-C is logged without its traceback."""
    if record.exc_info and record.exc_info[0] is not None and issubclass(record.exc_info[0], KeyboardInterrupt):
        record.exc_info = None
    return True


def requeue_interrupted(study: Any, trial_id: int | None) -> None:
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


def _new_sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL that does not exist yet (the command creates it)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return None
    path = Path(url[len(prefix):])
    return None if path.exists() else path


def cmd_search(args: argparse.Namespace, join: bool = False) -> int:
    """Create/resume (``search``) or join (``worker``) a study and run trials in this process."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(no_interrupt_traceback)
    url = args.storage
    new_file = _new_sqlite_file(url)
    try:
        storage = open_storage(url, args.heartbeat, args.grace_period)
        study_id, stored = existing_study(storage, args.study_name, url, join)
        config = resolve_config(args, stored)  # checks the rules between options
        objective = build_objective(config, args)  # checks data paths before anything is stored
        sampler = build_sampler(config, args.seed)
    except Exception:
        if new_file is not None and new_file.exists():  # a refused command leaves no empty database
            new_file.unlink()
        raise
    if study_id is None:
        study = optuna.create_study(
            storage=storage, study_name=args.study_name, direction="maximize", sampler=sampler
        )
        study.set_user_attr(CONFIG_ATTR, asdict(config))
        print(f"created study {args.study_name!r} in {masked(url)}")
    else:
        study = optuna.load_study(study_name=args.study_name, storage=storage, sampler=sampler)
        if config.budget != (stored or {}).get("budget") and not join:
            study.set_user_attr(CONFIG_ATTR, asdict(config))
        print(f"{'joined' if join else 'resumed'} study {args.study_name!r} ({len(study.trials)} trials)")
    worker = Worker(objective, args.time_scale)
    sigterm_interrupts()
    from optuna_mfkd.fidelity import total_cost

    if total_cost(study) >= config.budget:
        print(f"the budget of {config.budget:,.0f} s is spent; pass a larger --budget to go on")
        report(study, config, args, masked(url))
        return 0
    try:
        optimize(study, worker, args, config)
    except KeyboardInterrupt:
        requeue_interrupted(study, worker.current)
        print(
            f"\ninterrupted: study {args.study_name!r} is saved; resume with "
            f"'{PROG} {'worker' if join else 'search'} --storage {masked(url)} "
            f"--study-name {args.study_name}'",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    report(study, config, args, masked(url))
    return 0


# --------------------------------------------------------------------------- options
def add_study_options(p: argparse.ArgumentParser, join: bool) -> None:
    """The options ``search`` and ``worker`` share: storage, study, inputs, run control."""
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"Optuna storage URL, or grpc://HOST:PORT of an '{PROG} proxy' "
                        f"(default: {DEFAULT_STORAGE} in this folder)")
    p.add_argument("--study-name", type=study_name, default=None if join else "mfkd", required=join,
                   help="study to join" if join else "study name; an existing study is resumed (default: mfkd)")
    p.add_argument("--table", type=existing_path, help=TABLE_HELP)
    p.add_argument("--data-root", type=nonempty_path,
                   help="dataset for live training: CIFAR-10 zip, ImageFolder root or torchvision folder "
                        "(default: $MFKD_CIFAR10, $MFKD_CIFAR100 or $MFKD_IMAGENET16)")
    p.add_argument("--download", action="store_true",
                   help="live training: let torchvision download CIFAR-10/100 into --data-root "
                        "(default there: ~/.cache/optuna-mfkd/datasets); skipped where present")
    p.add_argument("--teacher", type=existing_path,
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


def register(sub: Any) -> None:
    """Add the ``search`` and ``worker`` subcommands to ``sub`` (``add_subparsers``' result)."""
    p = sub.add_parser("search", help="run (or resume) an MF-KD search",
                       description="Create an MF-KD study (or resume it) and run it in this process.")
    p.add_argument("--mode", choices=MODES, help="tabular: table lookups; hybrid: live low fidelity + "
                   "table high fidelity; train: live training at both (default: tabular)")
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="mf: two levels (default); nb201: NAS-Bench-201's protocol, one level "
                        "(12-epoch validation accuracy, budget 12,000 s), tabular mode only")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="default: cifar10")
    p.add_argument("--e1", type=positive_int, help="low-fidelity epochs (default: 12 tabular, 1 otherwise)")
    p.add_argument("--e2", type=positive_int, help="high-fidelity epochs (default: 200 tabular, 12 otherwise)")
    p.add_argument("--n1", type=nonneg_int, help=f"random warm-up trials at low fidelity (default: {defaults.CLI_N_WARMUP_LOW})")
    p.add_argument("--n2", type=nonneg_int,
                   help="warm-up trials at high fidelity: the best low-fidelity cells, promoted (mf-mes, "
                        f"cost-aware), or random cells (--strategy paper) (default: {defaults.CLI_N_WARMUP_HIGH})")
    p.add_argument("--beta", type=nonneg_float, help=f"UCB weight of the variance (default: {defaults.UCB_BETA})")
    p.add_argument("--acquisition", choices=ACQUISITIONS,
                   help="logei (default) or the paper's ucb (mean + beta * variance)")
    p.add_argument("--strategy", choices=defaults.STRATEGIES,
                   help="level choice after the warm-up: paper (high fidelity only), mf-mes (the level of most "
                        "information on the best cell per cost) or cost-aware (MF-GP-UCB's rule) "
                        f"(default: {defaults.DEFAULT_STRATEGY})")
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
    p.add_argument("--kd-overhead", dest="time_ratio", type=positive_float, action=Renamed,
                   new="--time-ratio", help=argparse.SUPPRESS)
    p.add_argument("--kd-loss", choices=KD_LOSSES, help="low-fidelity training loss: nst, kd (Hinton) or ce (default: nst)")
    p.add_argument("--artifact-dir", type=nonempty_path,
                   help="store a summary figure (anytime curve, trials by fidelity) as a study "
                        "artifact in this folder, for optuna-dashboard --artifact-dir")
    add_study_options(p, join=False)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join a study made by 'search' (one per process or machine)",
                       description="Run trials of an existing MF-KD study; start as many as you like.")
    add_study_options(p, join=True)
    p.set_defaults(func=lambda a: cmd_search(a, join=True))
