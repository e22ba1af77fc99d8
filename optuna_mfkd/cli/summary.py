"""The end of a search: the printed summary, the study's note and its summary figure."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optuna_mfkd.cli.config import SearchConfig
from optuna_mfkd.cli.inputs import load_table


def summary_lines(study: Any, config: SearchConfig, table: Any | None) -> list[str]:
    """The end-of-search summary: trials per level, cost, best high-fidelity cell."""
    from collections import Counter

    from optuna.trial import TrialState

    from optuna_mfkd.fidelity import best_high_fidelity_trial, fidelity_of, total_cost
    from optuna_mfkd.nasbench201.space import architecture_from_params

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    per_level = Counter(fidelity_of(t, default="-") for t in done)
    levels = ", ".join(f"{n} at {name}" for name, n in sorted(per_level.items()))
    lines = [f"study {study.study_name!r}: {len(study.trials)} trials ({levels or 'none complete'}), "
             f"cost {total_cost(study):,.0f} s"]
    try:
        best = best_high_fidelity_trial(study, config.top_level)
    except ValueError:
        return [*lines, "no high-fidelity trial has finished yet"]
    arch = architecture_from_params(best.params)
    lines += [f"best high-fidelity cell: {arch.arch_str} (NB201 index {arch.index}, trial {best.number})",
              f"  {config.e2}-epoch validation accuracy: {best.value:.2f}%"]
    if table is not None:
        lines.append(f"  200-epoch test accuracy (NB201 table): {table.test_acc(config.dataset, arch.index):.2f}%")
    return lines


def summary_figure(study: Any, config: SearchConfig, path: Path) -> Path:
    """Two panels: the best high-fidelity value against the cost spent (anytime curve), and
    every trial's value by trial number, coloured by fidelity (fidelity scatter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    from optuna_mfkd.fidelity import fidelity_of, is_top_level, trial_cost

    high = config.top_level
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    spent, best, curve = 0.0, -math.inf, []
    for t in trials:
        spent += trial_cost(t)
        if t.state == TrialState.COMPLETE and is_top_level(t, high) and t.value > best:
            best = t.value
        if best > -math.inf:
            curve.append((spent, best))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if curve:
        left.step(*zip(*curve, strict=True), where="post")
    left.set(xlabel="cost spent (s)", ylabel=f"best {high} accuracy (%)", title="anytime curve")
    for name in config.level_settings():
        pts = [(t.number, t.value) for t in trials
               if t.state == TrialState.COMPLETE and fidelity_of(t, default=high) == name]
        if pts:
            right.scatter(*zip(*pts, strict=True), s=12, label=name)
    right.set(xlabel="trial", ylabel="accuracy (%)", title="trials by fidelity")
    right.legend(fontsize=8)
    fig.suptitle(f"study {study.study_name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def upload_figure(study: Any, config: SearchConfig, artifact_dir: Path) -> None:
    """Store the summary figure as a study artifact (``optuna-dashboard --artifact-dir``)."""
    import tempfile

    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifact_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        png = summary_figure(study, config, Path(tmp) / "mfkd-summary.png")
        upload_artifact(artifact_store=FileSystemArtifactStore(str(artifact_dir)), file_path=str(png),
                        study_or_trial=study, mimetype="image/png")


def report(study: Any, config: SearchConfig, args: argparse.Namespace, url: str) -> None:
    """Print the summary and store it as the study's note (shown by optuna-dashboard)."""
    table = None
    if config.mode in ("tabular", "hybrid"):
        table = load_table(args)
    lines = summary_lines(study, config, table)
    print("\n".join(lines))
    artifacts = getattr(args, "artifact_dir", None)
    if artifacts is not None:
        upload_figure(study, config, artifacts)
        print(f"open the dashboard: optuna-dashboard {url} --artifact-dir {artifacts}")
    else:
        print(f"open the dashboard: optuna-dashboard {url}")
    try:
        from optuna_dashboard import save_note

        used = asdict(config)
        if config.mode == "tabular":  # tabular levels are NB201's cross-entropy runs: no training loss applies
            used.pop("kd_loss", None)
        settings = ", ".join(f"{k}={v}" for k, v in used.items())
        save_note(study, "## MF-KD search\n\n" + "\n".join(f"    {line}" for line in lines)
                  + f"\n\nSettings: {settings}\n")
    except ImportError:  # the dashboard is optional at run time
        pass
