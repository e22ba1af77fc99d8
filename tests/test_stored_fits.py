"""The fitted hyperparameters live in the study: every fit is stored with the trial it was made
for, and a new sampler on the study (another worker, a resumed process) goes on from the latest
one, refitting on the same schedule as the sampler that made it, instead of from the defaults."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from conftest import two_level_bowl

from optuna_mfkd import MFKDSampler
from optuna_mfkd.sampling import proposer as proposer_module
from optuna_mfkd.sampling.history import FIT_ATTR, History
from optuna_mfkd.sampling.options import REFIT_GROWTH


def _bowl(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return (x - 0.3) ** 2 + (y - 0.7) ** 2 + 0.1 * math.sin(7 * x)


@pytest.fixture
def fits_made(monkeypatch):
    """Every call of the model fit in the sampler: (observations, fitted?, warm start)."""
    calls: list[tuple[int, bool, dict | None]] = []
    real = proposer_module.gp_model.fit_ar1_model

    def spy(X, levels, y, num_levels, **kwargs):
        calls.append((len(y), kwargs.get("fit", True), kwargs.get("warm_start")))
        return real(X, levels, y, num_levels, **kwargs)

    monkeypatch.setattr(proposer_module.gp_model, "fit_ar1_model", spy)
    return calls


def _copy(study: optuna.Study, system_attrs: dict[int, dict] | None = None) -> optuna.Study:
    """The study's trials in a new study, with ``system_attrs[number]`` as their system
    attributes (none by default: no stored fits)."""
    fresh = optuna.create_study()
    for t in study.trials:
        fresh.add_trial(optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, value=t.value, user_attrs=t.user_attrs,
            system_attrs=(system_attrs or {}).get(t.number)))
    return fresh


def test_every_fit_is_stored_with_its_trial_and_the_latest_is_read_back(fits_made):
    study = optuna.create_study(sampler=MFKDSampler(seed=0, max_fit_iter=20))
    study.optimize(_bowl, n_trials=18)
    refits = [(n, w) for n, fit, w in fits_made if fit]
    stored = [t.system_attrs[FIT_ATTR] for t in study.trials if FIT_ATTR in t.system_attrs]
    assert len(stored) == len(refits) > 0  # one record per fit, with the trial it was made for
    (key,) = stored[-1]
    assert key == repr((("x", "y"),))  # the model's parameter names
    # the latest record is the fit on the most observations, and History reads it back
    n, state = History(study, None, ["high"]).fits()[key]
    assert n == stored[-1][key]["n"] == max(n for n, _ in refits)
    assert set(state) == set(stored[-1][key]["state"]) and all(isinstance(v, list | float) for v in state.values())


def test_a_new_sampler_goes_on_from_the_stored_fit(fits_made):
    first = MFKDSampler(seed=0, max_fit_iter=20)
    study = optuna.create_study(sampler=first)
    study.optimize(_bowl, n_trials=16)
    n_last, state = History(study, None, ["high"]).fits()[repr((("x", "y"),))]
    fits_made.clear()

    study.sampler = MFKDSampler(seed=1, max_fit_iter=20)  # a new process joins
    study.optimize(_bowl, n_trials=1)
    (n, fitted, warm), = fits_made
    assert n == 16
    # the refit schedule goes on: a fit once the data grew by REFIT_GROWTH since the stored one
    assert fitted == (n - n_last >= max(1, math.ceil(REFIT_GROWTH * n_last)))
    assert warm is not None and set(warm) == set(state)
    for name, value in state.items():
        torch.testing.assert_close(warm[name], torch.tensor(value, dtype=torch.float64))

    # the same history without stored fits: the new sampler fits from the defaults
    fits_made.clear()
    fresh = _copy(study)
    fresh.sampler = MFKDSampler(seed=1, max_fit_iter=20)
    fresh.optimize(_bowl, n_trials=1)
    (n, fitted, warm), = fits_made
    assert n == 17 and fitted and warm is None


def test_two_levels_store_their_fit_with_the_planned_trial():
    study = optuna.create_study(sampler=MFKDSampler(["low", "high"], n_warmup={"low": 6, "high": 2}, seed=0,
                                                    max_fit_iter=20))
    study.optimize(two_level_bowl, n_trials=14)
    after = study.trials[8:]
    assert all(FIT_ATTR in t.system_attrs for t in after[:1])  # the first model step fits
    n = [t.system_attrs[FIT_ATTR][repr((("x", "y"),))]["n"] for t in after if FIT_ATTR in t.system_attrs]
    assert n == sorted(n) and n[0] == 8


def test_a_malformed_stored_fit_is_ignored(fits_made):
    study = optuna.create_study(sampler=MFKDSampler(seed=0, max_fit_iter=20))
    study.optimize(_bowl, n_trials=12)
    key = repr((("x", "y"),))
    bad = _copy(study, {11: {FIT_ATTR: {key: {"n": 99, "state": {"a": "not numbers"}}}},
                        10: {FIT_ATTR: {key: "garbage"}}, 9: {FIT_ATTR: ["garbage"]}})
    assert History(bad, None, ["high"]).fits()[key] == (99, {"a": "not numbers"})
    fits_made.clear()
    bad.sampler = MFKDSampler(seed=1, max_fit_iter=20)
    bad.optimize(_bowl, n_trials=2)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in bad.trials)
    assert fits_made[0][1] and fits_made[0][2] is None  # fitted from the defaults
