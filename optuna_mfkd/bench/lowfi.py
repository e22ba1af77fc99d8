"""The low level of the paper protocol: a pool's cached low-fidelity scores, or live training.

- :class:`LowFidelityPool`: the scores of a pool of cells (one CSV row per cell and loss),
  each loss charged its measured training time;
- :class:`LiveLowFidelity`: each proposed cell trained live on CIFAR-10 for a few epochs and
  scored (the hybrid protocol), results kept in an evaluation cache.

:mod:`optuna_mfkd.bench.protocols` turns either into the low level of the methods with a
:attr:`~optuna_mfkd.bench.methods.Method.low_loss`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optuna_mfkd.datasets import canonical_dataset
from optuna_mfkd.nasbench201.table import NB201Table

#: The losses a pool may score cells with, in the order they are read by default.
POOL_LOSSES = ("nst", "ce", "kd")
#: Columns a low-fidelity pool CSV needs (long format, one row per cell and loss).
POOL_COLUMNS = ("index", "loss", "score", "wall_seconds", "epochs", "train_images")


@dataclass(frozen=True)
class LowFidelityPool:
    """Cached low-fidelity scores of a pool of cells (the paper protocol's low level).

    Attributes:
        scores: loss name (``"nst"``, ``"ce"``, ``"kd"``) -> {NB201 index: score}.
        cost_epochs: loss name -> cost of one evaluation in epochs of the table's per-epoch
            seconds (``epochs x data fraction x measured time ratio to CE``).
        dataset: the dataset the scores were computed on.
        source: where the scores came from (shown in reports).
    """

    scores: Mapping[str, Mapping[int, float]]
    cost_epochs: Mapping[str, float]
    dataset: str = "cifar10"
    source: str = ""

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        losses: Sequence[str] | None = None,
        reference_loss: str = "ce",
        train_size: int = 25_000,
        dataset: str = "cifar10",
    ) -> LowFidelityPool:
        """Read a pool CSV in long format: one row per (cell, loss).

        ``losses``: the losses to read (default: every loss of :data:`POOL_LOSSES` the CSV
        has; a pool may hold, e.g., Hinton KD scores for fewer cells than CE and NST).
        Needed columns: ``index``, ``loss``, ``score``, ``wall_seconds``, ``epochs``,
        ``train_images``. The cost of a loss in epochs of the table's per-epoch seconds is
        ``epochs x train_images / train_size x r``, with ``r`` the median over cells scored
        with both losses of ``seconds[loss] / seconds[reference_loss]`` (1 for the
        reference loss): the measured time ratio of, e.g., NST to plain cross-entropy.
        ``seconds`` is the training CPU time (``train_cpu_seconds``) where the pool has it,
        since wall time depends on whatever else ran on the machine, else ``wall_seconds``.
        ``train_size`` is the training split the table's epochs run over (25,000 images of
        cifar10-valid).
        """
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"low-fidelity pool not found at {str(path)!r} (a CSV with columns {list(POOL_COLUMNS)})."
            )
        df = pd.read_csv(path)
        missing = [c for c in POOL_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"pool {str(path)!r} lacks columns {missing}; expected {list(POOL_COLUMNS)}.")
        df = df.dropna(subset=["score", "wall_seconds"])
        timing = "wall_seconds"
        if "train_cpu_seconds" in df.columns and df["train_cpu_seconds"].notna().any():
            timing = "train_cpu_seconds"
        timed = df.dropna(subset=[timing])
        wall = {loss: dict(zip(g["index"].astype(int), g[timing].astype(float))) for loss, g in timed.groupby("loss")}
        if losses is None:
            losses = [loss for loss in POOL_LOSSES if loss in set(df["loss"])]
            if not losses:
                raise ValueError(
                    f"pool {str(path)!r} has no rows with a known loss {sorted(POOL_LOSSES)}; "
                    f"it has {sorted(df['loss'].unique())}."
                )
        scores: dict[str, dict[int, float]] = {}
        cost: dict[str, float] = {}
        for loss in losses:
            sub = df[df["loss"] == loss]
            if sub.empty:
                raise ValueError(f"pool {str(path)!r} has no rows with loss {loss!r}; it has {sorted(df['loss'].unique())}.")
            if sub["epochs"].nunique() != 1 or sub["train_images"].nunique() != 1:
                raise ValueError(f"pool {str(path)!r}: the {loss!r} rows mix several epochs/train_images settings.")
            scores[loss] = dict(zip(sub["index"].astype(int), sub["score"].astype(float)))
            ratio = 1.0
            if loss != reference_loss:
                ref = wall.get(reference_loss, {})
                both = [i for i in wall.get(loss, {}) if i in ref]
                if not both:
                    raise ValueError(f"pool {str(path)!r}: no cell has both {loss!r} and {reference_loss!r} timings.")
                ratio = float(np.median([wall[loss][i] / ref[i] for i in both]))
            cost[loss] = float(sub["epochs"].iloc[0]) * float(sub["train_images"].iloc[0]) / train_size * ratio
        return cls(scores, cost, canonical_dataset(dataset), str(path))


@dataclass(frozen=True)
class LiveLowFidelity:
    """A low level trained live on CIFAR-10 (the hybrid protocol's ``mfkd-nst``/``mfkd-ce``).

    Attributes:
        data_root: CIFAR-10 location (zip or ImageFolder of JPEGs, torchvision folder).
        settings: training settings shared by both losses (``train_images``,
            ``eval_images``, ``batch_size``, ``epochs``, ``lr``, ``nst_beta``, ...; see
            :mod:`optuna_mfkd.training.objectives`); the loss comes from the method.
        cache: URL of the evaluation cache (repeated cells are served from it).
        time_ratios: loss -> training-time ratio to cross-entropy, charged on top of
            ``epochs x data fraction x the cell's seconds per epoch``.
        teacher: teacher checkpoint (None: ``$MFKD_TEACHERS``).
        device: torch device (None: CUDA when present, else CPU).
        seed: training seed.
    """

    data_root: str
    settings: Mapping[str, Any]
    cache: str
    time_ratios: Mapping[str, float]
    teacher: str | None = None
    device: str | None = None
    seed: int = 0

    def objective(self, table: NB201Table, dataset: str, loss: str, high_level: str) -> Any:
        """A :class:`~optuna_mfkd.training.objectives.HybridNB201Objective` for ``loss``."""
        from optuna_mfkd.training.objectives import HybridNB201Objective

        if loss not in self.time_ratios:
            raise ValueError(f"no measured time ratio for loss {loss!r} (time_ratios has {sorted(self.time_ratios)}).")
        return HybridNB201Objective(
            table, _live_evaluator(self), {**self.settings, "kd_loss": loss},
            time_ratio=self.time_ratios[loss], low_name=loss, high_name=high_level, dataset=dataset,
            seed=self.seed, default_fidelity=high_level,
        )


_EVALUATORS: dict[tuple[Any, ...], Any] = {}


def _live_evaluator(live: LiveLowFidelity) -> Any:
    # One evaluator per process and data/teacher/cache: the data and the teacher's cached
    # outputs are loaded once and shared by all runs of a benchmark.
    from optuna_mfkd.training.objectives import CellEvaluator

    key = (live.data_root, live.teacher, live.cache, live.device)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = CellEvaluator(
            "cifar10", live.data_root, teacher=live.teacher, cache=live.cache, device=live.device, progress=False
        )
    return _EVALUATORS[key]
