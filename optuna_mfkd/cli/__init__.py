"""The ``optuna-mfkd`` command.

Subcommands, one module each:

- ``search`` (:mod:`~optuna_mfkd.cli.search`): create (or resume) an MF-KD study and run it
  in this process; ``worker``: join a study made by ``search`` in the same storage (one per
  process/machine).
- ``proxy`` (:mod:`~optuna_mfkd.cli.proxy`): serve the study database to many workers through
  Optuna's gRPC storage proxy.
- ``benchmark`` (:mod:`~optuna_mfkd.cli.benchmark`) / ``report``
  (:mod:`~optuna_mfkd.cli.report`): the benchmark harness and its report; ``teacher``:
  teacher training (the three registered by :mod:`~optuna_mfkd.cli.passthrough`, arguments
  pass through to their own parsers).
- ``nb201`` (:mod:`~optuna_mfkd.cli.nb201`): look up a NAS-Bench-201 cell by index or arch string.

Shared parts: :mod:`~optuna_mfkd.cli.common` (errors, argument types),
:mod:`~optuna_mfkd.cli.config` (:class:`SearchConfig`, the rules between options),
:mod:`~optuna_mfkd.cli.study` (storages and stored studies), :mod:`~optuna_mfkd.cli.inputs`
(table, data, teacher, device), :mod:`~optuna_mfkd.cli.summary` (the end-of-search summary and
figure) and :mod:`~optuna_mfkd.cli.app` (the parser and :func:`main`).

Every bad argument ends the command with one line ``optuna-mfkd <cmd>: error: ...`` that
names it, and exit code 2. Ctrl-C (or SIGTERM) fails the running trial, queues it again and
exits with code 130; running the same ``search`` (or ``worker``) again resumes the study.
"""

from optuna_mfkd.cli.app import build_parser, main
from optuna_mfkd.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, CLIError
from optuna_mfkd.cli.config import CONFIG_ATTR, SearchConfig, level_settings, resolve_config
from optuna_mfkd.cli.search import WORKER_ATTR, build_objective, build_sampler
from optuna_mfkd.cli.study import DEFAULT_STORAGE, open_storage
from optuna_mfkd.cli.summary import summary_figure, summary_lines

__all__ = [
    "CONFIG_ATTR",
    "DEFAULT_STORAGE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PROG",
    "WORKER_ATTR",
    "CLIError",
    "SearchConfig",
    "build_objective",
    "build_parser",
    "build_sampler",
    "level_settings",
    "main",
    "open_storage",
    "resolve_config",
    "summary_figure",
    "summary_lines",
]
