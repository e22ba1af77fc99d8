"""Build the learning-curve tables of ``curve_training.py``'s problems: every configuration of
a problem's grid trained once, epoch by epoch, its validation error and training seconds
recorded after every epoch.

A table is a gzip-compressed CSV, one row per configuration in grid order (the last
parameter varying fastest): the parameters' columns (integers or strings), then
``value_1 .. value_E`` (validation error after each epoch, exact: a count of errors over the
validation set's size, written as the shortest decimal that reads back as the same float) and ``seconds_1 .. seconds_E``
(seconds of each epoch's training alone; the cost of reaching epoch ``k`` is the sum of the
first ``k``). ``optuna_mfkd.bench.curve_tables.TableCurve`` replays it. The gzip header
carries no time stamp, and ``SHA256SUMS`` beside the tables lists every table's digest::

    OMP_NUM_THREADS=1 python benchmarks/curve_tables.py --problem mlp-digits torch-mlp \\
        --out benchmarks/results/curve-tables

``--limit N`` builds only a complete sub-grid of at most ``N`` configurations (the grid's
first rows, rounded down so that the rows are every combination of the values they use), and
``--epochs E`` trains fewer epochs: a quick table for checks. ``--summary`` prints, for
tables already built, the figures the README quotes.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import curve_training  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "curve-tables"


def complete_prefix(sizes: Sequence[int], limit: int) -> int:
    """The largest ``n <= limit`` whose first ``n`` grid rows are a complete sub-grid.

    ``sizes`` are the parameters' numbers of values in grid order (the last varies fastest);
    the first ``k * B`` rows, ``B`` the product of the sizes after some parameter and
    ``k`` at most that parameter's size, are every combination of the values they use.
    """
    best, block = 1, 1
    for size in reversed(sizes):
        best = max(best, min(size, limit // block) * block)
        block *= size
    return min(best, block)


def columns(params: Iterable[str], epochs: int) -> list[str]:
    """The table's header: the parameters, then ``value_k`` and ``seconds_k`` per epoch."""
    steps = range(1, epochs + 1)
    return [*params, *(f"value_{k}" for k in steps), *(f"seconds_{k}" for k in steps)]


def build(name: str, path: Path, epochs: int, limit: int | None = None) -> float:
    """Train every configuration of ``name`` (or a complete sub-grid of at most ``limit``) into
    the table ``path``; returns the wall-clock seconds of the build."""
    space = curve_training.SPACES[name]
    configs = list(curve_training.grid(name))
    if limit is not None:
        sizes = [len(curve_training.grid_values(d)) for d in space.values()]
        configs = configs[: complete_prefix(sizes, limit)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns(space, epochs))
    start = time.perf_counter()
    for i, params in enumerate(configs, 1):
        with curve_training.single_thread(name):
            curve = list(curve_training.train(name, params, epochs))
        writer.writerow(
            [*params.values(), *(repr(float(v)) for v, _ in curve), *(f"{s:.6f}" for _, s in curve)]
        )
        if i % 50 == 0 or i == len(configs):
            print(
                f"{name}: {i}/{len(configs)} configurations, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.getvalue().encode())
    return elapsed


def sha256(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_sums(sums: Path, tables: Iterable[Path]) -> None:
    """Write the tables' digests into ``sums`` (``sha256sum`` format), keeping other lines."""
    entries: dict[str, str] = {}
    if sums.exists():
        for line in sums.read_text().splitlines():
            digest, _, file = line.partition("  ")
            entries[file] = digest
    for table in tables:
        entries[table.name] = sha256(table)
    sums.write_text("".join(f"{entries[f]}  {f}\n" for f in sorted(entries)))


def summary(path: Path, sums: Path | None = None) -> str:
    """The README's figures for one table: size, digest, final values, rank agreement."""
    import numpy as np
    from scipy import stats

    from optuna_mfkd.bench.curve_tables import TableCurve, read_sums

    digest = read_sums(sums).get(path.name) if sums is not None and sums.exists() else None
    table = TableCurve.load(path, sha256=digest)
    values, seconds = table.values_array(), table.seconds_array()
    final = values[:, -1]
    lines = [
        f"{table.name}: {len(final)} configurations x {table.final_step} epochs, "
        f"{path.stat().st_size / 1e6:.2f} MB, sha256 {sha256(path)}",
        f"  final validation error: best {final.min():.4f} ({int((final == final.min()).sum())} "
        f"configurations), 10% {np.quantile(final, 0.1):.4f}, 25% {np.quantile(final, 0.25):.4f}, "
        f"median {np.median(final):.4f}, worst {final.max():.4f}",
        f"  training seconds per configuration (all epochs): median "
        f"{np.median(seconds.sum(axis=1)):.2f}, total {seconds.sum() / 60:.1f} min",
    ]
    for step in (s for s in table.rungs if s != table.final_step):
        rho = stats.spearmanr(values[:, step - 1], final).statistic
        top = np.argsort(final, kind="stable")[: max(1, math.ceil(len(final) / 10))]
        kept = np.argsort(values[:, step - 1], kind="stable")[: len(final) // 3]
        lines.append(
            f"  epoch {step} vs {table.final_step}: Spearman {rho:.3f}; "
            f"top-10% finals kept by the best third at epoch {step}: "
            f"{len(set(top) & set(kept))}/{len(top)}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--problem",
        nargs="+",
        choices=curve_training.PROBLEMS,
        default=list(curve_training.PROBLEMS),
    )
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the tables")
    parser.add_argument("--limit", type=int, help="build a complete sub-grid of at most N rows")
    parser.add_argument("--epochs", type=int, default=curve_training.EPOCHS)
    parser.add_argument("--summary", action="store_true", help="summarise built tables")
    args = parser.parse_args(argv)
    sums = args.out / "SHA256SUMS"
    paths = [args.out / f"{name}.csv.gz" for name in args.problem]
    if args.summary:
        print("\n".join(summary(path, sums) for path in paths))
        return
    for name, path in zip(args.problem, paths):
        elapsed = build(name, path, args.epochs, args.limit)
        update_sums(sums, [path])
        print(f"{name}: wrote {path} in {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
