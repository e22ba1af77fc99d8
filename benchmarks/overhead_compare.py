"""Compare runs of ``sampler_overhead.py`` made at two commits: a Markdown table.

Each run times MFKDSampler and GPSampler side by side, so the figure compared is the ratio
within a run (MFKDSampler's median step over GPSampler's, steps 2..; the first step apart),
averaged over the repeated runs of each commit::

    python benchmarks/overhead_compare.py --before DIR [DIR ...] --after DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REFERENCE = "GPSampler"


def _ratios(dirs: list[Path]) -> dict[tuple[str, int, str], tuple[float, float, float]]:
    """``(space, n, sampler) -> (median step s, ratio to GPSampler, first-step ratio)``,
    each the mean over the runs in ``dirs``."""
    per: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    for d in dirs:
        rows = json.loads((d / "results.json").read_text())
        ref = {(r["space"], r["completed_trials"]): r for r in rows if r["sampler"] == REFERENCE}
        for r in rows:
            if not r["sampler"].startswith("MFKDSampler"):
                continue
            g = ref[(r["space"], r["completed_trials"])]
            med, g_med = np.median(r["steps_s"][1:]), np.median(g["steps_s"][1:])
            per.setdefault((r["space"], r["completed_trials"], r["sampler"]), []).append(
                (med, med / g_med, r["first_step_s"] / g["first_step_s"])
            )
    return {k: tuple(np.mean(v, axis=0)) for k, v in per.items()}


def table(before: list[Path], after: list[Path]) -> str:
    b, a = _ratios(before), _ratios(after)
    lines = [
        "| space | n | MFKDSampler | median step s, before / after | ratio to GPSampler, before / after "
        "| first step ratio, before / after |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(a.keys() & b.keys()):
        space, n, sampler = key
        label = sampler.removeprefix("MFKDSampler (").split(",")[0]
        (mb, rb, fb), (ma, ra, fa) = b[key], a[key]
        lines.append(f"| {space} | {n} | {label} | {mb:.3f} / {ma:.3f} | {rb:.2f} / {ra:.2f} | {fb:.2f} / {fa:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, nargs="+", required=True, help="run folders of the first commit")
    p.add_argument("--after", type=Path, nargs="+", required=True, help="run folders of the second commit")
    args = p.parse_args(argv)
    for d in [*args.before, *args.after]:
        if not (d / "results.json").is_file():
            p.error(f"{d}: no results.json (a folder written by sampler_overhead.py --out).")
    print(table(args.before, args.after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
