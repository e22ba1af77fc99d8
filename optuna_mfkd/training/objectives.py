"""Optuna objectives that train NB201 cells: live training, and the paper's hybrid protocol.

:class:`CellEvaluator` trains one cell with given settings (loss, epochs, images,
batch, ...) on fixed data and teacher and scores it, optionally through an
:class:`EvaluationCache`; it serves every fidelity, low and high.
:class:`NB201TrainingObjective` trains every trial at its fidelity's settings.
:class:`HybridNB201Objective` trains the low fidelity live and looks the high fidelity up in
the NB201 table (the 12-epoch validation accuracy), charging both in simulated NB201
seconds:

    low:   epochs x data_fraction x seconds_per_epoch(cell) x time_ratio[loss]
    high:  12 x seconds_per_epoch(cell)

where ``data_fraction = train_images / 25,000`` (the cifar10-valid training half) and
``time_ratio`` is the measured training-time ratio of the loss to plain CE
(:data:`TIME_RATIOS`; 1.0 for CE).

Settings keys (any level; unset keys take :data:`DEFAULT_SETTINGS`): ``kd_loss`` ("ce",
"kd", "nst"), ``epochs``, ``train_images`` (None = all) or ``data_fraction``, ``eval_images``,
``batch_size``, ``lr``, ``nst_beta``, ``nst_layers``, ``nst_channel_fraction``, ``kd_tau``,
``kd_lambda``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch

from optuna_mfkd.datasets import canonical_dataset
from optuna_mfkd.defaults import HIGH_EPOCHS, LOW_EPOCHS
from optuna_mfkd.distill.teacher import default_teacher_path, load_teacher
from optuna_mfkd.fidelity import COST_ATTR, fidelity_of
from optuna_mfkd.nasbench201.space import suggest_architecture
from optuna_mfkd.training.cache import EvaluationCache
from optuna_mfkd.training.data import ArrayDataset, load_split, nb201_valid_split, seeded_subset
from optuna_mfkd.training.trainer import (
    DivergenceError,
    TeacherOutputCache,
    TrainConfig,
    pick_device,
    train,
)

_RECIPE = TrainConfig()
#: Settings of an evaluation that names none: the high fidelity (NB201's 12-epoch schedule
#: with cross-entropy) on all images, with the trainer's recipe (:class:`TrainConfig`).
DEFAULT_SETTINGS: dict[str, Any] = {
    "kd_loss": "ce",
    "epochs": HIGH_EPOCHS,
    "train_images": None,
    "eval_images": None,
    "batch_size": _RECIPE.batch_size,
    "lr": _RECIPE.lr,
    "nst_beta": _RECIPE.nst_beta,
    "nst_layers": list(_RECIPE.nst_layers),
    "nst_channel_fraction": _RECIPE.nst_channel_fraction,
    "kd_tau": _RECIPE.kd_tau,
    "kd_lambda": _RECIPE.kd_lambda,
}

#: Default levels of :class:`NB201TrainingObjective`: the paper's low and high fidelity.
DEFAULT_FIDELITIES: dict[str, dict[str, Any]] = {
    "low": {"kd_loss": "nst", "epochs": LOW_EPOCHS},
    "high": {"kd_loss": "ce", "epochs": HIGH_EPOCHS},
}

_TRAIN_KEYS = set(DEFAULT_SETTINGS) | {"data_fraction"}

#: Training-time ratio of each low-fidelity loss to plain cross-entropy, with the teacher's
#: outputs cached, measured on one CPU thread. NST: the median ratio of training CPU seconds
#: over the 90 CIFAR-10 pool cells trained with both losses in the same sitting
#: (``benchmarks/results/kd-pool``, 6,000 images, batch 64; 1.093 over its first 50 cells).
#: Hinton KD: the median over the three cells of ``benchmarks/results/kd-throughput`` (``kd+cache`` against ``ce``, run side
#: by side). The hybrid protocol charges a low-fidelity evaluation
#: ``epochs x data fraction x seconds per epoch x TIME_RATIOS[loss]``.
TIME_RATIOS: dict[str, float] = {"ce": 1.0, "nst": 1.102, "kd": 1.04}


def resolve_settings(settings: Mapping[str, Any], n_train: int) -> dict[str, Any]:
    """Complete ``settings`` with defaults; ``data_fraction`` becomes ``train_images``."""
    unknown = set(settings) - _TRAIN_KEYS
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(_TRAIN_KEYS)}.")
    out = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if k != "data_fraction"}}
    if settings.get("data_fraction") is not None:
        frac = float(settings["data_fraction"])
        if not 0 < frac <= 1:
            raise ValueError(f"data_fraction must lie in (0, 1], got {frac}.")
        out["train_images"] = max(1, round(frac * n_train))
    if out["train_images"] is not None:
        out["train_images"] = min(int(out["train_images"]), n_train)
    out["nst_layers"] = [int(i) for i in out["nst_layers"]]
    if out["kd_loss"] not in ("ce", "kd", "nst"):
        raise ValueError(f"kd_loss must be 'ce', 'kd' or 'nst', got {out['kd_loss']!r}.")
    return out


class CellEvaluator:
    """Train and score NB201 cells at any fidelity, on fixed data and teacher, via an RDB cache.

    Data: ``split="cifar10-valid"`` trains on a seeded half of the training images and
    evaluates on the other half; ``split="test"`` trains on all training images and evaluates
    on the test images. ``train_images``/``eval_images`` of the settings select seeded subsets
    (fixed by ``data_seed``, the same for every cell).

    Args:
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16`` (or an alias, see
            :mod:`optuna_mfkd.datasets`).
        data_root: dataset location (see :func:`optuna_mfkd.training.data.load_split`).
        teacher: checkpoint path, an ``nn.Module``, or None (then only ``kd_loss="ce"`` works
            unless ``$MFKD_TEACHERS`` holds the dataset's teacher).
        cache: an :class:`EvaluationCache`, a database URL, a study, or None.
    """

    def __init__(self, dataset: str = "cifar10", data_root: str | os.PathLike | None = None, *,
                 split: str = "cifar10-valid", teacher: Any = None, cache: Any = None,
                 device: str | None = None, data_seed: int = 0, split_seed: int = 1021,
                 teacher_cache: bool = True, progress: bool | None = None) -> None:
        if split not in ("cifar10-valid", "valid", "test"):
            raise ValueError(f"split must be 'cifar10-valid' or 'test', got {split!r}.")
        self.dataset = canonical_dataset(dataset)
        self.data_root = data_root
        self.split = "test" if split == "test" else "valid"
        self.device = device
        self.data_seed = data_seed
        self.split_seed = split_seed
        self.progress = progress
        self._teacher_spec = teacher
        self._teacher = None
        self._teacher_id = None
        self.teacher_cache = TeacherOutputCache(device=pick_device(device)) if teacher_cache else None
        self.cache = cache if (cache is None or isinstance(cache, EvaluationCache)) else EvaluationCache(cache)
        self._train_pool: ArrayDataset | None = None
        self._eval_pool: ArrayDataset | None = None
        self._subsets: dict[tuple[str, int | None], ArrayDataset] = {}

    # -- data ---------------------------------------------------------------------------
    def _pools(self) -> tuple[ArrayDataset, ArrayDataset]:
        if self._train_pool is None:
            train_split = load_split(self.dataset, self.data_root, "train")
            if self.split == "valid":
                tr, va = nb201_valid_split(len(train_split), self.split_seed)
                self._train_pool, self._eval_pool = train_split.subset(tr), train_split.subset(va)
            else:
                self._train_pool = train_split
                self._eval_pool = load_split(self.dataset, self.data_root, "test")
        return self._train_pool, self._eval_pool

    @property
    def n_train(self) -> int:
        return len(self._pools()[0])

    def data(self, which: str, size: int | None) -> ArrayDataset:
        key = (which, size)
        if key not in self._subsets:
            pool = self._pools()[0 if which == "train" else 1]
            seed = self.data_seed if which == "train" else self.data_seed + 1
            self._subsets[key] = pool.subset(seeded_subset(range(len(pool)), size, seed))
        return self._subsets[key]

    # -- teacher --------------------------------------------------------------------------
    def teacher(self):
        if self._teacher is None:
            spec = self._teacher_spec
            if isinstance(spec, torch.nn.Module):
                self._teacher, self._teacher_id = spec, f"module:{getattr(spec, 'arch', 'custom')}"
            else:
                path = Path(spec) if spec is not None else default_teacher_path(self.dataset)
                self._teacher = load_teacher(path)
                self._teacher_id = f"{path.name}:{path.stat().st_size}"
        return self._teacher

    def teacher_id(self) -> str:
        self.teacher()
        return str(self._teacher_id)

    # -- evaluation -------------------------------------------------------------------------
    def cache_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The full identity of an evaluation: resolved settings + data + teacher."""
        s = resolve_settings(settings, self.n_train)
        ident = {**s, "dataset": self.dataset, "split": self.split, "data_seed": self.data_seed,
                 "split_seed": self.split_seed}
        if s["kd_loss"] == "ce":
            for k in ("nst_beta", "nst_layers", "nst_channel_fraction", "kd_tau", "kd_lambda"):
                ident.pop(k)
        else:
            ident["teacher"] = self.teacher_id()
            drop = ("kd_tau", "kd_lambda") if s["kd_loss"] == "nst" else (
                "nst_beta", "nst_layers", "nst_channel_fraction")
            for k in drop:
                ident.pop(k)
        return ident

    def train_and_score(self, arch: str, settings: Mapping[str, Any], seed: int = 0, *,
                 on_epoch_end=None) -> dict[str, Any]:
        """Train ``arch`` with ``settings``; returns value (val. accuracy %), seconds, cached, ...

        Raises :class:`DivergenceError` when the loss diverges (also cached, as value None).
        """
        s = resolve_settings(settings, self.n_train)
        ident = self.cache_settings(settings)
        if self.cache is not None:
            hit = self.cache.get(arch, ident, seed)
            if hit is not None:
                if hit.value is None:
                    raise DivergenceError(hit.extra.get("reason", "diverged (cached)"))
                return {"value": hit.value, "seconds": hit.seconds, "cached": True, **hit.extra}
        cfg = TrainConfig(
            epochs=int(s["epochs"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
            loss=s["kd_loss"], nst_beta=float(s["nst_beta"]), nst_layers=tuple(s["nst_layers"]),
            nst_channel_fraction=float(s["nst_channel_fraction"]), kd_tau=float(s["kd_tau"]),
            kd_lambda=float(s["kd_lambda"]), seed=int(seed), device=self.device,
            progress=self.progress,
        )
        train_data = self.data("train", s["train_images"])
        eval_data = self.data("eval", s["eval_images"])
        teacher = self.teacher() if cfg.loss != "ce" else None
        t0 = time.perf_counter()
        try:
            result = train(arch, train_data, eval_data, cfg, teacher=teacher,
                           teacher_cache=self.teacher_cache,
                           teacher_key=self._teacher_id or "", on_epoch_end=on_epoch_end)
        except DivergenceError as exc:
            if self.cache is not None:
                self.cache.put(arch, ident, seed, None, time.perf_counter() - t0, {"reason": str(exc)})
            raise
        extra = {"images_per_second": result.images_per_second, "train_seconds": result.train_seconds,
                 "cpu_seconds": result.cpu_seconds,
                 "epoch_acc": result.epoch_acc, "final_loss": result.final_loss,
                 "train_images": len(train_data), "eval_images": len(eval_data)}
        if self.cache is not None:
            self.cache.put(arch, ident, seed, result.val_acc, result.seconds, extra)
        return {"value": result.val_acc, "seconds": result.seconds, "cached": False, **extra}


def _trial_settings(trial: optuna.trial.BaseTrial, fidelities: Mapping[str, Mapping[str, Any]],
                    level: str) -> dict[str, Any]:
    if level in fidelities:
        return dict(fidelities[level])
    # A level this objective does not know: use the settings the sampler recorded.
    found = {k: trial.user_attrs[k] for k in _TRAIN_KEYS if k in trial.user_attrs}
    if not found:
        raise ValueError(f"trial {trial.number}: unknown fidelity {level!r}; levels are {list(fidelities)}.")
    return found


class NB201TrainingObjective:
    """Train each trial's NB201 cell at its fidelity's settings; return validation accuracy (%).

    Args:
        dataset, data_root, split, teacher, device: see :class:`CellEvaluator`.
        fidelities: level name -> settings (see the module docstring); default
            :data:`DEFAULT_FIDELITIES` (low: 1 epoch NST, high: 12 epochs CE).
        default_fidelity: level of trials without one (single-fidelity samplers); default the
            last level.
        cache: evaluation cache (URL, study, :class:`EvaluationCache`) or None.
        seed: training seed.

    User attributes: ``cost`` (wall seconds of the evaluation; a cache hit charges the seconds
    recorded when it was computed, so budgets do not depend on the cache), ``cached``,
    ``images_per_second``, ``kd_loss``, ``epochs``,
    ``data_fraction``, ``teacher``, ``arch_str``, ``nb201_index``. ``trial.report`` runs each
    epoch, so pruners work. A diverging loss ends the trial as FAIL (the objective returns NaN,
    which Optuna records as a failure) with ``fail_reason``; the study goes on.
    """

    def __init__(self, dataset: str = "cifar10", data_root: str | os.PathLike | None = None, *,
                 fidelities: Mapping[str, Mapping[str, Any]] | None = None,
                 default_fidelity: str | None = None, split: str = "cifar10-valid",
                 teacher: Any = None, cache: Any = None, device: str | None = None,
                 seed: int = 0, data_seed: int = 0, progress: bool | None = None) -> None:
        self.fidelities = {k: dict(v) for k, v in (fidelities or DEFAULT_FIDELITIES).items()}
        if not self.fidelities:
            raise ValueError("fidelities must name at least one level.")
        for name, st in self.fidelities.items():
            try:
                resolve_settings(st, 1)
            except ValueError as exc:
                raise ValueError(f"fidelity {name!r}: {exc}") from exc
        self.default_fidelity = default_fidelity or list(self.fidelities)[-1]
        self.seed = seed
        self.evaluator = CellEvaluator(dataset, data_root, split=split, teacher=teacher,
                                              cache=cache, device=device, data_seed=data_seed,
                                              progress=progress)

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        arch = suggest_architecture(trial)
        level = fidelity_of(trial, default=self.default_fidelity)
        settings = _trial_settings(trial, self.fidelities, level)
        s = resolve_settings(settings, self.evaluator.n_train)
        trial.set_user_attr("arch_str", arch.arch_str)
        trial.set_user_attr("nb201_index", arch.index)
        trial.set_user_attr("kd_loss", s["kd_loss"])
        trial.set_user_attr("epochs", int(s["epochs"]))
        n_img = s["train_images"] or self.evaluator.n_train
        trial.set_user_attr("data_fraction", n_img / self.evaluator.n_train)
        trial.set_user_attr("teacher", self.evaluator.teacher_id() if s["kd_loss"] != "ce" else None)

        def report(epoch: int, acc: float) -> None:
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at {acc:.2f}%")

        t0 = time.perf_counter()
        try:
            out = self.evaluator.train_and_score(arch.arch_str, settings, self.seed, on_epoch_end=report)
        except DivergenceError as exc:
            trial.set_user_attr(COST_ATTR, time.perf_counter() - t0)
            trial.set_user_attr("fail_reason", str(exc))
            return math.nan
        except optuna.TrialPruned:
            trial.set_user_attr(COST_ATTR, time.perf_counter() - t0)
            raise
        trial.set_user_attr(COST_ATTR, out["seconds"])
        trial.set_user_attr("images_per_second", out["images_per_second"])
        trial.set_user_attr("cached", bool(out["cached"]))
        if out["cached"]:
            for epoch, acc in enumerate(out.get("epoch_acc") or [out["value"]], start=1):
                trial.report(acc, epoch)
        return float(out["value"])


class HybridNB201Objective:
    """The paper's protocol: low fidelity trained live, high fidelity from the NB201 table.

    Args:
        table: an NB201 table (:func:`optuna_mfkd.nasbench201.table.load_table`).
        evaluator: a :class:`CellEvaluator` (its cache serves repeated evaluations).
        low: settings of the live low fidelity (e.g. ``{"kd_loss": "nst", "epochs": 1,
            "train_images": 6000, "batch_size": 64}``).
        time_ratio: training-time ratio of ``low``'s loss to CE (default: the measured
            :data:`TIME_RATIOS` of the loss; 1.0 for CE).
        low_name, high_name: the fidelity names (high: the table's 12-epoch validation accuracy).
        dataset: the table's dataset name.
        default_fidelity: the level of trials without a fidelity (default ``high_name``).
    """

    def __init__(self, table: Any, evaluator: CellEvaluator, low: Mapping[str, Any], *,
                 time_ratio: float | None = None, low_name: str = "low", high_name: str = "high",
                 dataset: str = "cifar10", seed: int = 0, default_fidelity: str | None = None) -> None:
        self.table = table
        self.evaluator = evaluator
        self.low = dict(low)
        resolve_settings(self.low, 1)
        loss = resolve_settings(self.low, 1)["kd_loss"]
        self.time_ratio = float(TIME_RATIOS[loss] if time_ratio is None else time_ratio)
        if not (math.isfinite(self.time_ratio) and self.time_ratio > 0):
            raise ValueError(f"time_ratio must be a positive number, got {time_ratio!r}.")
        self.low_name, self.high_name = low_name, high_name
        self.dataset = dataset
        self.seed = seed
        self.default_fidelity = default_fidelity or high_name

    @property
    def levels(self) -> tuple[str, str]:
        """The fidelity names, cheapest first."""
        return (self.low_name, self.high_name)

    def low_cost(self, index: int) -> float:
        s = resolve_settings(self.low, self.evaluator.n_train)
        frac = (s["train_images"] or self.evaluator.n_train) / self.evaluator.n_train
        return s["epochs"] * frac * self.table.seconds_per_epoch(self.dataset, index) * self.time_ratio

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        arch = suggest_architecture(trial)
        index = arch.index
        level = fidelity_of(trial, default=self.default_fidelity)
        trial.set_user_attr("arch_str", arch.arch_str)
        trial.set_user_attr("nb201_index", index)
        trial.set_user_attr("test_acc_200ep", self.table.test_acc(self.dataset, index, 200))
        if level == self.high_name:
            value = self.table.val_acc(self.dataset, index, 12)
            trial.set_user_attr("val_acc_12ep", value)
            trial.set_user_attr(COST_ATTR, 12 * self.table.seconds_per_epoch(self.dataset, index))
            trial.report(value, 12)
            return float(value)
        if level != self.low_name:
            raise ValueError(f"trial {trial.number}: unknown fidelity {level!r}; "
                             f"levels are {[self.low_name, self.high_name]}.")
        try:
            out = self.evaluator.train_and_score(arch.arch_str, self.low, self.seed)
        except DivergenceError as exc:
            trial.set_user_attr(COST_ATTR, self.low_cost(index))
            trial.set_user_attr("fail_reason", str(exc))
            return math.nan
        trial.set_user_attr(COST_ATTR, self.low_cost(index))
        trial.set_user_attr("wall_seconds", out["seconds"])
        trial.set_user_attr("cached", bool(out["cached"]))
        trial.set_user_attr("kd_loss", resolve_settings(self.low, 1)["kd_loss"])
        trial.report(out["value"], 1)
        return float(out["value"])
