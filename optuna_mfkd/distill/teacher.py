"""Teachers for distillation: find, load and save checkpoints.

A checkpoint is a ``torch.save`` dict with ``arch_str``, ``num_classes`` and ``state_dict``
(xautodl ``TinyNetwork`` parameter names), as the NB201 ResNet-cell teachers in
``$MFKD_TEACHERS`` (``nb201-resnet-cifar10-valid.pth``, ``nb201-resnet-cifar100.pth``). A bare
state dict loads too when ``arch`` is given.

Training and fine-tuning a teacher is training: see
:mod:`optuna_mfkd.training.teacher_training` (which writes checkpoints with :func:`save_teacher`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from optuna_mfkd.datasets import REGISTRY, canonical_dataset
from optuna_mfkd.nasbench201.network import NB201Network, build_network

#: The ResNet-like cell (NB201 index 11472), the teacher architecture of MF-KD.
RESNET_ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
#: Canonical dataset name -> file of its shared teacher, named after NB201's training run
#: (``nb201-resnet-cifar10-valid.pth``, ``nb201-resnet-cifar100.pth``, ...).
TEACHER_FILES: dict[str, str] = {
    name: f"nb201-resnet-{info.nb201_valid.lower()}.pth" for name, info in REGISTRY.items()
}


def default_teacher_path(dataset: str, teachers_dir: str | os.PathLike | None = None) -> Path:
    """``$MFKD_TEACHERS/<TEACHER_FILES[dataset]>`` (the shared NB201 ResNet-cell teachers).

    ``dataset`` is any name :func:`optuna_mfkd.datasets.canonical_dataset` accepts.
    """
    name = TEACHER_FILES[canonical_dataset(dataset)]
    folder = teachers_dir or os.environ.get("MFKD_TEACHERS")
    if folder is None:
        raise FileNotFoundError(
            f"no teacher given for {dataset!r} and $MFKD_TEACHERS is not set "
            f"(point it at a folder of NB201 teacher checkpoints such as {name})."
        )
    return Path(folder) / name


def load_teacher(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> NB201Network:
    """The teacher network of checkpoint ``path``, loaded with ``strict=True``, in eval mode.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a checkpoint of an NB201 network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} not found.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise ValueError(
            f"{path} is not a readable torch checkpoint (expected a dict with 'arch_str', "
            f"'num_classes' and an xautodl TinyNetwork 'state_dict'): {exc}"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        state = obj["state_dict"]
        arch = arch or obj.get("arch_str")
        num_classes = num_classes or obj.get("num_classes")
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise ValueError(f"{path}: expected a dict with a 'state_dict' entry or a bare state dict.")
    if arch is None:
        raise ValueError(f"{path}: the checkpoint names no 'arch_str'; pass arch=.")
    if num_classes is None:
        weight = state.get("classifier.weight")
        if weight is None:
            raise ValueError(f"{path}: cannot tell the number of classes; pass num_classes=.")
        num_classes = int(weight.shape[0])
    net = build_network(arch, int(num_classes))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the NB201 network of {arch}: {exc}") from exc
    return net.to(device).eval()


def save_teacher(net: NB201Network, path: str | os.PathLike, **meta) -> Path:
    """Write ``net`` as a teacher checkpoint (same format as the shared teachers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    obj = {"format": "xautodl TinyNetwork state_dict", "arch_str": net.arch, "C": 16, "N": 5,
           "num_classes": net.num_classes, "state_dict": state, **meta}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
