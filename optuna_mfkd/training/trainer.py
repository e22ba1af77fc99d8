"""The NB201 training loop, with an optional distillation loss.

Recipe (NB201): SGD, Nesterov momentum 0.9, lr 0.1 decayed to 0 by a cosine over all
iterations (stepped per batch), weight decay 5e-4, batch 256, random crop + flip. The loss is

    ce:   CE(y, s)
    kd:   (1 - lam) CE(y, s) + lam tau^2 KL(softmax(t / tau) || softmax(s / tau))
    nst:  CE(y, s) + beta * sum_l MMD^2(F_T^l, F_S^l)      (``distill.losses.nst_loss``)

Device: CUDA when present (bf16 autocast, channels_last), else CPU (channels_last).
The teacher runs in eval mode under ``no_grad`` once per batch; with a
:class:`TeacherOutputCache` its outputs for the loader's fixed augmented batches are kept and
reused by later trainings on the same data, so those pay only for the student.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from optuna_mfkd.distill.losses import (
    KD_LAMBDA,
    KD_TAU,
    NST_BETA,
    NST_C,
    NST_DEGREE,
    TeacherTargets,
    ce_loss,
    hinton_kd_loss,
    keep_grad_layout,
    nst_loss_from_targets,
    random_channel_subsets,
    teacher_targets,
)
from optuna_mfkd.nasbench201.network import DEFAULT_DISTILL_LAYERS, build_network
from optuna_mfkd.training.data import ArrayDataset, DeviceLoader

LOSSES = ("ce", "kd", "nst")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Settings of one training run (defaults: NB201's recipe with cross-entropy).

    These are the package's training defaults:
    :data:`optuna_mfkd.training.objectives.DEFAULT_SETTINGS` and
    :mod:`optuna_mfkd.training.teacher_training` take theirs from here, and the loss weights
    come from :mod:`optuna_mfkd.distill.losses`.
    """

    epochs: int = 1
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    loss: str = "ce"
    #: NST: weight beta, kernel (a.b + c)^degree, distilled layers (indices into ``cells``),
    #: fraction of channels kept per layer (1.0 = exact NST, < 1 the eq. 7-8 subset).
    nst_beta: float = NST_BETA
    nst_c: float = NST_C
    nst_degree: int = NST_DEGREE
    nst_layers: tuple[int, ...] = DEFAULT_DISTILL_LAYERS
    nst_channel_fraction: float = 1.0
    #: Hinton KD temperature and weight.
    kd_tau: float = KD_TAU
    kd_lambda: float = KD_LAMBDA
    seed: int = 0
    device: str | None = None
    channels_last: bool = True
    eval_batch_size: int = 500
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}.")
        self.nst_layers = tuple(int(i) for i in self.nst_layers)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run produced."""

    val_acc: float  # % correct on the evaluation data after the last epoch
    seconds: float  # wall time of training + evaluation
    train_seconds: float
    images_per_second: float  # training images per wall second (student steps)
    cpu_seconds: float = math.nan  # process CPU time of training (all threads), a load-independent cost
    epoch_acc: list[float] = field(default_factory=list)
    final_loss: float = math.nan


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TeacherOutputCache:
    """Teacher logits and NST targets per (epoch, batch) of a deterministic loader.

    Valid only for loaders that yield the same batches each time (same data, batch size,
    seed), which :class:`DeviceLoader` does; :meth:`check` clears the cache when asked for a
    different key. NST targets (normalised teacher rows, float16, and the teacher-teacher
    term) are stored for the configuration's layers, channel subsets and kernel.
    """

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float16) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.key: tuple | None = None
        self._store: dict[tuple[int, int], tuple[torch.Tensor, list[TeacherTargets]]] = {}

    def check(self, key: tuple) -> None:
        if self.key != key:
            self._store.clear()
            self.key = key

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, list[TeacherTargets]] | None:
        return self._store.get((epoch, step))

    def put(self, epoch: int, step: int, logits: torch.Tensor, targets: list[TeacherTargets]) -> None:
        self._store[(epoch, step)] = (
            logits.float().to(self.device),
            [t.to(self.device, self.dtype) for t in targets],
        )

    def __len__(self) -> int:
        return len(self._store)


@torch.no_grad()
def accuracy(model: nn.Module, data: ArrayDataset, *, batch_size: int = 500,
             device: torch.device | None = None, channels_last: bool = True) -> float:
    """Top-1 accuracy (%) of ``model`` on ``data`` (no augmentation, eval mode)."""
    device = device or next(model.parameters()).device
    loader = DeviceLoader(data, batch_size, shuffle=False, augment=False, device=device,
                          channels_last=channels_last)
    was_training = model.training
    model.eval()
    correct = 0
    use_amp = device.type == "cuda"
    for x, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return 100.0 * correct / max(1, len(data))


def train(
    arch: str,
    train_data: ArrayDataset,
    eval_data: ArrayDataset | None,
    config: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    teacher_cache: TeacherOutputCache | None = None,
    teacher_key: str = "teacher",
    on_epoch_end: Callable[[int, float], None] | None = None,
    model: nn.Module | None = None,
) -> TrainResult:
    """Train the NB201 network of ``arch`` on ``train_data`` and evaluate on ``eval_data``.

    ``on_epoch_end(epoch, val_acc)`` runs after every epoch (``epoch`` counts from 1); it may
    raise (e.g. ``optuna.TrialPruned``) to stop. A NaN or infinite loss raises
    :class:`DivergenceError`.
    """
    device = pick_device(config.device)
    if config.loss != "ce" and teacher is None:
        raise ValueError(f"loss {config.loss!r} needs a teacher network.")
    torch.manual_seed(config.seed)
    if model is None:
        model = build_network(arch, train_data.num_classes)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    if teacher is not None and config.loss != "ce":
        teacher = teacher.to(device, memory_format=memory_format).eval()
    use_amp = device.type == "cuda"

    loader = DeviceLoader(train_data, config.batch_size, seed=config.seed, device=device,
                          channels_last=config.channels_last)
    steps = config.epochs * len(loader)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)

    # The teacher side (logits + NST targets for the configured layers) is computed for KD too,
    # so KD and NST runs on the same data share a TeacherOutputCache.
    layers = config.nst_layers if config.loss == "nst" else ()
    teacher_layers = config.nst_layers if teacher_cache is not None else layers
    subsets = None
    if config.nst_channel_fraction < 1.0 and teacher_layers:
        subsets = random_channel_subsets(layer_widths(model, teacher_layers),
                                         config.nst_channel_fraction, seed=config.seed)
    if teacher_cache is not None and config.loss != "ce":
        teacher_cache.check((teacher_key, len(train_data), int(train_data.labels.sum()),
                             int(train_data.images[:, 0, 0, 0].long().sum()), config.batch_size,
                             config.seed, tuple(teacher_layers), config.nst_channel_fraction,
                             config.nst_c, config.nst_degree))

    def select(feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if subsets is None:
            return feats
        return [keep_grad_layout(f).index_select(1, idx.to(f.device))
                for f, idx in zip(feats, subsets, strict=True)]

    epoch_acc: list[float] = []
    train_seconds = 0.0
    cpu_seconds = 0.0
    t_start = time.perf_counter()
    last_loss = math.nan
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        c0 = time.process_time()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=None if config.progress is None else not config.progress)
        for step, (x, y) in enumerate(bar):
            t_logits, targets = None, []
            if config.loss != "ce":
                hit = teacher_cache.get(epoch, step) if teacher_cache is not None else None
                if hit is None:
                    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        t_logits, t_feats = teacher.forward_features(x, teacher_layers)
                    targets = teacher_targets(select(t_feats), c=config.nst_c, degree=config.nst_degree)
                    if teacher_cache is not None:
                        teacher_cache.put(epoch, step, t_logits, targets)
                else:
                    t_logits, targets = hit
                    if t_logits.device != device:
                        t_logits = t_logits.to(device)
                        targets = [t.to(device) for t in targets]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits, s_feats = model.forward_features(x, layers)
                if config.loss == "ce":
                    loss = ce_loss(logits.float(), y)
                elif config.loss == "kd":
                    loss = hinton_kd_loss(logits.float(), t_logits.float(), y,
                                          tau=config.kd_tau, lam=config.kd_lambda)
                else:
                    mmd = nst_loss_from_targets(select(s_feats), targets, c=config.nst_c,
                                                degree=config.nst_degree)
                    loss = ce_loss(logits.float(), y) + config.nst_beta * mmd
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"training loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} "
                    f"(arch {arch}, loss {config.loss}, lr {config.lr})."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last_loss = float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        cpu_seconds += time.process_time() - c0
        acc = math.nan
        if eval_data is not None:
            acc = accuracy(model, eval_data, batch_size=config.eval_batch_size, device=device,
                           channels_last=config.channels_last)
        epoch_acc.append(acc)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, acc)
    seconds = time.perf_counter() - t_start
    n_images = config.epochs * len(train_data)
    return TrainResult(
        val_acc=epoch_acc[-1] if epoch_acc else math.nan,
        seconds=seconds,
        train_seconds=train_seconds,
        images_per_second=n_images / max(train_seconds, 1e-9),
        cpu_seconds=cpu_seconds,
        epoch_acc=epoch_acc,
        final_loss=last_loss,
    )


def _cell_width(model: nn.Module, index: int) -> int:
    """Channels of the output of ``model.cells[index]`` (C, 2C or 4C by stage)."""
    c = model.stem[0].out_channels
    return c if index < 5 else (2 * c if index < 11 else 4 * c)


def layer_widths(model: nn.Module, layers: Sequence[int]) -> list[int]:
    """Channels of the outputs of ``model.cells[i]`` for ``i`` in ``layers``."""
    return [_cell_width(model, i) for i in layers]
