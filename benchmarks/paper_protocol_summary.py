"""One table of the paper-protocol replays, with seed-paired comparisons.

Reads the folders written by ``optuna-mfkd report`` (``runs.csv`` and ``summary.csv``), one
per setting (e.g. warm-up sizes n1 = 30 and 100), and writes a Markdown summary:

- final 200-epoch test accuracy of every method in every setting (mean +- std over seeds) and
  the incumbent's mean at half of the budget;
- seed-paired comparisons ``A - B``: mean difference with a bootstrap 90% interval (resampling
  seeds), seeds where A is ahead / level / behind, and the two-sided Wilcoxon signed-rank
  p-value of the per-seed differences (SciPy; level seeds are dropped, as Wilcoxon's test
  does), and that p Holm-corrected over all the comparisons of the table (one family). Runs of the same seed share their random streams (MFKDSampler's low-level warm-up
  cells are drawn from the same pool with the same seed; the high-level warm-up uses the
  sampler's seed), so the per-seed difference removes most of the seed-to-seed spread that
  the unpaired Mann-Whitney tests of each report carry.

A pair ``A:B`` names methods of one setting (checked in every setting that has both) or
``setting/method`` on either side to compare across settings::

    python benchmarks/paper_protocol_summary.py --setting n1=30:benchmarks/results/paper-protocol/n1-30 \\
        --setting n1=100:benchmarks/results/paper-protocol/n1-100 \\
        --pair mfkd-nst:mfkd-ce mfkd-nst:mfkd-gpr --out benchmarks/results/paper-protocol/summary.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def read_setting(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs.csv`` as a (method x seed) table of final test accuracies, and ``summary.csv``."""
    for name in ("runs.csv", "summary.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: run `optuna-mfkd report --out {folder}` first.")
    runs = pd.read_csv(folder / "runs.csv")
    if runs.duplicated(["method", "seed"]).any():
        raise ValueError(f"{folder}/runs.csv holds several protocols or datasets; give one per setting.")
    return runs.pivot(index="method", columns="seed", values="final_test_acc"), pd.read_csv(folder / "summary.csv")


def paired(a: pd.Series, b: pd.Series, n_boot: int = 2000, seed: int = 0, level: float = 0.90) -> dict[str, float]:
    """Seed-paired comparison of two methods' final accuracies (``a - b`` over shared seeds)."""
    from scipy.stats import wilcoxon

    both = a.dropna().index.intersection(b.dropna().index)
    if len(both) < 2:
        raise ValueError(f"fewer than two shared seeds ({len(both)}).")
    # Rounded to 1e-9 points: accuracies read from CSV carry float noise (0.1 as 0.0999...),
    # which would split ties and zeros that the signed-rank test must see as such.
    d = np.round((a[both] - b[both]).to_numpy(dtype=float), 9)
    rng = np.random.default_rng(seed)
    boots = rng.choice(d, size=(n_boot, d.size), replace=True).mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    nonzero = d[d != 0]
    p = float(wilcoxon(nonzero).pvalue) if nonzero.size else 1.0
    return {"n": float(d.size), "diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "ahead": float((d > 0).sum()), "level": float((d == 0).sum()), "behind": float((d < 0).sum()), "p": p}


def _side(spec: str, default_setting: str) -> tuple[str, str]:
    setting, sep, method = spec.rpartition("/")
    return (setting if sep else default_setting), method


def summary_markdown(settings: dict[str, Path], pairs: Sequence[str], command: str | None = None) -> str:
    tables = {name: read_setting(folder) for name, folder in settings.items()}
    from optuna_mfkd.bench.methods import METHODS
    from optuna_mfkd.bench.statistics import holm

    present = {m for wide, _ in tables.values() for m in wide.index}
    methods = [m for m in METHODS if m in present] + sorted(present - set(METHODS))
    lines = ["# Paper protocol: all settings side by side", ""]
    if command:
        lines += ["Written by:", "", "```", command, "```", ""]
    lines += ["Final 200-epoch test accuracy (%) of the incumbent, mean +- std over seeds (n); in brackets",
              "the incumbent's mean once half of the budget is spent.", ""]
    lines += ["| method | " + " | ".join(tables) + " |", "|---|" + "---|" * len(tables)]
    for m in methods:
        cells = []
        for wide, summ in tables.values():
            if m not in wide.index:
                cells.append("—")
                continue
            v = wide.loc[m].dropna()
            half = summ.set_index("method").get("mean_at_0.5_budget", pd.Series(dtype=float)).get(m, np.nan)
            cells.append(f"{v.mean():.2f} +- {v.std(ddof=1):.2f} ({v.size}) [{half:.2f}]")
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    lines += ["", "Seed-paired differences A - B (points): mean, bootstrap 90% interval over seeds, seeds",
              "with A ahead / level / behind, two-sided Wilcoxon signed-rank p over the seeds that differ,",
              "and that p Holm-corrected over all the rows of this table.", "",
              "| A | B | n | mean A - B | 90% interval | ahead / level / behind | Wilcoxon p | p_Holm |",
              "|---|---|---|---|---|---|---|---|"]
    results: list[tuple[str, str, str, str, dict[str, float]]] = []
    for pair in pairs:
        left, sep, right = pair.partition(":")
        if not sep:
            raise ValueError(f"--pair {pair!r}: expected A:B, e.g. mfkd-nst:mfkd-ce or n1=30/mfkd-nst:n1=100/mfkd-nst.")
        cross = "/" in left or "/" in right
        for name in (list(tables)[:1] if cross else tables):
            (sa, ma), (sb, mb) = _side(left, name), _side(right, name)
            for s in (sa, sb):
                if s not in tables:
                    raise ValueError(f"--pair {pair!r}: unknown setting {s!r}; settings: {list(tables)}.")
            wa, wb = tables[sa][0], tables[sb][0]
            if ma not in wa.index or mb not in wb.index:
                if cross:
                    raise ValueError(f"--pair {pair!r}: {ma!r} or {mb!r} has no runs in its setting.")
                continue
            results.append((sa, ma, sb, mb, paired(wa.loc[ma], wb.loc[mb])))
    adjusted = holm([r["p"] for *_, r in results]) if results else []
    for (sa, ma, sb, mb, r), p_holm in zip(results, adjusted, strict=True):
        lines.append(
            f"| {sa}/`{ma}` | {sb}/`{mb}` | {r['n']:.0f} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] | "
            f"{r['ahead']:.0f} / {r['level']:.0f} / {r['behind']:.0f} | {r['p']:.2g} | {p_holm:.2g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", action="append", required=True, metavar="NAME:FOLDER",
                   help="a setting's name and its report folder (repeat for each setting)")
    p.add_argument("--pair", nargs="+", default=[], metavar="A:B", help="seed-paired comparisons A - B")
    p.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    a = p.parse_args(argv)
    settings: dict[str, Path] = {}
    for spec in a.setting:
        name, sep, folder = spec.partition(":")
        if not sep or not name or not folder or "/" in name:
            p.error(f"--setting {spec!r}: expected NAME:FOLDER with no '/' in NAME, e.g. n1=30:results/n1-30")
        settings[name] = Path(folder)
    command = "python benchmarks/paper_protocol_summary.py " + " ".join(shlex.quote(x) for x in argv)
    try:
        text = summary_markdown(settings, a.pair, command)
    except (FileNotFoundError, ValueError) as exc:
        p.error(str(exc))
    a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
