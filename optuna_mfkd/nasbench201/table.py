"""NAS-Bench-201 tabular backends behind one interface.

Two backends answer the same questions (by official NB201 index, for the datasets of
:mod:`optuna_mfkd.datasets`: ``"cifar10"``, ``"cifar100"`` and ``"imagenet16"`` = ImageNet16-120,
or any of their aliases):

- :class:`CompactTable`: the compact CSV (one row per cell; 12-epoch val/test accuracy,
  200-epoch val accuracy mean and per-seed values, 200-epoch test accuracy, training seconds
  per epoch), plain or compressed (``.csv.gz``, ...). The package ships it
  (:func:`bundled_table_path`, provenance and licence in ``nasbench201/data/README.md``);
  a path given as argument or in the environment variable ``NB201_TABLE`` selects another.
- :class:`OfficialTable`: the official benchmark file read through ``nas_201_api`` (optional:
  ``pip install nas-bench-201``); it adds per-epoch curves.

For CIFAR-10 the validation values are those of the ``cifar10-valid`` split (train on 25k,
validate on the other 25k) and the test values those of the ``cifar10`` model (trained on
all 50k, tested on the official test set). All accuracies are percentages; the tables hold
means over the benchmark's training seeds.
"""

from __future__ import annotations

import importlib.resources
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from optuna_mfkd.datasets import DATASETS, canonical_dataset, dataset_info
from optuna_mfkd.nasbench201.space import NUM_ARCHS, index_to_ops, ops_to_arch_str

EPOCHS: tuple[int, ...] = (12, 200)
TABLE_ENV = "NB201_TABLE"
#: File name of the compact table shipped in ``optuna_mfkd/nasbench201/data/``.
BUNDLED_TABLE = "nb201_compact.csv.gz"
#: Endings of a compact table file (pandas reads the compressed ones directly).
COMPACT_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")


def _check_epochs(epochs: int) -> int:
    if epochs not in EPOCHS:
        raise ValueError(f"the table holds the {list(EPOCHS)}-epoch schedules, not {epochs!r}.")
    return int(epochs)


def _val_prefix(ds: str) -> str:
    return "cifar10_valid" if ds == "cifar10" else ds


def compact_columns() -> list[str]:
    """The columns :class:`CompactTable` needs."""
    cols = ["index", "arch_str"]
    for ds in DATASETS:
        v = _val_prefix(ds)
        cols += [
            f"{v}_val_acc_12ep",
            f"{ds}_test_acc_12ep",
            f"{v}_val_acc_200ep_mean",
            f"{v}_val_acc_200ep_seeds",
            f"{ds}_test_acc_200ep",
            f"{ds}_train_seconds_per_epoch",
        ]
    return cols


class NB201Table(ABC):
    """Lookups by official index; every accuracy in %, every time in seconds."""

    source: str

    @abstractmethod
    def val_acc(self, dataset: str, index: int, epochs: int = 12) -> float:
        """Validation accuracy after the ``epochs``-epoch schedule (mean over seeds)."""

    @abstractmethod
    def test_acc(self, dataset: str, index: int, epochs: int = 200) -> float:
        """Test accuracy after the ``epochs``-epoch schedule (mean over seeds)."""

    @abstractmethod
    def val_acc_seeds(self, dataset: str, index: int, epochs: int = 200) -> tuple[float, ...]:
        """Per-seed validation accuracies after the ``epochs``-epoch schedule."""

    @abstractmethod
    def seconds_per_epoch(self, dataset: str, index: int) -> float:
        """The benchmark's training time of one epoch of this cell."""

    @abstractmethod
    def column(self, dataset: str, metric: str, epochs: int = 200) -> np.ndarray:
        """Whole-space array (15,625,) of ``metric`` in ``{"val", "test", "seconds_per_epoch"}``."""

    def arch_str(self, index: int) -> str:
        return ops_to_arch_str(index_to_ops(index))

    def best_test_acc(self, dataset: str, epochs: int = 200) -> float:
        """Best test accuracy of any cell in the space (the reference of the regret)."""
        return float(np.max(self.column(dataset, "test", epochs)))


class CompactTable(NB201Table):
    """The compact CSV table, plain or compressed (provenance: ``nasbench201/data/README.md``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import pandas as pd

        self.path = Path(path)
        self.source = str(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"NB201 table not found at {str(self.path)!r}: expected the compact CSV with "
                f"columns {compact_columns()} (pass another path, or give none for the bundled table)."
            )
        try:
            df = pd.read_csv(self.path)
        except Exception as exc:  # pandas raises several parser errors
            raise ValueError(f"NB201 table {str(self.path)!r} could not be read as CSV: {exc}") from exc
        missing = [c for c in compact_columns() if c not in df.columns]
        if missing:
            what = (f"has none of the compact table's columns {missing}" if len(missing) == len(compact_columns())
                    else f"lacks the compact table's columns {missing}")
            raise ValueError(f"NB201 table {str(self.path)!r} {what}.")
        if len(df) != NUM_ARCHS or sorted(df["index"].tolist()) != list(range(NUM_ARCHS)):
            raise ValueError(
                f"NB201 table {str(self.path)!r} must hold one row per index 0..{NUM_ARCHS - 1}, "
                f"got {len(df)} rows."
            )
        df = df.sort_values("index").reset_index(drop=True)
        expected = [ops_to_arch_str(index_to_ops(i)) for i in range(NUM_ARCHS)]
        bad = np.flatnonzero(df["arch_str"].to_numpy() != np.array(expected, dtype=object))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"NB201 table {str(self.path)!r}: arch_str of index {i} is {df['arch_str'][i]!r}, "
                f"but the official order gives {expected[i]!r} ({bad.size} rows disagree)."
            )
        self._cols: dict[tuple[str, str, int], np.ndarray] = {}
        self._seeds: dict[str, list[tuple[float, ...]]] = {}
        for ds in DATASETS:
            v = _val_prefix(ds)
            try:
                self._cols[(ds, "val", 12)] = df[f"{v}_val_acc_12ep"].to_numpy(np.float64)
                self._cols[(ds, "test", 12)] = df[f"{ds}_test_acc_12ep"].to_numpy(np.float64)
                self._cols[(ds, "val", 200)] = df[f"{v}_val_acc_200ep_mean"].to_numpy(np.float64)
                self._cols[(ds, "test", 200)] = df[f"{ds}_test_acc_200ep"].to_numpy(np.float64)
                sec = df[f"{ds}_train_seconds_per_epoch"].to_numpy(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"NB201 table {str(self.path)!r}: a {ds} column is not numeric: {exc}") from exc
            self._cols[(ds, "seconds_per_epoch", 0)] = sec
            self._seeds[ds] = [
                tuple(float(x) for x in str(s).split(";")) for s in df[f"{v}_val_acc_200ep_seeds"]
            ]
        for key, arr in self._cols.items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"NB201 table {str(self.path)!r}: non-finite values in {key}.")

    def column(self, dataset: str, metric: str, epochs: int = 200) -> np.ndarray:
        ds = canonical_dataset(dataset)
        if metric == "seconds_per_epoch":
            return self._cols[(ds, metric, 0)]
        if metric not in ("val", "test"):
            raise ValueError(f"metric must be 'val', 'test' or 'seconds_per_epoch', got {metric!r}.")
        return self._cols[(ds, metric, _check_epochs(epochs))]

    def val_acc(self, dataset: str, index: int, epochs: int = 12) -> float:
        return float(self.column(dataset, "val", epochs)[_idx(index)])

    def test_acc(self, dataset: str, index: int, epochs: int = 200) -> float:
        return float(self.column(dataset, "test", epochs)[_idx(index)])

    def val_acc_seeds(self, dataset: str, index: int, epochs: int = 200) -> tuple[float, ...]:
        if _check_epochs(epochs) != 200:
            raise ValueError("the compact table holds per-seed values for the 200-epoch schedule only.")
        return self._seeds[canonical_dataset(dataset)][_idx(index)]

    def seconds_per_epoch(self, dataset: str, index: int) -> float:
        return float(self.column(dataset, "seconds_per_epoch")[_idx(index)])

    def __repr__(self) -> str:
        return f"CompactTable({self.source!r})"


def _idx(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < NUM_ARCHS:
        raise ValueError(f"NB201 index must be an integer in [0, {NUM_ARCHS - 1}], got {index!r}.")
    return int(index)


def _official_name(dataset: str, which: int) -> str:
    """NB201's name of the run giving validation (``which=0``) or test (``which=1``) values."""
    info = dataset_info(dataset)
    return info.nb201_valid if which == 0 else info.nb201_test


class OfficialTable(NB201Table):
    """The official NAS-Bench-201 file, read through ``nas_201_api`` (``pip install nas-bench-201``).

    Validation values come from the ``x-valid`` set (``cifar10-valid`` for CIFAR-10), test
    values from the original test set (``ori-test``), training time per epoch from
    ``train-per-time``. :meth:`curve` adds per-epoch validation curves.
    """

    def __init__(self, path: str | os.PathLike[str], api: object | None = None) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        if api is None:
            try:
                from nas_201_api import NASBench201API
            except ImportError as exc:
                raise ImportError(
                    f"NB201 table {str(self.path)!r} is not a compact CSV table (.csv or .csv.gz); reading it "
                    "as the official NB201 file needs nas_201_api: pip install nas-bench-201."
                ) from exc
            if not self.path.exists():
                raise FileNotFoundError(f"official NB201 file not found at {str(self.path)!r}.")
            api = NASBench201API(str(self.path), verbose=False)
        self.api = api
        self._cache: dict[tuple[str, str, int], np.ndarray] = {}

    def _info(self, dataset: str, index: int, epochs: int, which: int) -> dict:
        name = _official_name(dataset, which)
        return self.api.get_more_info(_idx(index), name, iepoch=None, hp=str(_check_epochs(epochs)), is_random=False)

    def val_acc(self, dataset: str, index: int, epochs: int = 12) -> float:
        return float(self._info(dataset, index, epochs, 0)["valid-accuracy"])

    def test_acc(self, dataset: str, index: int, epochs: int = 200) -> float:
        info = self._info(dataset, index, epochs, 1)
        key = "test-accuracy" if canonical_dataset(dataset) == "cifar10" else "valtest-accuracy"
        return float(info.get(key, info["test-accuracy"]))

    def seconds_per_epoch(self, dataset: str, index: int) -> float:
        return float(self._info(dataset, index, 12, 0)["train-per-time"])

    def val_acc_seeds(self, dataset: str, index: int, epochs: int = 200) -> tuple[float, ...]:
        name = _official_name(dataset, 0)
        res = self.api.query_meta_info_by_index(_idx(index), hp=str(_check_epochs(epochs)))
        return tuple(
            float(res.get_metrics(name, "x-valid", iepoch=None, is_random=seed)["accuracy"])
            for seed in res.get_dataset_seeds(name)
        )

    def curve(self, dataset: str, index: int, epochs: int = 200) -> np.ndarray:
        """Validation accuracy after each epoch of the ``epochs``-epoch schedule, shape (epochs,)."""
        name = _official_name(dataset, 0)
        res = self.api.query_meta_info_by_index(_idx(index), hp=str(_check_epochs(epochs)))
        return np.array([res.get_metrics(name, "x-valid", iepoch=e)["accuracy"] for e in range(epochs)])

    def column(self, dataset: str, metric: str, epochs: int = 200) -> np.ndarray:
        key = (canonical_dataset(dataset), metric, epochs if metric != "seconds_per_epoch" else 0)
        if key not in self._cache:
            get = {"val": lambda i: self.val_acc(dataset, i, epochs),
                   "test": lambda i: self.test_acc(dataset, i, epochs),
                   "seconds_per_epoch": lambda i: self.seconds_per_epoch(dataset, i)}.get(metric)
            if get is None:
                raise ValueError(f"metric must be 'val', 'test' or 'seconds_per_epoch', got {metric!r}.")
            self._cache[key] = np.array([get(i) for i in range(NUM_ARCHS)], dtype=np.float64)
        return self._cache[key]

    def __repr__(self) -> str:
        return f"OfficialTable({self.source!r})"


_LOADED: dict[str, NB201Table] = {}


def bundled_table_path() -> Path:
    """The compact table shipped with the package (``nasbench201/data/nb201_compact.csv.gz``).

    Raises:
        FileNotFoundError: the installation lacks the file (a broken or stripped install).
    """
    path = Path(str(importlib.resources.files("optuna_mfkd.nasbench201") / "data" / BUNDLED_TABLE))
    if not path.is_file():
        raise FileNotFoundError(
            f"the NB201 table bundled with optuna-mfkd is missing ({path}); reinstall the package "
            f"or pass the path of a table."
        )
    return path


def is_compact_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a compact table file (``.csv``, ``.csv.gz``, ...)."""
    return str(path).lower().endswith(COMPACT_SUFFIXES)


def table_path_from_env() -> Path:
    """``$NB201_TABLE``, or the bundled table when the variable is unset.

    Raises:
        ValueError: ``NB201_TABLE`` is set but empty (an empty path would mean the current
            folder, which is never a table).
    """
    value = os.environ.get(TABLE_ENV)
    if value is None:
        return bundled_table_path()
    if not value.strip():
        raise ValueError(
            f"{TABLE_ENV} is set but empty; unset it to use the table bundled with optuna-mfkd, "
            f"or set it to a table file."
        )
    return Path(value).expanduser()


def load_table(path: str | os.PathLike[str] | None = None, backend: str = "auto") -> NB201Table:
    """Open an NB201 table.

    Args:
        path: the compact CSV (plain or compressed) or the official file; defaults to
            ``$NB201_TABLE``, else the table bundled with the package (:func:`bundled_table_path`).
        backend: ``"compact"``, ``"official"`` or ``"auto"`` (``.csv``, ``.csv.gz``, ... ->
            compact, otherwise official).

    Tables are cached per resolved path, so repeated calls in one process are cheap.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is empty, a folder, or not a table (message names the file).
    """
    if path is None:
        path = table_path_from_env()
    elif not str(path).strip():
        raise ValueError("the NB201 table path is empty; give a table file, or no path for the bundled table.")
    path = Path(path).expanduser()
    if backend == "auto":
        backend = "compact" if is_compact_path(path) else "official"
    if backend not in ("compact", "official"):
        raise ValueError(f"backend must be 'compact', 'official' or 'auto', got {backend!r}.")
    if path.is_dir():
        raise ValueError(f"NB201 table {str(path)!r} is a folder; expected the compact CSV or the official file.")
    if backend == "official" and not path.exists():
        raise FileNotFoundError(f"NB201 table {str(path)!r} not found (the official benchmark file).")
    key = f"{backend}:{path.resolve()}"
    if key not in _LOADED:
        _LOADED[key] = CompactTable(path) if backend == "compact" else OfficialTable(path)
    return _LOADED[key]
