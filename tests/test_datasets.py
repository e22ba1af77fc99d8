"""The dataset registry: one canonical name per dataset, the same aliases in every part."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_mfkd.datasets import DATASETS, REGISTRY, canonical_dataset, dataset_info

ALIASES = {
    "cifar10": ["cifar10", "CIFAR10", "cifar10-valid", "cifar10_valid"],
    "cifar100": ["cifar100", "CIFAR100"],
    "imagenet16": ["imagenet16", "ImageNet16-120", "imagenet16_120", "imagenet"],
}


def test_canonical_names_and_aliases() -> None:
    assert DATASETS == ("cifar10", "cifar100", "imagenet16")
    for name, spellings in ALIASES.items():
        for spelling in spellings:
            assert canonical_dataset(spelling) == name
        assert dataset_info(spellings[-1]) is REGISTRY[name]
    assert [REGISTRY[d].num_classes for d in DATASETS] == [10, 100, 120]
    with pytest.raises(ValueError, match="'mnist'.*cifar10"):
        canonical_dataset("mnist")


def test_teacher_files_follow_the_registry(tmp_path: Path) -> None:
    from optuna_mfkd.distill.teacher import default_teacher_path

    expected = {"cifar10": "nb201-resnet-cifar10-valid.pth", "cifar100": "nb201-resnet-cifar100.pth",
                "imagenet16": "nb201-resnet-imagenet16-120.pth"}
    for name, spellings in ALIASES.items():
        for spelling in spellings:
            assert default_teacher_path(spelling, tmp_path) == tmp_path / expected[name]
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        default_teacher_path("svhn", tmp_path)


def test_training_data_accepts_every_alias(tmp_path: Path) -> None:
    from optuna_mfkd.training.data import load_split

    # No data under tmp_path: the error names the canonical dataset's expected files, so the
    # alias was resolved before the files were looked for.
    for spelling in ALIASES["imagenet16"]:
        with pytest.raises(FileNotFoundError, match="train_data_batch_1"):
            load_split(spelling, tmp_path, "train", use_cache=False)


def test_table_accepts_every_alias(nb201_table_path: Path) -> None:
    from optuna_mfkd.nasbench201.table import load_table

    table = load_table(nb201_table_path)
    for name, spellings in ALIASES.items():
        want = table.val_acc(name, 123, 12)
        assert all(table.val_acc(s, 123, 12) == want for s in spellings)
