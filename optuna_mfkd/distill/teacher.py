"""Teachers for distillation: load a checkpoint, train one with the NB201 recipe, fine-tune.

A checkpoint is a ``torch.save`` dict with ``arch_str``, ``num_classes`` and ``state_dict``
(xautodl ``TinyNetwork`` parameter names), as the NB201 ResNet-cell teachers in
``$MFKD_TEACHERS`` (``nb201-resnet-cifar10-valid.pth``, ``nb201-resnet-cifar100.pth``). A bare
state dict loads too when ``arch`` is given.

Trained and fine-tuned teachers are written in the same format; :func:`fine_tune_teacher`
caches its result under ``$MFKD_CACHE/teachers`` keyed by the source checkpoint, the data and
the settings, so a second call loads it.

Command line::

    python -m optuna_mfkd.distill.teacher load PATH [--data ZIP --eval-images 2000]
    python -m optuna_mfkd.distill.teacher train --data ZIP --out PATH [--epochs 200]
    python -m optuna_mfkd.distill.teacher finetune PATH --data ZIP [--epochs 1 --lr 0.01]
"""

from __future__ import annotations

import argparse
import hashlib
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


def train_teacher(train_data, eval_data=None, *, arch: str = RESNET_ARCH, epochs: int = 200,
                  out: str | os.PathLike | None = None, seed: int = 777, device=None,
                  batch_size: int = 256) -> NB201Network:
    """Train ``arch`` with the NB201 recipe (cross-entropy) and optionally save it to ``out``."""
    from optuna_mfkd.training.trainer import TrainConfig, train

    net = build_network(arch, train_data.num_classes)
    cfg = TrainConfig(epochs=epochs, loss="ce", seed=seed, device=device, batch_size=batch_size)
    result = train(arch, train_data, eval_data, cfg, model=net)
    if out is not None:
        save_teacher(net, out, train_config=cfg.as_dict(), final_accuracy={"eval": result.val_acc})
    return net.eval()


def fine_tune_teacher(
    path: str | os.PathLike,
    train_data,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 256,
    seed: int = 0,
    device=None,
    cache: bool = True,
) -> NB201Network:
    """Short fine-tune of teacher ``path`` on ``train_data`` (cosine lr from ``lr``, CE).

    Closes a distribution shift such as JPEG re-encoding. With ``cache=True`` the result is
    stored under ``$MFKD_CACHE/teachers`` and reused by later calls with the same inputs.
    """
    from optuna_mfkd.training.data import cache_dir
    from optuna_mfkd.training.trainer import TrainConfig, train

    path = Path(path)
    st = path.stat()
    digest = hashlib.sha1(
        repr((str(path.resolve()), st.st_size, st.st_mtime_ns, len(train_data),
              int(train_data.labels.sum()), int(train_data.images[:, :, 0, 0].long().sum()),
              epochs, lr, batch_size, seed)).encode()
    ).hexdigest()[:16]
    out = cache_dir() / "teachers" / f"{path.stem}-ft-{digest}.pth"
    if cache and out.is_file():
        return load_teacher(out, device=device or "cpu")
    net = load_teacher(path)
    cfg = TrainConfig(epochs=epochs, lr=lr, loss="ce", seed=seed, device=device, batch_size=batch_size)
    train(net.arch, train_data, None, cfg, model=net)
    if cache:
        save_teacher(net, out, fine_tuned_from=str(path), fine_tune=cfg.as_dict())
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m optuna_mfkd.distill.teacher {load,train,finetune} ...``."""
    from optuna_mfkd.training.data import load_split, seeded_subset
    from optuna_mfkd.training.trainer import evaluate

    p = argparse.ArgumentParser(prog="optuna-mfkd teacher", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("load", "train", "finetune"):
        s = sub.add_parser(name)
        if name != "train":
            s.add_argument("path")
        s.add_argument("--dataset", default="cifar10")
        s.add_argument("--data", default=None, help="dataset root (default: $MFKD_CIFAR10)")
        s.add_argument("--eval-images", type=int, default=2000)
        s.add_argument("--epochs", type=int, default=200 if name == "train" else 1)
        s.add_argument("--lr", type=float, default=0.1 if name == "train" else 0.01)
        s.add_argument("--out", default=None)
        s.add_argument("--device", default=None)
    a = p.parse_args(argv)
    test = load_split(a.dataset, a.data, "test") if (a.data or a.cmd != "load") else None
    if test is not None:
        test = test.subset(seeded_subset(range(len(test)), a.eval_images, 0))
    if a.cmd == "load":
        net = load_teacher(a.path)
    elif a.cmd == "train":
        net = train_teacher(load_split(a.dataset, a.data, "train"), test, epochs=a.epochs,
                            out=a.out, device=a.device)
    else:
        net = fine_tune_teacher(a.path, load_split(a.dataset, a.data, "train"), epochs=a.epochs,
                                lr=a.lr, device=a.device)
        if a.out:
            save_teacher(net, a.out, fine_tuned_from=a.path)
    print(f"teacher {net.arch} ({net.num_classes} classes)")
    if test is not None:
        print(f"accuracy on {len(test)} test images: {evaluate(net, test):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
