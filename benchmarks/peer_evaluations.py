"""What each method spent its budget on: evaluations per level and repeated evaluations.

Reads the finished harness studies of one storage (``<protocol>/<dataset>/<method>/seed-<k>``)
and writes one row per (protocol, dataset, method): the number of seeds, the mean number of
evaluations that ended at each level (user attribute ``evaluated_at``), the mean share of the
simulated cost spent at each level, and the mean share of evaluations that repeat a (point,
level) pair the run had already evaluated (charged in full, like every evaluation; a point is
the NB201 cell, ``nb201_index``, or else the trial's params, e.g. on the synthetic problems). A
Hyperband-style trial promoted to the top level counts at the top level (its cost holds both
runs)::

    python benchmarks/peer_evaluations.py --storage sqlite:///benchmarks/results/peers/studies.db \\
        --seeds 0-29 --out benchmarks/results/peers/evaluations.csv
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd

from optuna_mfkd.bench.runs import (
    FINISHED_ATTR,
    META_ATTR,
    as_storage,
    current_name,
    parse_seeds,
    parse_study_name,
)
from optuna_mfkd.fidelity import trial_cost
from optuna_mfkd.nasbench201.tabular import EVALUATED_AT_ATTR


def run_stats(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Evaluations and cost share per level, and the share of repeated (point, level) pairs."""
    out: dict[str, float] = defaultdict(float)
    seen: set[tuple[object, str]] = set()
    repeats = 0
    total = sum(trial_cost(t) for t in trials)
    for t in trials:
        level = str(t.user_attrs.get(EVALUATED_AT_ATTR))
        index = t.user_attrs.get("nb201_index")
        point = int(index) if index is not None else tuple(sorted(t.params.items()))
        key = (point, level)
        repeats += key in seen
        seen.add(key)
        out[f"evals_{level}"] += 1
        out[f"cost_share_{level}"] += trial_cost(t) / total if total else 0.0
    out["repeated_share"] = repeats / max(len(trials), 1)
    return dict(out)


def summarise(storage: str, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    st = as_storage(storage)
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    for study in st.get_all_studies():
        parsed = parse_study_name(current_name(study.study_name, study.user_attrs.get(META_ATTR, {})))
        if parsed is None or not study.user_attrs.get(FINISHED_ATTR):
            continue
        protocol, dataset, method, seed = parsed
        if seeds is not None and seed not in seeds:
            continue
        rows[(protocol, dataset, method)].append(run_stats(st.get_all_trials(study._study_id, deepcopy=False)))
    records = []
    for (protocol, dataset, method), stats in sorted(rows.items()):
        keys = sorted({k for s in stats for k in s})
        records.append({"protocol": protocol, "dataset": dataset, "method": method, "n_seeds": len(stats),
                        **{k: float(np.mean([s.get(k, 0.0) for s in stats])) for k in keys}})
    return pd.DataFrame(records).fillna(0.0)  # a level a method never evaluates: 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True, help="RDB URL of the benchmark studies")
    p.add_argument("--seeds", type=parse_seeds, default=None, help="only these seeds, e.g. 0-29")
    p.add_argument("--out", required=True, help="CSV to write")
    args = p.parse_args(argv)
    df = summarise(args.storage, args.seeds)
    df.to_csv(args.out, index=False, float_format="%.4g")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
