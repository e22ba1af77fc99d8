"""MFKDSampler as a drop-in Optuna sampler: the default on a plain objective, conditional
spaces, constraints, multi-objective studies, costs and the errors of bad input."""

from __future__ import annotations

import datetime
import logging
import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from optuna_mfkd import MaxCostCallback, MFKDSampler, fidelity_of, level_costs
from optuna_mfkd.fidelity import OBJECTIVE_START_ATTR
from optuna_mfkd.gp.acquisition import ConstrainedAcquisition, build_acquisition, posterior_mean_var
from optuna_mfkd.gp.model import fit_ar1_model
from optuna_mfkd.sampler import HOW_ATTR


@pytest.fixture
def propagate(caplog):
    caplog.set_level(logging.WARNING)
    optuna.logging.enable_propagation()
    yield caplog
    optuna.logging.disable_propagation()


def _quadratic(trial: optuna.Trial) -> float:
    return sum((trial.suggest_float(f"x{i}", 0.0, 1.0) - 0.2 * i) ** 2 for i in range(4))


def test_the_default_is_single_fidelity_gp_bo() -> None:
    sampler = MFKDSampler(seed=0)
    assert sampler.fidelities == ["high"] and sampler.n_warmup == {"high": 10}
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=16)
    assert {t.user_attrs["fidelity"] for t in study.trials} == {"high"}
    how = [t.system_attrs.get(HOW_ATTR) for t in study.trials]
    assert how[10:] == ["logei"] * 6  # model-based right after the 10 random trials
    # the model-based trials beat the random ones on this smooth function
    assert min(t.value for t in study.trials[10:]) < min(t.value for t in study.trials[:10])


def test_levels_named_without_fidelities_say_how_to_declare_them() -> None:
    with pytest.raises(ValueError, match=r"n_warmup names unknown fidelities \['low'\].*declare the levels"):
        MFKDSampler(n_warmup={"low": 5, "high": 2})
    with pytest.raises(ValueError, match=r"costs names unknown fidelities \['low'\].*declare the levels"):
        MFKDSampler(costs={"low": 1.0})


def _conditional(trial: optuna.Trial) -> float:
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if kind == "a":
        return (trial.suggest_float("x", -2.0, 2.0) - 0.5) ** 2
    return (trial.suggest_int("n", 0, 10) - 3) ** 2 / 10 + 0.2


@pytest.mark.parametrize("fidelities", [None, ["low", "high"]])
def test_a_conditional_space_is_never_sampled_at_random_after_the_warm_up(fidelities, propagate) -> None:
    kwargs = {} if fidelities is None else {"n_warmup": {"low": 4, "high": 2}, "costs": {"low": 1.0, "high": 5.0}}
    sampler = MFKDSampler(fidelities, seed=0, max_fit_iter=20, **kwargs)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_conditional, n_trials=22)
    warm = 10 if fidelities is None else 6
    how = [t.system_attrs.get(HOW_ATTR) for t in study.trials[warm:]]
    assert all(h in ("logei", "logei+mf-mes", "logei+top-only", "logei+mf-mes+top-only") for h in how), how
    assert "already evaluated" not in propagate.text


def _branin_like(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    trial.set_constraint("sum", x + y - 1.0)
    return (x - 0.9) ** 2 + (y - 0.9) ** 2  # constrained optimum 0.32 at (0.5, 0.5)


def test_constraints_set_in_the_objective_steer_the_search() -> None:
    study = optuna.create_study(sampler=MFKDSampler(seed=0))
    study.optimize(_branin_like, n_trials=25)
    feasible = [t.value for t in study.trials if t.constraints["sum"] <= 0]
    assert min(feasible) < 0.32 + 0.01
    # the unconstrained optimum (0.9, 0.9) is infeasible: the search stays near the boundary
    last = study.trials[15:]
    assert np.median([t.params["x"] + t.params["y"] for t in last]) < 1.1


def test_constraints_func_is_stored_and_used() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("x", x)
        return (x - 0.9) ** 2

    sampler = MFKDSampler(seed=0, constraints_func=lambda t: [t.user_attrs["x"] - 0.5])
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=18)
    assert all(t.constraints == {"0": t.params["x"] - 0.5} for t in study.trials)
    best = min(t.value for t in study.trials if t.params["x"] <= 0.5)
    assert best == pytest.approx(0.16, abs=0.005)  # x = 0.5


def test_the_constrained_acquisition_matches_its_formula() -> None:
    """log EI(x) + log P(c(x) <= 0), the probability from the constraint model's posterior
    of ``-c`` in observation units: Phi(mu(x) / sigma(x))."""
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(6, 2, generator=gen, dtype=torch.float64)
    lv = torch.ones(6, dtype=torch.long)
    f = fit_ar1_model(X, lv, -((X - 0.3) ** 2).sum(-1), 2, max_iter=30)
    c = torch.sin(4 * X[:, 0]) + X[:, 1] - 1.0  # feasible when <= 0: the model is of -c
    g = fit_ar1_model(X, lv, -c, 2, max_iter=30)
    zero = float(g.standardisation.apply(torch.zeros(1, dtype=torch.float64), torch.tensor([1]))[0])
    # the value 0 in model units, from the standardisation's own centre and scale
    assert zero == pytest.approx((0.0 - g.standardisation.centre[-1]) / g.standardisation.scale[-1])
    acqf = build_acquisition("logei", f, constraints=[(g, zero)], best_f=0.5)
    assert isinstance(acqf, ConstrainedAcquisition)
    x = torch.rand(7, 2, generator=gen, dtype=torch.float64)
    got = acqf(x.unsqueeze(-2)).detach().numpy()
    mu, var = posterior_mean_var(g, x)
    logei = build_acquisition("logei", f, best_f=0.5)(x.unsqueeze(-2)).detach().numpy()
    want = logei + stats.norm.logcdf(mu.numpy() / np.sqrt(var.numpy()))
    assert np.all(want - logei > -30)  # probabilities this test can tell apart
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # no feasible point yet: the probability of feasibility alone
    only = build_acquisition("logei", f, constraints=[(g, zero)], best_f=float("-inf"))
    np.testing.assert_allclose(only(x.unsqueeze(-2)).detach().numpy(), want - logei, rtol=1e-6, atol=1e-8)


def test_multi_objective_studies_get_one_line_and_no_running_trial() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=MFKDSampler(seed=0))
    with pytest.raises(ValueError, match="single-objective studies only; study .* has 2 objectives") as err:
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    assert "\n" not in str(err.value)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_an_enqueued_unknown_level_is_refused_before_it_runs() -> None:
    study = optuna.create_study(sampler=MFKDSampler(["low", "high"], seed=0))
    study.enqueue_trial({"x": 0.5}, user_attrs={"fidelity": "nope"})
    ran = []
    with pytest.raises(ValueError, match=r"enqueued with fidelity 'nope'; this sampler's fidelities are \['low', 'high'\]"):
        study.optimize(lambda t: ran.append(t.suggest_float("x", 0, 1)) or 0.0, n_trials=1)
    assert ran == [] and [t.state for t in study.trials] == [TrialState.FAIL]
    assert "fidelity_level" not in study.trials[0].user_attrs


def test_a_study_of_other_levels_is_refused_without_a_running_trial() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", sampler=MFKDSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    other = optuna.load_study(study_name="s", storage=storage, sampler=MFKDSampler(["a", "b"]))
    for _ in range(2):  # every attempt is refused the same way
        with pytest.raises(ValueError, match=r"was run with fidelities \['high'\], this sampler has \['a', 'b'\]"):
            other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert [t.state for t in other.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": "abc"}, "seed must be None or a non-negative integer, got 'abc'"),
        ({"seed": -1}, "seed must be None or a non-negative integer, got -1"),
        ({"torch_threads": 0}, "torch_threads must be a positive integer, got 0"),
        ({"constraints_func": "x"}, "constraints_func must be callable"),
        ({"fidelities": 3}, "fidelities must be a list of level names or a dict"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_them(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MFKDSampler(**kwargs)


def test_max_cost_callback_warns_once_about_missing_and_bad_costs(propagate) -> None:
    study = optuna.create_study()
    callback = MaxCostCallback(100.0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, callbacks=[callback])
    assert propagate.text.count("has no 'cost' user attribute") == 1

    def objective(trial):
        trial.set_user_attr("cost", "12 s")
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=3, callbacks=[callback])
    assert propagate.text.count("has 'cost' = '12 s', not a finite number") == 1
    with pytest.raises(ValueError, match="budget"):
        MaxCostCallback(True)


def test_durations_count_the_objective_alone() -> None:
    t0 = datetime.datetime(2026, 1, 1)

    def trial(number, level, objective_s, end_s):
        stamp = (t0 + datetime.timedelta(seconds=objective_s)).isoformat()
        return FrozenTrial(
            number=number, state=TrialState.COMPLETE, value=1.0, values=None, datetime_start=t0,
            datetime_complete=t0 + datetime.timedelta(seconds=end_s), params={}, distributions={},
            user_attrs={"fidelity": level}, system_attrs={OBJECTIVE_START_ATTR: stamp}, intermediate_values={},
            trial_id=number,
        )

    # the sampler's step took 5 s (start -> objective start); the objectives 1 s and 10 s
    trials = [trial(0, "low", 5, 6), trial(1, "high", 5, 15)]
    assert level_costs(trials, ["low", "high"]) == {"low": pytest.approx(1.0), "high": pytest.approx(10.0)}


def test_the_sampler_notes_when_the_objective_got_its_point(propagate) -> None:
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 3, "high": 1}, seed=0, max_fit_iter=10)
    study = optuna.create_study(sampler=sampler)

    study.optimize(lambda t: _quadratic(t) + (fidelity_of(t) == "low"), n_trials=7)
    for t in study.trials:
        start = datetime.datetime.fromisoformat(t.system_attrs[OBJECTIVE_START_ATTR])
        assert t.datetime_start <= start <= t.datetime_complete
    # no cost attribute and no costs=: the level choice says once where its costs come from
    assert propagate.text.count("carry no numeric 'cost' user attribute") == 1
    assert math.isfinite(study.best_value)
