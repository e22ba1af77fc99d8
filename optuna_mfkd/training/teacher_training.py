"""Train or fine-tune a distillation teacher with the NB201 recipe, and its command line.

Trained and fine-tuned teachers are written in the checkpoint format of
:mod:`optuna_mfkd.distill.teacher`; :func:`fine_tune_teacher` caches its result under
``$MFKD_CACHE/teachers`` keyed by the source checkpoint, the data and the settings, so a second
call loads it.

Command line (also ``optuna-mfkd teacher ...``)::

    python -m optuna_mfkd.training.teacher_training load PATH [--data ZIP --eval-images 2000]
    python -m optuna_mfkd.training.teacher_training train --data ZIP --out PATH [--epochs 200]
    python -m optuna_mfkd.training.teacher_training finetune PATH --data ZIP [--epochs 1 --lr 0.01]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from optuna_mfkd.distill.teacher import RESNET_ARCH, load_teacher, save_teacher
from optuna_mfkd.nasbench201.network import NB201Network, build_network
from optuna_mfkd.training.data import cache_dir, load_split, seeded_subset
from optuna_mfkd.training.trainer import TrainConfig, accuracy, train

#: NB201's long schedule, the one its teachers were trained with.
TEACHER_EPOCHS = 200
#: Fine-tuning defaults: one epoch, cosine learning rate from 0.01.
FINE_TUNE_EPOCHS = 1
FINE_TUNE_LR = 0.01


def train_teacher(train_data, eval_data=None, *, arch: str = RESNET_ARCH,
                  epochs: int = TEACHER_EPOCHS, lr: float = TrainConfig.lr,
                  out: str | os.PathLike | None = None, seed: int = 777, device=None,
                  batch_size: int = TrainConfig.batch_size) -> NB201Network:
    """Train ``arch`` with the NB201 recipe (cross-entropy) and optionally save it to ``out``."""
    net = build_network(arch, train_data.num_classes)
    cfg = TrainConfig(epochs=epochs, lr=lr, loss="ce", seed=seed, device=device, batch_size=batch_size)
    result = train(arch, train_data, eval_data, cfg, model=net)
    if out is not None:
        save_teacher(net, out, train_config=cfg.as_dict(), final_accuracy={"eval": result.val_acc})
    return net.eval()


def fine_tune_teacher(
    path: str | os.PathLike,
    train_data,
    *,
    epochs: int = FINE_TUNE_EPOCHS,
    lr: float = FINE_TUNE_LR,
    batch_size: int = TrainConfig.batch_size,
    seed: int = 0,
    device=None,
    cache: bool = True,
) -> NB201Network:
    """Short fine-tune of teacher ``path`` on ``train_data`` (cosine lr from ``lr``, CE).

    Closes a distribution shift such as JPEG re-encoding. With ``cache=True`` the result is
    stored under ``$MFKD_CACHE/teachers`` and reused by later calls with the same inputs.
    """
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
    """``python -m optuna_mfkd.training.teacher_training {load,train,finetune} ...``."""
    p = argparse.ArgumentParser(prog="optuna-mfkd teacher", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{load,train,finetune}")
    helps = {
        "load": "load a teacher checkpoint and report its accuracy on test images (with --data)",
        "train": "train a teacher from scratch with the NB201 recipe",
        "finetune": "fine-tune a teacher checkpoint on a dataset",
    }
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        if name != "train":
            s.add_argument("path", help="the teacher checkpoint (.pth)")
        s.add_argument("--dataset", default="cifar10", help="dataset name (default: cifar10)")
        s.add_argument("--data", default=None, help="dataset root (default: $MFKD_CIFAR10)")
        s.add_argument("--eval-images", type=int, default=2000, help="test images to measure accuracy on (default: 2000)")
        epochs = TEACHER_EPOCHS if name == "train" else FINE_TUNE_EPOCHS
        s.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
        lr = TrainConfig.lr if name == "train" else FINE_TUNE_LR
        s.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
        s.add_argument("--out", default=None, help="where to save the trained teacher (.pth)")
        s.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    a = p.parse_args(argv)
    test = load_split(a.dataset, a.data, "test") if (a.data or a.cmd != "load") else None
    if test is not None:
        test = test.subset(seeded_subset(range(len(test)), a.eval_images, 0))
    if a.cmd == "load":
        net = load_teacher(a.path)
    elif a.cmd == "train":
        net = train_teacher(load_split(a.dataset, a.data, "train"), test, epochs=a.epochs,
                            lr=a.lr, out=a.out, device=a.device)
    else:
        net = fine_tune_teacher(a.path, load_split(a.dataset, a.data, "train"), epochs=a.epochs,
                                lr=a.lr, device=a.device)
        if a.out:
            save_teacher(net, a.out, fine_tuned_from=a.path)
    print(f"teacher {net.arch} ({net.num_classes} classes)")
    if test is not None:
        print(f"accuracy on {len(test)} test images: {accuracy(net, test):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
