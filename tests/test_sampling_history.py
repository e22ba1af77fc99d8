"""The sampler reads the study once per hook, and only ``sampling/history.py`` uses Optuna's
private names (each of which must still exist in the installed Optuna)."""

from __future__ import annotations

import ast
import importlib
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_mfkd import MFKDSampler, fidelity_of
from optuna_mfkd.sampling.history import OPTUNA_PRIVATE_NAMES, History

PACKAGE = Path(__file__).resolve().parents[1] / "optuna_mfkd"
HOOKS = ("before_trial", "infer_relative_search_space", "sample_relative", "sample_independent", "after_trial")


class CountingStorage(optuna.storages.InMemoryStorage):
    """Counts the full scans (``get_all_trials`` over COMPLETE trials) made inside the
    sampler, by trial number and hook; the check of a claim (``claimed_elsewhere``) is
    counted apart, under ``"claim"``."""

    def __init__(self) -> None:
        super().__init__()
        self.scans: Counter[tuple[int, str]] = Counter()
        self.current: int | None = None

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        if states is None or TrialState.COMPLETE in states:
            hook = self._sampler_hook()
            if hook is not None:
                self.scans[(self.current, hook)] += 1
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)

    @staticmethod
    def _sampler_hook() -> str | None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == "claimed_elsewhere":
                return "claim"
            if frame.f_code.co_name in HOOKS and frame.f_code.co_filename.endswith("optuna_mfkd/sampler.py"):
                return frame.f_code.co_name
            frame = frame.f_back
        return None


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    shift = 0.0 if fidelity_of(trial) == "high" else 0.1
    return (x - 0.3 - shift) ** 2 + (y - 0.6) ** 2


@pytest.mark.parametrize("strategy", ["paper", "cost-aware"])
def test_one_full_scan_per_hook_and_two_per_trial(strategy: str) -> None:
    storage = CountingStorage()
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 6, "high": 2}, costs={"low": 1.0, "high": 10.0}, seed=0,
                          strategy=strategy, max_fit_iter=20)
    study = optuna.create_study(storage=storage, sampler=sampler)
    n_trials = 16
    for n in range(n_trials):
        storage.current = n  # the number ask() gives
        trial = study.ask()
        assert trial.number == n
        study.tell(trial, _objective(trial))
    for n in range(n_trials):
        assert storage.scans[(n, "before_trial")] == 1
        relative = sum(storage.scans[(n, hook)] for hook in HOOKS[1:])
        assert relative == 1, (n, storage.scans)
        # one check of the point's claim once the search space is known (not in trial 0)
        assert storage.scans[(n, "claim")] == (n > 0), (n, storage.scans)
    assert sum(storage.scans.values()) == 3 * n_trials - 1
    # the model-based phase was reached, at both levels
    assert {t.user_attrs["fidelity"] for t in study.trials} == {"low", "high"}
    assert any(t.system_attrs.get("mfkd:how") not in (None, "random", "promote") for t in study.trials)


def test_history_of_a_trial_leaves_it_out_and_orders_levels() -> None:
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 2, "high": 1}, seed=0, strategy="paper")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for value in (1.0, 2.0, 3.0):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, value)
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    history = History(study, study.trials[-1], sampler.fidelities)
    assert running.number not in {t.number for t in history.trials}
    assert history.counts() == [2, 1]
    assert history.seen_levels() == {"low", "high"}
    assert list(history.search_space()) == ["x"]


def _owner(path: str) -> object:
    module, _, attr = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize(("owner", "name"), OPTUNA_PRIVATE_NAMES)
def test_every_private_optuna_name_still_exists(owner: str, name: str) -> None:
    obj = _owner(owner)
    if name in ("_storage", "_study_id"):  # instance attributes of a Study
        obj = optuna.create_study()
    elif name == "_trial_id":
        study = optuna.create_study()
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        obj = study.trials[0]
    assert hasattr(obj, name), (
        f"Optuna {optuna.__version__} no longer has {owner}.{name}, which optuna_mfkd/sampling/history.py uses"
    )


def test_only_history_uses_private_optuna_names() -> None:
    files = [PACKAGE / "sampler.py", PACKAGE / "pruning.py", *sorted((PACKAGE / "sampling").glob("*.py"))]
    offenders = []
    for path in files:
        if path.name == "history.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna."):
                if any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{path.name}: from {node.module} import ...")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if not (isinstance(base, ast.Name) and base.id in ("self", "cls")):
                    offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert not offenders, offenders
