"""Write docs/api.md from the docstrings of the public API.

    python docs/make_api.py              # rewrites docs/api.md
    python docs/make_api.py --out FILE
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import warnings
from pathlib import Path

# (module, names): the public API, in reading order.
PUBLIC = [
    ("optuna_mfkd", ["MFKDSampler", "MFKDPruner", "fidelity_of", "best_high_fidelity_trial", "MaxCostCallback"]),
    ("optuna_mfkd.fidelity", ["is_top_level", "high_fidelity_trials", "study_fidelities", "total_cost",
                              "trial_cost", "record_user_attrs"]),
    ("optuna_mfkd.datasets", ["canonical_dataset", "DatasetInfo"]),
    ("optuna_mfkd.nasbench201.space", ["Architecture", "suggest_architecture", "architecture_from_params",
                                       "cell_key"]),
    ("optuna_mfkd.nasbench201.table", ["load_table", "bundled_table_path", "NB201Table"]),
    ("optuna_mfkd.nasbench201.tabular", ["TabularObjective", "ScoreLevel"]),
    ("optuna_mfkd.training.objectives", ["NB201TrainingObjective", "HybridNB201Objective",
                                         "CellEvaluator"]),
    ("optuna_mfkd.distill.teacher", ["load_teacher", "save_teacher", "default_teacher_path"]),
    ("optuna_mfkd.training.teacher_training", ["train_teacher", "fine_tune_teacher"]),
    ("optuna_mfkd.distill.losses", ["hinton_kd_loss", "nst_loss", "nst_loss_subset"]),
    ("optuna_mfkd.bench.protocols", ["get_protocol", "LowFidelityPool", "LiveLowFidelity"]),
    ("optuna_mfkd.bench.harness", ["run_benchmark"]),
    ("optuna_mfkd.cli", ["main", "SearchConfig"]),
]


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"


def _entry(module: str, name: str, obj: object) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{name}`", "", "```python", f"{kind} {module}.{name}{_signature(obj)}", "```", ""]
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines += [doc, ""]
    if inspect.isclass(obj):
        for attr, member in inspect.getmembers(obj):
            if attr.startswith("_") or attr in vars(object) or attr not in vars(obj):
                continue
            member_doc = inspect.getdoc(member)
            if not member_doc or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            sig = "" if isinstance(member, property) else _signature(member)
            lines += [f"- `{attr}{sig}`: {member_doc.splitlines()[0]}"]
        lines.append("")
    return lines


def render() -> str:
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; the docstrings are the source.",
        "",
    ]
    for module_name, names in PUBLIC:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
            objects = [getattr(module, name) for name in names]  # may import lazily
        out += [f"## `{module_name}`", ""]
        summary = (inspect.getdoc(module) or "").split("\n\n")[0]
        if summary:
            out += [summary, ""]
        for name, obj in zip(names, objects):
            out += _entry(module_name, name, obj)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/api.md from docstrings.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "api.md")
    args = parser.parse_args(argv)
    args.out.write_text(render())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
