"""MFKDSampler: phases, fidelity attributes, the Optuna contract, parallel workers, bad input."""

from __future__ import annotations

import itertools
import logging
import math
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from optuna_mfkd import MaxCostCallback, MFKDSampler, best_high_fidelity_trial, fidelity_of
from optuna_mfkd.sampler import HOW_ATTR, POINT_ATTR
from optuna_mfkd.sampling import history as history_module
from optuna_mfkd.sampling.history import History

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHOICES = list(range(5))


class TwoLevelProblem:
    """6 categorical variables x 5 choices; high = rho * low + discrepancy, low 10x cheaper."""

    def __init__(self, seed: int, rho: float = 0.8, noise: float = 0.3) -> None:
        rng = np.random.default_rng(1000 + seed)
        self.w = rng.normal(size=(6, 5))
        self.d = noise * rng.normal(size=(6, 5))
        self.rho = rho

    def low(self, c) -> float:
        return float(sum(self.w[i, v] for i, v in enumerate(c)))

    def high(self, c) -> float:
        return self.rho * self.low(c) + float(sum(self.d[i, v] for i, v in enumerate(c)))

    def objective(self, trial: optuna.Trial) -> float:
        c = [trial.suggest_categorical(f"x{i}", CHOICES) for i in range(6)]
        level = fidelity_of(trial, default="high")
        trial.set_user_attr("cost", 1.0 if level == "low" else 10.0)
        return self.low(c) if level == "low" else self.high(c)

    def best_high(self) -> float:
        return max(self.high(c) for c in itertools.product(CHOICES, repeat=6))


def _run(sampler, problem, budget):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(problem.objective, callbacks=[MaxCostCallback(budget)])
    return study


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_phases_follow_algorithm_1_and_objective_sees_its_level(storage, tmp_path):
    problem = TwoLevelProblem(0)
    seen = []

    def objective(trial):
        seen.append((trial.number, fidelity_of(trial), trial.user_attrs.get("fidelity")))
        return problem.objective(trial)

    sampler = MFKDSampler(
        fidelities={"low": {"epochs": 1, "kd_loss": "nst"}, "high": {"epochs": 12, "kd_loss": "none"}},
        n_warmup={"low": 8, "high": 3},
        n_candidates="all",
        seed=1,
        strategy="paper",
    )
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'phases.db'}"
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=url)
    study.optimize(objective, n_trials=16)
    levels = [t.user_attrs["fidelity"] for t in study.trials]
    assert levels == ["low"] * 8 + ["high"] * 8
    assert [t.user_attrs["fidelity_level"] for t in study.trials] == [0] * 8 + [1] * 8
    assert all(a == b == levels[n] for n, a, b in seen)
    assert study.trials[0].user_attrs["kd_loss"] == "nst" and study.trials[0].user_attrs["epochs"] == 1
    assert study.trials[-1].user_attrs["kd_loss"] == "none"
    hows = [t.system_attrs.get(HOW_ATTR) for t in study.trials]
    assert hows[11:] == [sampler.acquisition] * 5
    # No highest-level point is proposed twice.
    high = [tuple(t.params.values()) for t in study.trials if t.user_attrs["fidelity"] == "high"]
    assert len(set(high)) == len(high)
    best = best_high_fidelity_trial(study)
    assert best.user_attrs["fidelity"] == "high"
    assert best.value == max(t.value for t in study.trials if t.user_attrs["fidelity"] == "high")


def test_multi_fidelity_beats_random_search_at_equal_cost():
    """Averaged over seeds, the best high-level value found within the same total cost."""
    budget = 250.0
    regret_mf, regret_rs = [], []
    for seed in range(5):
        problem = TwoLevelProblem(seed)
        best = problem.best_high()
        mf = _run(
            MFKDSampler(["low", "high"], n_warmup={"low": 30, "high": 4}, n_candidates="all", seed=seed, max_fit_iter=50, strategy="paper"),
            problem,
            budget,
        )
        rs = _run(optuna.samplers.RandomSampler(seed=seed), problem, budget)
        regret_mf.append(best - best_high_fidelity_trial(mf).value)
        regret_rs.append(best - best_high_fidelity_trial(rs).value)
    assert np.mean(regret_mf) < 0.5 * np.mean(regret_rs), (regret_mf, regret_rs)
    assert sum(m < r for m, r in zip(regret_mf, regret_rs)) >= 4


def test_single_level_is_gp_ucb_and_finds_a_good_point():
    problem = TwoLevelProblem(3)
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 5}, n_candidates="all", seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(problem.objective, n_trials=25)
    assert {t.user_attrs["fidelity"] for t in study.trials} == {"high"}
    values = sorted(problem.high(c) for c in itertools.product(CHOICES, repeat=6))
    # Better than 99.5% of the 15,625 points after 25 evaluations.
    assert best_high_fidelity_trial(study).value >= values[int(0.995 * len(values))]


def test_minimize_direction_is_respected():
    problem = TwoLevelProblem(4)
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 5}, n_candidates="all", seed=0)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(problem.objective, n_trials=20)
    values = sorted(problem.high(c) for c in itertools.product(CHOICES, repeat=6))
    assert study.best_value <= values[int(0.005 * len(values))]


def test_fidelity_of_with_a_sampler_that_is_not_multi_fidelity():
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    assert fidelity_of(trial) is None
    assert fidelity_of(trial, default="high") == "high"
    assert fidelity_of(optuna.trial.FixedTrial({}), default="x") == "x"


def test_enqueued_trial_keeps_its_level():
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 5, "high": 2}, seed=0, strategy="paper")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"x": 1.0}, user_attrs={"fidelity": "high"})
    trial = study.ask({"x": FloatDistribution(0, 2)})
    assert fidelity_of(trial) == "high" and trial.user_attrs["fidelity_level"] == 1


def test_failed_and_pruned_trials_do_not_enter_the_model():
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 2}, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = {"x": FloatDistribution(0, 1)}
    for value in (0.1, 0.2):
        t = study.ask(space)
        study.tell(t, value)
    t = study.ask(space)
    study.tell(t, state=TrialState.FAIL)
    t = study.ask(space)
    study.tell(t, state=TrialState.PRUNED)
    t = study.ask(space)
    assert t.params["x"] is not None
    X, levels, y, running, _ = History(study, study.trials[-1], sampler.fidelities).observations(sampler_encoder(space))
    assert len(y) == 2 and sorted(y.tolist()) == [0.1, 0.2]


def sampler_encoder(space):
    from optuna_mfkd.gp.encoding import SearchSpaceEncoder

    return SearchSpaceEncoder(space)


def test_fit_failure_falls_back_to_a_random_candidate(monkeypatch, caplog):
    import optuna_mfkd.gp.model as gp_model

    def broken(*args, **kwargs):
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(gp_model, "fit_ar1_model", broken)
    caplog.set_level(logging.WARNING, logger="optuna.optuna_mfkd.sampler")
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 2}, seed=0)
    study = optuna.create_study(sampler=sampler)
    optuna.logging.enable_propagation()
    try:
        study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=4)
    finally:
        optuna.logging.disable_propagation()
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert [t.system_attrs.get(HOW_ATTR) for t in study.trials][2:] == ["fallback", "fallback"]
    assert "fitting or optimising the co-kriging model failed" in caplog.text


def test_n_jobs_2_runs_and_never_duplicates_highest_level_points():
    problem = TwoLevelProblem(5)
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 10, "high": 3}, n_candidates="all", seed=0, max_fit_iter=30, strategy="paper")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(problem.objective, n_trials=24, n_jobs=2)
    assert len(study.trials) == 24
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    high = [tuple(t.params.values()) for t in study.trials if t.user_attrs["fidelity"] == "high"]
    assert len(set(high)) == len(high)
    assert sum(t.user_attrs["fidelity"] == "low" for t in study.trials) == 10


def test_running_points_are_excluded_and_believed():
    """Ask/tell with several trials in flight: each gets a different highest-level point."""
    problem = TwoLevelProblem(6)
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 4}, n_candidates="all", seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = {f"x{i}": CategoricalDistribution(CHOICES) for i in range(6)}
    for _ in range(4):
        t = study.ask(space)
        study.tell(t, problem.high(list(t.params.values())))
    pending = [study.ask(space) for _ in range(4)]
    points = [tuple(t.params.values()) for t in pending]
    assert len(set(points)) == 4
    assert all(study._storage.get_trial(t._trial_id).system_attrs[HOW_ATTR] == sampler.acquisition for t in pending)
    assert all(study._storage.get_trial(t._trial_id).system_attrs[POINT_ATTR] for t in pending)


@pytest.mark.parametrize("b_finishes", [False, True])
def test_a_point_another_process_took_meanwhile_is_not_taken_again(b_finishes, monkeypatch):
    """Two processes (two samplers, one seed) on one study: A scans the study, then B
    proposes the same point and holds it (running, or already finished) before A proposes
    from its scan. A sees B's claim, though B's trial is numbered after A's, and proposes
    again: no point is evaluated twice."""
    problem = TwoLevelProblem(6)
    space = {f"x{i}": CategoricalDistribution(CHOICES) for i in range(6)}
    storage = optuna.storages.InMemoryStorage()
    kw = dict(fidelities=["high"], n_warmup={"high": 4}, n_candidates="all")
    first = optuna.create_study(storage=storage, study_name="s", direction="maximize", sampler=MFKDSampler(**kw, seed=0))
    for _ in range(5):
        t = first.ask(space)
        first.tell(t, problem.high(list(t.params.values())))
    sampler_a = MFKDSampler(**kw, seed=1)
    study_a = optuna.load_study(study_name="s", storage=storage, sampler=sampler_a)
    study_b = optuna.load_study(study_name="s", storage=storage, sampler=MFKDSampler(**kw, seed=1))
    trial_a = study_a.ask()
    frozen_a = storage.get_trial(trial_a._trial_id)
    space_a = sampler_a.infer_relative_search_space(study_a, frozen_a)  # A's scan, before B
    trial_b = study_b.ask(space)
    assert trial_b.number > trial_a.number
    if b_finishes:
        study_b.tell(trial_b, problem.high(list(trial_b.params.values())))
    recorded = []
    record = history_module.record_point
    monkeypatch.setattr(history_module, "record_point", lambda study, trial, row, *a: (recorded.append(list(row)), record(study, trial, row, *a)))
    params_a = sampler_a.sample_relative(study_a, frozen_a, space_a)
    assert params_a != trial_b.params
    # A's first proposal was B's point (one seed, one history): the check is what moved it.
    point_b = storage.get_trial(trial_b._trial_id).system_attrs[POINT_ATTR]
    assert recorded[0] == point_b and len(recorded) == 2
    assert storage.get_trial(trial_a._trial_id).system_attrs[POINT_ATTR] == recorded[1]


def test_sqlite_resume_in_a_new_process_continues_the_phase_counts(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    script = textwrap.dedent(
        f"""
        import optuna
        from optuna_mfkd import MFKDSampler, fidelity_of
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = MFKDSampler(["low", "high"], n_warmup={{"low": 4, "high": 2}}, seed=0, max_fit_iter=20, strategy="paper")
        study = optuna.create_study(study_name="s", storage="{url}", direction="maximize",
                                    sampler=sampler, load_if_exists=True)
        def objective(trial):
            x = trial.suggest_float("x", 0, 1)
            return x if fidelity_of(trial) == "low" else 2 * x
        study.optimize(objective, n_trials=3)
        """
    )
    for _ in range(3):
        subprocess.run([sys.executable, "-c", script], check=True)
    study = optuna.load_study(study_name="s", storage=url)
    levels = [t.user_attrs["fidelity"] for t in study.trials]
    assert levels == ["low"] * 4 + ["high"] * 5


def test_study_with_other_fidelities_is_refused():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", sampler=MFKDSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    other = optuna.load_study(study_name="s", storage=storage, sampler=MFKDSampler(["a", "b"], {"a": 1}))
    n_before = len(other.trials)
    with pytest.raises(ValueError, match="fidelities"):
        other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(other.trials) == n_before + 1  # the refused trial is recorded as FAIL, nothing changed
    assert other.trials[0].state == TrialState.COMPLETE


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"fidelities": []}, "fidelities"),
        ({"fidelities": ["a", "a"]}, "duplicate"),
        ({"fidelities": "low"}, "fidelities"),
        ({"fidelities": {"low": 3}}, "fidelities"),
        ({"fidelities": {"low": {"fidelity": 1}}}, "reserved"),
        ({"n_warmup": {"medium": 3}}, "n_warmup"),
        ({"n_warmup": {"low": -1}}, "n_warmup"),
        ({"n_warmup": {"low": 1.5}}, "n_warmup"),
        ({"beta": -0.1}, "beta"),
        ({"beta": math.nan}, "beta"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"n_candidates": "some"}, "n_candidates"),
        ({"refit_every": 0}, "refit_every"),
        ({"fit_gtol": 0.0}, "fit_gtol"),
        ({"fit_gtol": math.inf}, "fit_gtol"),
        ({"fit_gtol": "1e-2"}, "fit_gtol"),
        ({"kernel": "matern"}, "kernel"),
        ({"deterministic_objective": "yes"}, "deterministic_objective"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MFKDSampler(**kwargs)


def test_unsupported_distribution_is_named():
    from optuna.distributions import BaseDistribution

    class Weird(BaseDistribution):
        def to_external_repr(self, v):
            return v

        def to_internal_repr(self, v):
            return v

        def single(self):
            return False

        def _contains(self, v):
            return True

    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 0}, seed=0)
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match="'w'"):
        sampler.sample_relative(study, study.ask()._cached_frozen_trial, {"w": Weird()})


def test_mixed_numeric_space_respects_bounds_and_types():
    sampler = MFKDSampler(fidelities=["high"], n_warmup={"high": 3}, n_candidates=500, seed=0)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        a = trial.suggest_float("a", 1e-4, 1.0, log=True)
        b = trial.suggest_int("b", 1, 64, log=True)
        c = trial.suggest_float("c", -2, 2, step=0.5)
        d = trial.suggest_categorical("d", ["u", "v"])
        return (math.log10(a) + 2) ** 2 + (b - 8) ** 2 / 64 + c**2 + (d == "v")

    study.optimize(objective, n_trials=12)
    for t in study.trials:
        assert 1e-4 <= t.params["a"] <= 1.0 and isinstance(t.params["b"], int)
        assert t.params["c"] in np.arange(-2, 2.01, 0.5)
    assert study.best_value < 1.5


def test_point_key_treats_equivalent_points_as_one():
    """With NB201's canonical form as the key, no two isomorphic cells are evaluated."""
    from optuna_mfkd.nasbench201.space import architecture_from_params, suggest_architecture

    def key(params):
        return architecture_from_params(params).canonical_form()

    sampler = MFKDSampler(
        fidelities=["high"], n_warmup={"high": 15}, n_candidates="all", seed=0, point_key=key
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        arch = suggest_architecture(trial)
        # Rewards cells with many convolutions; isomorphic cells score alike.
        return sum(op.startswith("nor_conv") for op in arch.ops) + 0.1 * (arch.ops[5] == "skip_connect")

    study.optimize(objective, n_trials=30)
    forms = [key(t.params) for t in study.trials]
    assert len(set(forms)) == len(forms)
    with pytest.raises(ValueError, match="point_key"):
        MFKDSampler(point_key="canonical")


def test_trial_set_up_by_the_sampler_has_a_heartbeat(tmp_path):
    """A process that dies inside ``study.ask`` leaves a trial the stale check can fail."""
    import time

    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(storage=storage, sampler=MFKDSampler(["low", "high"], seed=0))
    trial = study.ask()  # no heartbeat thread runs for an asked trial: like a dead worker
    assert trial.user_attrs["fidelity"] == "low"
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_kernel_and_deterministic_objective_reach_every_fit(monkeypatch, kernel, deterministic):
    """The sampler's ``kernel`` and ``deterministic_objective`` are the fits' base kernels
    and noise: every level's noise fixed at 1e-6 (not fitted) for a deterministic objective."""
    from optuna_mfkd.gp import model as gp_model

    fitted = []
    real_fit = gp_model.fit_ar1_model

    def spy(*args, **kwargs):
        fitted.append(real_fit(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(gp_model, "fit_ar1_model", spy)
    sampler = MFKDSampler(
        ["low", "high"], n_warmup={"low": 4, "high": 3}, costs={"low": 0.1, "high": 1.0}, seed=0,
        kernel=kernel, deterministic_objective=deterministic,
    )
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        shift = 0.1 if fidelity_of(trial) == "low" else 0.0
        return (x - 0.3) ** 2 + (y - 0.6 - shift) ** 2

    study.optimize(objective, n_trials=10)
    assert fitted, "no model was fitted"
    for f in fitted:
        nus = {k.base_kernel.nu for k in f.model.covar_module.base_kernels}
        assert nus == {math.inf if kernel == "rbf" else 2.5}
        noise = f.model.likelihood.noise_covar.noise.detach().reshape(-1)
        if deterministic:
            assert torch.allclose(noise, torch.full_like(noise, 1e-6))
            assert not f.model.likelihood.noise_covar.raw_noise.requires_grad
        else:
            assert bool((noise > 1e-5).all())  # fitted under its Gamma(1.1, 30) prior
