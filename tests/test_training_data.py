"""Datasets, splits and the on-device loader, on tiny synthetic data."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optuna_mfkd.training.data import (
    ArrayDataset,
    DeviceLoader,
    load_split,
    nb201_valid_split,
    seeded_subset,
)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def tiny_zip(tmp_path):
    """An ImageFolder zip: 2 classes x 3 images per split, lossless PNG, known pixels."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.zip"
    images = {}
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for cls in ("bird", "ant"):  # sorted: ant = 0, bird = 1
                for i in range(3):
                    arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                    name = f"tiny/{split}/{cls}/{i:04d}.png"
                    zf.writestr(name, _png(arr))
                    images[name] = arr
    return path, images


def test_zip_image_folder_roundtrip_and_cache(tiny_zip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    path, images = tiny_zip
    ds = load_split("cifar10", path, "train")
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (6, 3, 8, 8)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.num_classes == 2
    want = images["tiny/train/ant/0001.png"].transpose(2, 0, 1)
    assert np.array_equal(ds.images[1].numpy(), want)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_split("cifar10", path, "train")  # from the cache
    assert torch.equal(again.images, ds.images)
    test = load_split("cifar10", path, "test")
    assert not torch.equal(test.images, ds.images)


def test_unpacked_folder(tiny_zip, tmp_path) -> None:
    path, _ = tiny_zip
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "tree")
    a = load_split("cifar10", tmp_path / "tree", "test", use_cache=False)
    b = load_split("cifar10", path, "test", use_cache=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_bad_dataset_paths(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split("cifar10", tmp_path / "nowhere", "train")
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="junk.zip.*ImageFolder"):
        load_split("cifar10", junk, "train", use_cache=False)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match="empty.zip"):
        load_split("cifar10", empty, "train", use_cache=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split("mnist", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="train_data_batch_1"):
        load_split("imagenet16-120", tmp_path, "train", use_cache=False)


def test_damaged_data_and_empty_paths_are_named(tiny_zip, tmp_path, monkeypatch) -> None:
    path, _ = tiny_zip
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"\x89PNG garbage" if name == "tiny/train/ant/0001.png" else src.read(name))
    with pytest.raises(ValueError, match=r"damaged.zip: cannot read image 'tiny/train/ant/0001.png'"):
        load_split("cifar10", damaged, "train", use_cache=False)
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(mixed, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("tiny/train/ant/big.png", _png(np.zeros((9, 9, 3), dtype=np.uint8)))
    with pytest.raises(ValueError, match="mixed.zip: images must be RGB of equal size"):
        load_split("cifar10", mixed, "train", use_cache=False)
    with pytest.raises(ValueError, match="empty path"):
        load_split("cifar10", "", "train")
    monkeypatch.setenv("MFKD_CIFAR10", " ")
    with pytest.raises(ValueError, match="MFKD_CIFAR10 is set but empty"):
        load_split("cifar10", None, "train")


def test_imagenet16_pickles(tmp_path) -> None:
    import pickle

    rng = np.random.default_rng(0)
    for i in range(1, 11):
        data = rng.integers(0, 256, (4, 3 * 16 * 16), dtype=np.uint8)
        with open(tmp_path / f"train_data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": [1, 120, 121, 1000]}, f)
    ds = load_split("imagenet16-120", tmp_path, "train", use_cache=False)
    assert len(ds) == 20 and ds.labels.tolist()[:2] == [0, 119] and ds.num_classes == 120
    assert tuple(ds.images.shape[1:]) == (3, 16, 16)


def test_splits_and_subsets() -> None:
    tr, va = nb201_valid_split(100, seed=1021)
    assert len(tr) == len(va) == 50 and not set(tr) & set(va) and sorted(tr + va) == list(range(100))
    assert (tr, va) == nb201_valid_split(100, seed=1021)
    assert tr != nb201_valid_split(100, seed=1)[0]
    sub = seeded_subset(tr, 10, seed=3)
    assert len(sub) == 10 and set(sub) <= set(tr) and sub == seeded_subset(tr, 10, seed=3)
    assert seeded_subset(tr, None, seed=3) == tr


def _data(n=10, h=8) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, h, h), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n) % 3, 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def test_loader_normalises_without_augmentation() -> None:
    data = _data()
    xs, ys = zip(*DeviceLoader(data, 4, shuffle=False, augment=False), strict=True)
    assert [len(y) for y in ys] == [4, 4, 2]
    x = torch.cat(xs)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (data.images.float() / 255 - mean) / std)


def test_loader_crop_and_flip_match_per_image_transforms() -> None:
    """Batched crop+flip equals padding, slicing and flipping each image with the same draws."""
    data = _data(n=6, h=8)
    loader = DeviceLoader(data, 6, seed=5, padding=2)
    loader.set_epoch(1)
    x, y = next(iter(loader))
    gen = torch.Generator().manual_seed(5 + 1_000_003 * 1)
    order = torch.randperm(6, generator=gen)
    offs = torch.randint(0, 5, (2, 6), generator=gen)
    flips = torch.rand(6, generator=gen) < 0.5
    mean = torch.tensor(data.mean).view(3, 1, 1)
    std = torch.tensor(data.std).view(3, 1, 1)
    for b in range(6):
        img = F.pad(data.images[order[b]].float(), (2, 2, 2, 2))
        crop = img[:, offs[0, b] : offs[0, b] + 8, offs[1, b] : offs[1, b] + 8]
        if flips[b]:
            crop = crop.flip(2)
        torch.testing.assert_close(x[b], (crop / 255 - mean) / std)
    assert torch.equal(y, data.labels[order])
    # Same seed and epoch -> the same batches; another epoch -> other batches.
    assert torch.equal(next(iter(loader))[0], x)
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))[0], x)
