"""The NAS-Bench-201 datasets: one canonical name each, and the aliases every part accepts.

| canonical | title | classes | aliases | NB201 names (validation, test) |
| --- | --- | --- | --- | --- |
| ``cifar10`` | CIFAR-10 | 10 | ``cifar10-valid``, ``cifar10_valid`` | ``cifar10-valid``, ``cifar10`` |
| ``cifar100`` | CIFAR-100 | 100 | | ``cifar100``, ``cifar100`` |
| ``imagenet16`` | ImageNet16-120 | 120 | ``imagenet16-120``, ``imagenet16_120``, ``imagenet`` | ``ImageNet16-120`` (both) |

Names are matched case-insensitively. The table (:mod:`optuna_mfkd.nasbench201.table`), the
training data (:mod:`optuna_mfkd.training.data`), the teachers
(:mod:`optuna_mfkd.distill.teacher`), the benchmark harness and the command line all call
:func:`canonical_dataset`, so each part speaks of a dataset by the same name. NB201 trains its
CIFAR-10 validation values on the ``cifar10-valid`` split (25k/25k halves of the training
images) and its test values on all 50k: the two NB201 names of a dataset say which run a value
comes from. This module imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """One NB201 dataset.

    Attributes:
        name: the canonical name (used in table columns, study names, cache keys).
        title: the name in prose and figures.
        num_classes: classes of the image classification task.
        nb201_valid: NB201's name of the run that gives validation values.
        nb201_test: NB201's name of the run that gives test values.
        aliases: other accepted spellings (lower case).
    """

    name: str
    title: str
    num_classes: int
    nb201_valid: str
    nb201_test: str
    aliases: tuple[str, ...] = ()


REGISTRY: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("cifar10", "CIFAR-10", 10, "cifar10-valid", "cifar10",
                    aliases=("cifar10-valid", "cifar10_valid")),
        DatasetInfo("cifar100", "CIFAR-100", 100, "cifar100", "cifar100"),
        DatasetInfo("imagenet16", "ImageNet16-120", 120, "ImageNet16-120", "ImageNet16-120",
                    aliases=("imagenet16-120", "imagenet16_120", "imagenet")),
    )
}
#: The canonical names, in the benchmark's order.
DATASETS: tuple[str, ...] = tuple(REGISTRY)

_LOOKUP: dict[str, str] = {
    key: d.name for d in REGISTRY.values() for key in (d.name, *d.aliases)
}


def canonical_dataset(dataset: str) -> str:
    """The canonical name of ``dataset``: ``"ImageNet16-120"`` -> ``"imagenet16"``,
    ``"cifar10-valid"`` -> ``"cifar10"``, ...

    Raises:
        ValueError: a name that is neither canonical nor an alias.
    """
    key = str(dataset).lower()
    if key not in _LOOKUP:
        aliases = sorted(a for d in REGISTRY.values() for a in d.aliases)
        raise ValueError(
            f"unknown dataset {dataset!r} (an unknown NB201 dataset name); expected one of "
            f"{list(DATASETS)} or an alias {aliases}."
        )
    return _LOOKUP[key]


def dataset_info(dataset: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``dataset`` (any accepted spelling)."""
    return REGISTRY[canonical_dataset(dataset)]
