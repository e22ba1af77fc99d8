"""Datasets for NB201 training, held in memory as uint8 tensors, and a batched device loader.

Sources read by :func:`load_split`:

- ``cifar10``: a zip of an ImageFolder tree (``<top>/train/<class>/*.jpg`` and
  ``<top>/test/<class>/*.jpg``, as ``cifar10-jpeg.zip``), such a tree unpacked on disk, or
  torchvision's ``CIFAR10`` binary files (``cifar-10-batches-py`` under the root; downloaded
  with ``download=True`` where the machine is online).
- ``cifar100``: torchvision's ``CIFAR100`` files (``cifar-100-python`` under the root).
- ``imagenet16`` (ImageNet16-120): NB201's pickles (``train_data_batch_1`` .. ``_10`` and
  ``val_data``, each a dict with ``data`` (N, 3*16*16) uint8 and 1-based ``labels``); classes
  1..120 kept.

Dataset names are those of :mod:`optuna_mfkd.datasets` (aliases such as ``cifar10-valid`` or
``imagenet16-120`` are accepted). Decoded splits are cached as ``.npz`` under ``$MFKD_CACHE``
(default ``~/.cache/optuna-mfkd``), keyed by the source's path, size and modification time (for a
folder, the folder's own; pass ``use_cache=False`` after editing a tree in place).
``download=True`` lets torchvision fetch CIFAR-10/100 into ``root`` where the machine is online.

NB201 splits: ``cifar10-valid`` halves the 50k training images into 25k train / 25k valid
with a seeded shuffle (:func:`nb201_valid_split`); the test split is held out. Cheaper
fidelities use seeded subsets (:func:`seeded_subset`).

:class:`DeviceLoader` keeps the uint8 images on the training device and does random crop
(zero padding), horizontal flip and normalisation on whole batches there.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optuna_mfkd.datasets import canonical_dataset, dataset_info

#: NB201 normalisation (CIFAR-10 and CIFAR-100 use the same values in NB201).
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
IMAGENET16_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
IMAGENET16_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)

#: Environment variable naming each dataset's location.
ROOT_ENV = {"cifar10": "MFKD_CIFAR10", "cifar100": "MFKD_CIFAR100", "imagenet16": "MFKD_IMAGENET16"}

_FORMATS = {
    "cifar10": "a zip of an ImageFolder tree (train/<class>/*.jpg, test/<class>/*.jpg), "
    "that tree unpacked, or torchvision's cifar-10-batches-py folder",
    "cifar100": "torchvision's cifar-100-python folder (or its parent)",
    "imagenet16": "NB201's ImageNet16 pickles train_data_batch_1..10 and val_data",
}


@dataclass
class ArrayDataset:
    """Images (N, 3, H, W) uint8 and labels (N,) int64, with the normalisation to apply."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ArrayDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ArrayDataset(self.images[idx], self.labels[idx], self.num_classes, self.mean, self.std)

    def to(self, device: torch.device | str) -> ArrayDataset:
        return ArrayDataset(
            self.images.to(device), self.labels.to(device), self.num_classes, self.mean, self.std
        )


def cache_dir() -> Path:
    """``$MFKD_CACHE`` or ``~/.cache/optuna-mfkd``."""
    return Path(os.environ.get("MFKD_CACHE", Path.home() / ".cache" / "optuna-mfkd"))


def _source_key(path: Path, *extra: str) -> str:
    st = path.stat()
    raw = "|".join([str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), *extra])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _image_folder_files(names: Sequence[str], split: str) -> list[tuple[str, str]]:
    """(class name, file name) pairs of ``<...>/<split>/<class>/<file>`` image entries."""
    out = []
    for name in names:
        parts = name.strip("/").split("/")
        if len(parts) >= 3 and parts[-3] == split and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
            out.append((parts[-2], name))
    return sorted(out, key=lambda p: (p[0], p[1]))


def _read_image(read, name: str, source: Path) -> np.ndarray:
    """One decoded image; a damaged zip entry or image file is a ValueError naming both."""
    try:
        return _decode(read(name))
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:  # PIL's errors are OSErrors
        raise ValueError(f"{source}: cannot read image {name!r} ({type(exc).__name__}: {exc}).") from exc


def _stack(files: list[tuple[str, str]], read, source: Path) -> tuple[np.ndarray, np.ndarray, int]:
    classes = sorted({c for c, _ in files})
    cls_index = {c: i for i, c in enumerate(classes)}
    decoded = [_read_image(read, name, source) for _, name in files]
    shapes = {a.shape for a in decoded}
    if len(shapes) != 1:
        raise ValueError(f"{source}: images must be RGB of equal size, got sizes {sorted(shapes)[:4]}.")
    images = np.stack(decoded)
    labels = np.array([cls_index[c] for c, _ in files], dtype=np.int64)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"{source}: images must be RGB of equal size, got array {images.shape}.")
    return images.transpose(0, 3, 1, 2).copy(), labels, len(classes)


def _read_image_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise ValueError(f"{root} is not a zip file; expected {_FORMATS['cifar10']}.")
        try:
            zf = zipfile.ZipFile(root)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{root} is a damaged zip file ({exc}); expected {_FORMATS['cifar10']}.") from exc
        with zf:
            files = _image_folder_files(zf.namelist(), split)
            if not files:
                raise ValueError(
                    f"{root}: no '{split}/<class>/<image>' entries; expected {_FORMATS['cifar10']}."
                )
            return _stack(files, zf.read, root)
    split_dirs = [p for p in root.rglob(split) if p.is_dir()]
    files = []
    for d in split_dirs[:1]:
        files = _image_folder_files([str(p.relative_to(root)) for p in d.rglob("*") if p.is_file()], split)
    if not files:
        raise ValueError(f"{root}: no '{split}/<class>/<image>' files; expected {_FORMATS['cifar10']}.")
    return _stack(files, lambda n: (root / n).read_bytes(), root)


def _read_torchvision(name: str, root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray, int]:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise ValueError(f"{root}: {exc} (expected {_FORMATS[name]}; download=True fetches it).") from exc
    except (pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"{root}: damaged {name} files ({type(exc).__name__}: {exc}).") from exc
    images = np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2).copy()
    return images, np.asarray(ds.targets, dtype=np.int64), len(ds.classes)


def _read_imagenet16(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    num_classes = dataset_info("imagenet16").num_classes  # NB201 keeps classes 1..120
    names = [f"train_data_batch_{i}" for i in range(1, 11)] if split == "train" else ["val_data"]
    datas, labels = [], []
    for fname in names:
        path = root / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; expected {_FORMATS['imagenet16']} in {root}.")
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        datas.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16))
        labels.append(np.asarray(entry["labels"], dtype=np.int64))
    x, y = np.concatenate(datas), np.concatenate(labels)
    keep = (y >= 1) & (y <= num_classes)
    return x[keep], y[keep] - 1, num_classes


def _normalisation(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    if name == "cifar10":
        return CIFAR_MEAN, CIFAR_STD
    if name == "cifar100":
        return CIFAR100_MEAN, CIFAR100_STD
    return IMAGENET16_MEAN, IMAGENET16_STD


def load_split(
    name: str,
    root: str | os.PathLike | None,
    split: str = "train",
    *,
    download: bool = False,
    use_cache: bool = True,
) -> ArrayDataset:
    """A whole split (``"train"`` or ``"test"``) of dataset ``name`` as uint8 tensors.

    ``root`` may also come from ``$MFKD_CIFAR10`` (cifar10), ``$MFKD_CIFAR100`` or
    ``$MFKD_IMAGENET16``.

    Raises:
        ValueError: unknown dataset or split, an empty path, or a file that is not in an
            accepted format or is damaged (the message names the file).
        FileNotFoundError: ``root`` does not exist.
    """
    name = canonical_dataset(name)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if root is None:
        env = ROOT_ENV[name]
        root = os.environ.get(env)
        if root is None:
            raise FileNotFoundError(f"no data root given for {name} and ${env} is not set.")
        if not root.strip():
            raise ValueError(f"${env} is set but empty; set it to the {name} data ({_FORMATS[name]}).")
    elif not str(root).strip():
        raise ValueError(f"the {name} data root is an empty path; expected {_FORMATS[name]}.")
    path = Path(root).expanduser()
    if download and name != "imagenet16" and not path.exists():
        path.mkdir(parents=True)
        use_cache = False
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist; {name} accepts {_FORMATS[name]}.")
    mean, std = _normalisation(name)

    cache_file = None
    if use_cache:
        cache_file = cache_dir() / f"{name}-{split}-{_source_key(path, split)}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as z:
                return ArrayDataset(
                    torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]),
                    int(z["num_classes"]), mean, std,
                )

    if name == "imagenet16":
        x, y, k = _read_imagenet16(path, split)
    elif name == "cifar100":
        if not path.is_dir():
            raise ValueError(f"{path}: {name} accepts {_FORMATS[name]}.")
        x, y, k = _read_torchvision(name, path.parent if path.name == "cifar-100-python" else path, split, download)
    elif path.is_dir() and (download or path.name == "cifar-10-batches-py"
                            or (path / "cifar-10-batches-py").is_dir()):
        x, y, k = _read_torchvision(name, path.parent if path.name == "cifar-10-batches-py" else path, split, download)
    else:
        x, y, k = _read_image_folder(path, split)

    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=x, labels=y, num_classes=np.int64(k))
        os.replace(tmp, cache_file)
    return ArrayDataset(torch.from_numpy(x), torch.from_numpy(y), k, mean, std)


def nb201_valid_split(n: int = 50_000, seed: int = 1021) -> tuple[list[int], list[int]]:
    """NB201's cifar10-valid split: shuffle ``range(n)`` with ``random.seed(seed)``; the first
    half (sorted) trains, the rest (sorted) validates.

    With the official binary files and seed 1021 these are NB201's own indices; for other
    file orders (e.g. the JPEG zip) it is a seeded split of the same sizes.
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    half = n // 2
    return sorted(order[:half]), sorted(order[half:])


def seeded_subset(indices: Sequence[int], size: int | None, seed: int) -> list[int]:
    """``size`` indices drawn without replacement from ``indices`` (all when ``size`` is None)."""
    indices = list(indices)
    if size is None or size >= len(indices):
        return indices
    if size < 1:
        raise ValueError(f"subset size must be positive, got {size}.")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(indices), generator=gen)[:size].sort().values
    return [indices[i] for i in pick.tolist()]


class DeviceLoader:
    """Batches of normalised float images from uint8 tensors, augmented on the device.

    Each epoch draws a permutation from a generator seeded with ``seed + epoch``; crop
    offsets and flips come from the same generator, so epoch ``e`` yields the same batches
    on every run (which lets teacher outputs be cached per batch).

    Augmentation (``augment=True``): zero-pad by ``padding``, crop back to H x W at a random
    offset, flip horizontally with probability 1/2 — NB201's RandomCrop + RandomHorizontalFlip.
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = True,
        padding: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.device = torch.device(device) if device is not None else data.images.device
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        h = self.images.shape[-1]
        self.padding = padding if padding is not None else (4 if h >= 32 else 2)
        self.seed = int(seed)
        self.channels_last = channels_last
        self.dtype = dtype
        mean = torch.tensor(data.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(data.std, device=self.device).view(1, 3, 1, 1)
        # x_norm = (x/255 - mean)/std = x * scale + shift
        self.scale = (1.0 / (255.0 * std)).to(dtype)
        self.shift = (-mean / std).to(dtype)
        self.epoch = 0

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.padding
        offs = torch.randint(0, 2 * p + 1, (2, b), generator=gen).to(self.device)
        flips = (torch.rand(b, generator=gen) < 0.5).to(self.device)
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        rows = offs[0].view(b, 1) + torch.arange(h, device=self.device).view(1, h)  # (B, H)
        cols = offs[1].view(b, 1) + torch.arange(w, device=self.device).view(1, w)  # (B, W)
        cols = torch.where(flips.view(b, 1), cols.flip(1), cols)
        bi = torch.arange(b, device=self.device).view(b, 1, 1)
        out = xp.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        n = int(self.labels.shape[0])
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images.index_select(0, idx)
            if self.augment:
                x = self._augment(x, gen)
            x = x.to(self.dtype) * self.scale + self.shift
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            yield x, self.labels.index_select(0, idx)
