"""The trials a sampler proposes for a seed, written to a file, so two versions of the code
can be compared trial by trial (same process layout, same machine).

Each run is a suite study (``benchmarks/sampler_suite.py``'s problems and methods) run in a
scratch storage; the file holds, per study, every trial's number, parameters, level and
value. ``--compare OLD`` reads an earlier file and reports, per study, the first trial that
differs (or that all trials are equal)::

    OMP_NUM_THREADS=1 python benchmarks/trial_trace.py --problems mf/cifar10 augmented-hartmann \\
        --methods mfkd mfkd-paper --seeds 0-4 --out benchmarks/results/trial-trace/before.json.gz
    OMP_NUM_THREADS=1 python benchmarks/trial_trace.py ... --out after.json \\
        --compare benchmarks/results/trial-trace/before.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import optuna  # noqa: E402
import suite_settings as suite  # noqa: E402

from optuna_mfkd.bench.runs import parse_seeds  # noqa: E402


def trace(storage: str) -> dict[str, list[list]]:
    """Study name -> ``[number, params, fidelity, value]`` of each trial."""
    out = {}
    for summary in optuna.study.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = [
            [t.number, t.params, t.user_attrs.get("fidelity"), t.value] for t in study.get_trials(deepcopy=False)
        ]
    return dict(sorted(out.items()))


def compare(old: dict[str, list[list]], new: dict[str, list[list]]) -> dict[str, str]:
    """Study name -> ``"equal (n trials)"`` or where the two traces part."""
    verdict = {}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            verdict[name] = "only in " + ("new" if a is None else "old")
            continue
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if first is None and len(a) == len(b):
            verdict[name] = f"equal ({len(a)} trials)"
        else:
            first = min(len(a), len(b)) if first is None else first
            verdict[name] = f"differ from trial {first} ({len(a)} vs {len(b)} trials)"
    return verdict


def _read(path: Path) -> dict[str, list[list]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def _write(path: Path, trace_: dict[str, list[list]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:
        f.write(json.dumps(trace_, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", default=["mfkd", "mfkd-paper"])
    p.add_argument("--seeds", type=parse_seeds, default=list(range(5)))
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compare", type=Path, default=None, help="an earlier trace to compare with")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/trace.db"
        suite.run_suite(storage, args.problems, args.methods, args.seeds, n_jobs=args.n_jobs, progress=False)
        new = trace(storage)
    _write(args.out, new)
    print(f"wrote {args.out} ({len(new)} studies)")
    if args.compare is not None:
        verdict = compare(_read(args.compare), new)
        for name, v in verdict.items():
            print(f"{name}: {v}")
        return 0 if all(v.startswith("equal") for v in verdict.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
