"""The search configuration: what defines a study, its defaults, and the rules between options.

A :class:`SearchConfig` is checked when it is made (:meth:`SearchConfig.validate`), so every
rule that ties one option to another lives here, and each broken rule is a one-line
:class:`~optuna_mfkd.cli.common.CLIError` naming the option. :func:`resolve_config` merges
the command line with the configuration a study was created with.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

from optuna_mfkd import defaults
from optuna_mfkd.cli.common import CLIError
from optuna_mfkd.datasets import DATASETS

#: Study user attribute holding the search configuration (JSON object).
CONFIG_ATTR = "mfkd:config"
MODES = ("tabular", "hybrid", "train")
PROTOCOLS = ("mf", "nb201")
ACQUISITIONS = ("logei", "ucb")
DATASET_CHOICES = DATASETS
KD_LOSSES = ("nst", "kd", "ce")
#: Epochs the NB201 table holds a value for.
TABLE_EPOCHS = (12, 200)


@dataclass
class SearchConfig:
    """What defines a study; stored in the study (``mfkd:config``) so workers can join it.

    ``protocol="nb201"`` (tabular mode only) is NAS-Bench-201's own search protocol: one
    level, the 12-epoch validation accuracy, searched by GP-UCB after ``n2`` random trials.
    ``e1``/``e2`` are the epochs of the low and high fidelity; ``n1``/``n2`` the random
    warm-up evaluations at each; ``acquisition`` the sampler's acquisition (``logei`` or the
    paper's ``ucb``) and ``beta`` its UCB weight; ``strategy`` its level choice (``paper``:
    the high fidelity only after the warm-up; ``mf-mes``, ``cost-aware``: the sampler chooses
    the level of every trial by information per cost or by MF-GP-UCB's rule); ``n_candidates`` the random cells scored per
    step (``None``: every cell, one per isomorphism class); ``train_images`` the training
    images of a live low fidelity (``None``: all) and ``eval_images`` its validation images
    (``None``: all); ``time_ratio`` the
    training-time ratio of the low-fidelity loss to cross-entropy charged in hybrid mode
    (``None``: the measured :data:`optuna_mfkd.training.objectives.TIME_RATIOS`);
    ``budget`` the total cost (seconds, simulated in tabular mode).

    Raises:
        CLIError: the options break a rule of :meth:`validate`.
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
    strategy: str = defaults.DEFAULT_STRATEGY
    kd_loss: str = "nst"
    train_images: int | None = None
    eval_images: int | None = None
    time_ratio: float | None = None
    budget: float = defaults.CLI_BUDGET

    # Options that may change when a study is resumed (the budget may grow).
    RESUMABLE = ("budget",)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def names(cls) -> list[str]:
        """The options that make up a configuration."""
        return [f.name for f in fields(cls)]

    def validate(self) -> None:
        """Check the rules between options.

        - ``protocol="nb201"`` is tabular and searches the 12-epoch accuracy alone
          (``e1 = e2 = 12``, ``n1 = 0``);
        - tabular levels are epochs the table holds (12 and 200);
        - only hybrid mode charges a ``time_ratio``;
        - in hybrid mode the high fidelity is the table's 12 epochs;
        - two levels: ``e1 < e2``.

        Raises:
            CLIError: the first rule broken, naming the option.
        """
        if self.protocol == "nb201":
            if self.mode != "tabular":
                raise CLIError(f"--protocol nb201 is a tabular protocol; --mode {self.mode} trains cells")
            if (self.e1, self.e2) != (12, 12) or self.n1:
                raise CLIError("--protocol nb201 searches the 12-epoch accuracy alone: drop --e1/--e2/--n1")
        elif self.mode == "tabular":
            for flag, epochs in (("--e1", self.e1), ("--e2", self.e2)):
                if epochs not in TABLE_EPOCHS:
                    raise CLIError(f"{flag} {epochs}: the NB201 table holds 12 and 200 epochs only")
        if self.time_ratio is not None and self.mode != "hybrid":
            raise CLIError(f"--time-ratio {self.time_ratio}: only hybrid mode charges a time ratio "
                           f"(this study's mode is {self.mode})")
        if self.mode == "hybrid" and self.e2 != 12:
            raise CLIError(f"--e2 {self.e2}: in hybrid mode the high fidelity is the table's 12 epochs")
        if self.protocol != "nb201" and self.e1 >= self.e2:
            raise CLIError(f"--e1 {self.e1} must be smaller than --e2 {self.e2}")

    def level_settings(self) -> dict[str, dict[str, Any]]:
        """Fidelity name -> settings (recorded on each trial), cheapest level first.

        Tabular levels are named after their epochs (``12ep``, ``200ep``; NB201 trained them with
        cross-entropy); a live low fidelity also names its training loss (``1ep-nst``).
        """
        if self.protocol == "nb201":
            return {"12ep": {"epochs": 12, "kd_loss": "ce"}}
        if self.mode == "tabular":  # NB201's schedules, trained with cross-entropy
            return {f"{e}ep": {"epochs": e, "kd_loss": "ce"} for e in (self.e1, self.e2)}
        low: dict[str, Any] = {"epochs": self.e1, "kd_loss": self.kd_loss}
        if self.train_images:
            low["train_images"] = self.train_images
        if self.eval_images:
            low["eval_images"] = self.eval_images
        return {f"{self.e1}ep-{self.kd_loss}": low, f"{self.e2}ep": {"epochs": self.e2, "kd_loss": "ce"}}

    @property
    def top_level(self) -> str:
        """The name of the highest fidelity (the level the search is judged at)."""
        return list(self.level_settings())[-1]


def level_settings(config: SearchConfig) -> dict[str, dict[str, Any]]:
    """Fidelity name -> settings of ``config`` (:meth:`SearchConfig.level_settings`)."""
    return config.level_settings()


def mode_defaults(mode: str, protocol: str) -> dict[str, Any]:
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

    Raises:
        CLIError: an option differs from the stored one, or the result breaks a rule of
            :meth:`SearchConfig.validate`.
    """
    given = {n: getattr(args, n, None) for n in SearchConfig.names()}
    if stored is None:
        mode = given["mode"] or SearchConfig.mode
        protocol = given["protocol"] or SearchConfig.protocol
        values = {**asdict(SearchConfig()), **mode_defaults(mode, protocol)}
        values.update({k: v for k, v in given.items() if v is not None})
        return SearchConfig(**values)
    # Studies stored before an option existed ran with its earlier behaviour.
    legacy = {"acquisition": "ucb", "strategy": "paper"}
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
