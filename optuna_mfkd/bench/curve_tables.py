"""Learning-curve problems replayed from a table of recorded training runs.

A table (as ``benchmarks/curve_tables.py`` writes them) is a CSV, gzip-compressed when its
name ends in ``.gz``, with one row per configuration: a column per parameter (integers or
strings), then ``value_1 .. value_E`` (the value, minimised, reported after each step) and
``seconds_1 .. seconds_E`` (the seconds of each step alone). The search space is inferred
from the rows: an integer column is an ``IntDistribution`` over its values (which must be
evenly spaced: ``low``, ``high`` and ``step``), a string column a ``CategoricalDistribution``
of its values in order of first appearance. The rows must be every combination of those
values, once each, so every suggestion names exactly one row.

:class:`TableCurve` is a :class:`~optuna_mfkd.bench.curves.CurveProblem`: it reports at steps
``1 .. E``, its rungs are the powers of 3 up to ``E`` (and ``E``), its optimum is the best
final value in the table, and its cost is the steps (default) or the recorded seconds.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from optuna_mfkd.bench.curves import CurveProblem

_STEP_COLUMN = re.compile(r"(value|seconds)_(\d+)")


class TableError(ValueError):
    """A curve table that cannot be read: missing, corrupt, or not a complete grid."""


def read_sums(path: str | Path) -> dict[str, str]:
    """The digests of a ``sha256sum``-format file (``<hex>  <file name>`` per line), by name."""
    sums: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        digest, sep, name = line.strip().partition("  ")
        if sep:
            sums[name.lstrip("*")] = digest.lower()
    return sums


def _distribution(path: Path, name: str, column: Any) -> BaseDistribution:
    """The grid distribution of one parameter column (integers or strings)."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(column.dtype):
        values = sorted({int(v) for v in column})
        steps = {b - a for a, b in zip(values, values[1:])}
        if len(steps) > 1:
            raise TableError(
                f"{path}: the values of parameter {name!r} are not evenly spaced: {values}"
            )
        return IntDistribution(values[0], values[-1], step=steps.pop() if steps else 1)
    if pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
        if column.isna().any():
            raise TableError(f"{path}: parameter {name!r} has empty cells")
        return CategoricalDistribution(tuple(dict.fromkeys(str(v) for v in column)))
    raise TableError(f"{path}: parameter {name!r} is neither integers nor strings ({column.dtype})")


class TableCurve(CurveProblem):
    """A learning-curve problem replayed from a table (see the module's docstring).

    Build one with :meth:`load`. ``value(params, step)`` and ``cost(params, step)`` take a
    configuration of the grid (every parameter of :attr:`distributions`, nothing else) and a
    step of :attr:`report_steps`.

    Attributes:
        cost_unit: ``"steps"`` or ``"seconds"``: what :meth:`cost` counts.
    """

    def __init__(
        self,
        name: str,
        distributions: dict[str, BaseDistribution],
        values: np.ndarray,
        seconds: np.ndarray,
        rows: dict[tuple[Any, ...], int],
        cost: Literal["steps", "seconds"] = "steps",
    ) -> None:
        if cost not in ("steps", "seconds"):
            raise ValueError(f"cost must be 'steps' or 'seconds', got {cost!r}")
        self.name = name
        self.distributions = distributions
        self.report_steps = tuple(range(1, values.shape[1] + 1))
        final = self.report_steps[-1]
        powers = (3**i for i in range(int(math.log(final, 3)) + 2))
        self.rungs = tuple(sorted({*(p for p in powers if p < final), final}))
        self.optimum = float(values[:, -1].min())
        self.cost_unit = cost
        self._values, self._rows = values, rows
        self._step_seconds, self._seconds = seconds, np.cumsum(seconds, axis=1)
        self._grids = {p: _grid(d) for p, d in distributions.items()}

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        *,
        sha256: str | None = None,
        cost: Literal["steps", "seconds"] = "steps",
    ) -> TableCurve:
        """Read the table at ``path``.

        Args:
            path: the table (``.csv`` or ``.csv.gz``).
            name: the problem's id; by default the file's name without ``.csv[.gz]``.
            sha256: the file's expected SHA-256 (hex); checked when given.
            cost: ``"steps"`` (a step costs 1) or ``"seconds"`` (the recorded seconds).

        Raises:
            TableError: the file is missing, its digest differs from ``sha256``, or it is not a
                complete grid of configurations with a value and seconds for every step.
        """
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise TableError(f"{path}: no such curve table")
        data = path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
            raise TableError(
                f"{path}: SHA-256 {hashlib.sha256(data).hexdigest()} differs from "
                f"the expected {sha256.lower()}"
            )
        try:
            frame = pd.read_csv(
                path,
                compression="gzip" if path.suffix == ".gz" else None,
                float_precision="round_trip",
            )
        except Exception as exc:  # pandas raises many kinds on a corrupt file
            raise TableError(f"{path}: not a readable CSV table ({exc})") from exc
        steps = {
            kind: sorted(
                int(m[2])
                for c in frame.columns
                if (m := _STEP_COLUMN.fullmatch(c)) and m[1] == kind
            )
            for kind in ("value", "seconds")
        }
        count = len(steps["value"])
        if (
            count == 0
            or steps["value"] != list(range(1, count + 1))
            or steps["seconds"] != steps["value"]
        ):
            raise TableError(f"{path}: expected columns value_1..value_E and seconds_1..seconds_E")
        if frame.empty:
            raise TableError(f"{path}: the table has no rows")
        value_cols = [f"value_{k}" for k in range(1, count + 1)]
        second_cols = [f"seconds_{k}" for k in range(1, count + 1)]
        params = [c for c in frame.columns if not _STEP_COLUMN.fullmatch(c)]
        try:
            values = frame[value_cols].to_numpy(dtype=float)
            seconds = frame[second_cols].to_numpy(dtype=float)
        except ValueError as exc:
            raise TableError(f"{path}: a value or seconds cell is not a number ({exc})") from exc
        if not (np.isfinite(values).all() and np.isfinite(seconds).all()):
            raise TableError(f"{path}: a value or seconds cell is empty or not finite")
        distributions = {p: _distribution(path, p, frame[p]) for p in params}
        keys = [
            tuple(
                int(v) if isinstance(d, IntDistribution) else str(v)
                for v, d in zip(row, distributions.values())
            )
            for row in frame[params].itertuples(index=False, name=None)
        ]
        rows = {key: i for i, key in enumerate(keys)}
        size = math.prod(len(_grid(d)) for d in distributions.values())
        if len(rows) != len(keys):
            raise TableError(
                f"{path}: {len(keys) - len(rows)} configurations appear more than once"
            )
        if len(rows) != size:
            raise TableError(
                f"{path}: {len(rows)} rows, but the parameters' values make {size} "
                "combinations: the table is not a complete grid"
            )
        if name is None:
            name = path.name.removesuffix(".gz").removesuffix(".csv")
        return cls(name, distributions, values, seconds, rows, cost=cost)

    def row(self, params: Mapping[str, Any]) -> int:
        """The table row of a configuration; a ``ValueError`` naming the parameter if it is
        missing, unknown or off the grid."""
        for key in params:
            if key not in self.distributions:
                raise ValueError(
                    f"{self.name}: unknown parameter {key!r}; the table's "
                    f"parameters are {list(self.distributions)}"
                )
        key = []
        for p, dist in self.distributions.items():
            if p not in params:
                raise ValueError(f"{self.name}: parameter {p!r} is missing")
            value, grid = params[p], self._grids[p]
            if isinstance(dist, IntDistribution) and _is_integral(value):
                value = int(value)
            if value not in grid or isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"{self.name}: parameter {p!r} = {params[p]!r} is not on the grid {list(grid)}"
                )
            key.append(value)
        return self._rows[tuple(key)]

    def _index(self, step: int) -> int:
        if step not in self.report_steps:
            raise ValueError(
                f"{self.name}: step {step!r} is not one of the report steps 1..{self.final_step}"
            )
        return int(step) - 1

    def value(self, params: Mapping[str, Any], step: int) -> float:
        """The recorded value of ``params`` after ``step`` steps."""
        return float(self._values[self.row(params), self._index(step)])

    def cost(self, params: Mapping[str, Any], step: int) -> float:
        """The cost of training ``params`` from scratch to ``step``: ``step`` (cost ``"steps"``)
        or the recorded seconds of steps ``1..step`` (cost ``"seconds"``)."""
        row, index = self.row(params), self._index(step)
        return float(step) if self.cost_unit == "steps" else float(self._seconds[row, index])

    def values_array(self) -> np.ndarray:
        """Every row's values, ``(rows, steps)``, in the table's row order (a copy)."""
        return self._values.copy()

    def seconds_array(self) -> np.ndarray:
        """Every row's seconds of each step alone, ``(rows, steps)`` (a copy)."""
        return self._step_seconds.copy()

    def configurations(self) -> list[dict[str, Any]]:
        """Every configuration, in the table's row order."""
        ordered = sorted(self._rows.items(), key=lambda item: item[1])
        return [dict(zip(self.distributions, key)) for key, _ in ordered]


def _is_integral(value: Any) -> bool:
    """An int, or a float or NumPy number holding an integer (not a bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def _grid(dist: BaseDistribution) -> tuple[Any, ...]:
    if isinstance(dist, IntDistribution):
        return tuple(range(dist.low, dist.high + 1, dist.step))
    assert isinstance(dist, CategoricalDistribution)
    return tuple(dist.choices)
