"""The step (learning-curve) mode: rungs of reported values as levels, MFKDPruner, and
Optuna's own pruners beside it."""

from __future__ import annotations

import collections
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_mfkd import MFKDPruner, MFKDSampler
from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.pruning import rung_reached
from optuna_mfkd.sampling.history import History

SPACE = {"x": FloatDistribution(0.0, 1.0)}


def _curve(x: float, step: int) -> float:
    """A learning curve that rises to 1 - (x - 0.7)^2 (maximised)."""
    return (1 - (x - 0.7) ** 2) * (1 - math.exp(-step / 3))


def _trial(x: float, steps: list[int], state=TrialState.COMPLETE):
    values = {s: _curve(x, s) for s in steps}
    final = values[steps[-1]] if state == TrialState.COMPLETE else None
    return create_trial(
        state=state, value=final, params={"x": x}, distributions=SPACE, intermediate_values=values
    )


def test_rungs_are_the_last_report_at_or_below_each_step() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0.1, [1, 2, 4, 5, 9]))  # complete: rungs 1, 3 (step 2), final
    study.add_trial(_trial(0.5, [1, 2, 3], TrialState.PRUNED))  # pruned after step 3
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.3}, distributions=SPACE))
    running = study.ask(SPACE)
    running.report(0.25, 2)
    history = History(study, None, ["step 1", "step 3", "step 9"], with_pruned=True)
    obs = history.rung_observations(SearchSpaceEncoder(SPACE), (1, 3, 9), max_per_rung=100)
    got = sorted(zip(obs.X[:, 0].round(6), obs.levels, obs.y.round(9)))
    want = sorted(
        [
            (0.1, 0, round(_curve(0.1, 1), 9)),
            (0.1, 1, round(_curve(0.1, 2), 9)),
            (0.1, 2, round(_curve(0.1, 9), 9)),
            (0.5, 0, round(_curve(0.5, 1), 9)),
            (0.5, 1, round(_curve(0.5, 3), 9)),
            (round(running.params["x"], 6), 1, 0.25),
        ]
    )
    assert got == want
    assert [lv for lv, _ in obs.running] == [2]  # the running trial is pending at the top
    # each lower rung keeps its most recent trials only
    capped = history.rung_observations(SearchSpaceEncoder(SPACE), (1, 3, 9), max_per_rung=1)
    assert collections.Counter(capped.levels.tolist()) == {0: 1, 1: 1, 2: 1}


def test_rung_reached_is_the_first_report_past_a_step() -> None:
    steps = (1, 3, 9)
    assert rung_reached(steps, []) is None
    assert rung_reached(steps, [1]) == 0
    assert rung_reached(steps, [1, 2]) is None
    assert rung_reached(steps, [1, 2, 3]) == 1
    assert rung_reached(steps, [2, 5]) == 1
    assert rung_reached(steps, [0.5, 10]) == 1  # the final step is no rung: the trial ends there
    assert rung_reached(steps, [1, 2, 3, 9]) is None


def _study_with_history(seed: int) -> tuple[optuna.Study, MFKDPruner]:
    sampler = MFKDSampler(steps=[1, 3, 9], seed=seed, max_fit_iter=30)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rng = np.random.default_rng(seed)
    for x in rng.random(12):
        study.add_trial(_trial(float(x), list(range(1, 10))))
    return study, MFKDPruner(sampler)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pruner_stops_a_poor_curve_and_keeps_a_good_one(seed: int) -> None:
    study, pruner = _study_with_history(seed)
    verdicts = {}
    for x in (0.02, 0.7):
        study.enqueue_trial({"x": x})
        trial = study.ask(SPACE)
        trial.report(_curve(x, 1), 1)
        frozen = study.get_trials(deepcopy=False)[-1]
        verdicts[x] = pruner.prune(study, frozen)
        attrs = study.get_trials(deepcopy=False)[-1].user_attrs
        assert 0.0 <= attrs["p_improve@1"] <= 1.0
        study.tell(trial, state=TrialState.PRUNED if verdicts[x] else TrialState.FAIL)
    assert verdicts == {0.02: True, 0.7: False}
    pruned = [t for t in study.trials if t.user_attrs.get("pruned_by")]
    assert len(pruned) == 1 and pruned[0].params["x"] == 0.02


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    value = 0.0
    for step in range(1, 10):
        value = _curve(x, step) - 0.3 * (y - 0.2) ** 2
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


@pytest.mark.parametrize("pruner", ["mfkd", "hyperband"])
def test_the_step_mode_runs_optunas_pruning_objective(pruner: str) -> None:
    sampler = MFKDSampler(steps=[1, 3, 9], seed=0, max_fit_iter=20)
    chosen = (
        MFKDPruner(sampler)
        if pruner == "mfkd"
        else optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=chosen)
    study.optimize(_objective, n_trials=24)
    states = collections.Counter(t.state for t in study.trials)
    assert states[TrialState.PRUNED] > 0 and states[TrialState.COMPLETE] > 0
    how = [t.system_attrs.get("mfkd:how") for t in study.trials[10:]]
    assert all(h == "logei" for h in how), how  # model-based after 10 trials, pruned ones counted
    assert "fidelity" not in study.trials[-1].user_attrs
    optimum = _curve(0.7, 9)  # at y = 0.2
    assert study.best_value > optimum - 0.02


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": [3, 1]}, "increasing positive steps"),
        ({"steps": [3]}, "at least two steps"),
        ({"steps": "1,3"}, "list of increasing positive steps"),
        ({"steps": [1, 3], "fidelities": ["a", "b"]}, "fidelities cannot be given with it"),
        ({"steps": [1, 3], "strategy": "paper"}, "strategy cannot be given with it"),
    ],
)
def test_bad_steps_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MFKDSampler(**kwargs)


def test_the_pruner_needs_the_step_mode() -> None:
    with pytest.raises(ValueError, match="step mode"):
        MFKDPruner(MFKDSampler())
    with pytest.raises(ValueError, match="min_probability"):
        MFKDPruner(MFKDSampler(steps=[1, 2]), min_probability=1.5)


def test_the_step_mode_runs_with_two_threads_and_no_repeated_point() -> None:
    sampler = MFKDSampler(steps=[1, 3, 9], seed=0, max_fit_iter=20)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=MFKDPruner(sampler))
    study.optimize(_objective, n_trials=16, n_jobs=2)
    assert len(study.trials) == 16
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    points = [(t.params["x"], t.params["y"]) for t in study.trials]
    assert len(set(points)) == len(points)


def test_a_resumed_step_mode_study_goes_on_with_the_model_and_the_pruner(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'steps.db'}"
    for n_trials in (11, 4):  # a new sampler and pruner, as a new process would make them
        sampler = MFKDSampler(steps=[1, 3, 9], seed=n_trials, max_fit_iter=20)
        study = optuna.create_study(
            study_name="s",
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=sampler,
            pruner=MFKDPruner(sampler),
        )
        study.optimize(_objective, n_trials=n_trials)
    trials = study.trials
    assert len(trials) == 15
    assert all(t.system_attrs.get("mfkd:how") == "logei" for t in trials[11:])
    assert all(any(k.startswith("p_improve@") for k in t.user_attrs) for t in trials[11:])
    points = [(t.params["x"], t.params["y"]) for t in trials]
    assert len(set(points)) == len(points)


WORKER = """
import math, os, sys
import optuna
from optuna_mfkd import MFKDPruner, MFKDSampler
optuna.logging.set_verbosity(optuna.logging.ERROR)

def objective(trial):
    trial.set_user_attr("worker", os.getpid())
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    value = 0.0
    for step in range(1, 10):
        value = (1 - (x - 0.7) ** 2) * (1 - math.exp(-step / 3)) - 0.3 * (y - 0.2) ** 2
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value

sampler = MFKDSampler(steps=[1, 3, 9], seed=int(sys.argv[2]), max_fit_iter=20)
study = optuna.load_study(study_name="s", storage=sys.argv[1], sampler=sampler, pruner=MFKDPruner(sampler))
study.optimize(objective, n_trials=3)
"""


def test_two_processes_share_the_rungs_of_one_sqlite_study(tmp_path) -> None:
    import subprocess
    import sys

    storage = f"sqlite:///{tmp_path / 'steps.db'}"
    sampler = MFKDSampler(steps=[1, 3, 9], seed=0)
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=sampler
    )
    study.optimize(_objective, n_trials=10)  # the warm-up, written by this process
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, storage, str(seed)], stderr=subprocess.PIPE, text=True
        )
        for seed in (1, 2)
    ]
    for w in workers:
        assert w.wait(timeout=600) == 0, w.stderr.read()
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert len(trials) == 16
    by_worker = collections.Counter(t.user_attrs.get("worker") for t in trials[10:])
    assert len(by_worker) == 2 and set(by_worker.values()) == {3}
    # every worker trial was model-based and judged by the pruner from the others' rungs:
    # neither worker had finished a trial of its own when its first trial began
    assert all(t.system_attrs.get("mfkd:how") == "logei" for t in trials[10:])
    assert all(any(k.startswith("p_improve@") for k in t.user_attrs) for t in trials[10:])
    points = [(t.params["x"], t.params["y"]) for t in trials]
    assert len(set(points)) == len(points)


def test_before_the_model_can_judge_the_pruner_halves_like_optuna() -> None:
    sampler = MFKDSampler(steps=[1, 3, 9], seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    pruner = MFKDPruner(sampler)
    halving = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    verdicts, expected = [], []
    for x in (0.3, 0.5, 0.1, 0.7, 0.2):  # the sampler's warm-up: no model yet
        for s, judge in ((study, pruner.prune), (halving, halving.pruner.prune)):
            s.enqueue_trial({"x": x})
            trial = s.ask(SPACE)
            trial.report(_curve(x, 1), 1)
            verdict = judge(s, s.get_trials(deepcopy=False)[-1])
            (verdicts if s is study else expected).append(verdict)
            s.tell(trial, state=TrialState.PRUNED if verdict else TrialState.FAIL)
    assert verdicts == expected == [False, False, True, False, True]
    why = [t.user_attrs.get("pruned_by", "") for t in study.trials]
    assert [("SuccessiveHalvingPruner" in w) for w in why] == verdicts
    assert not any(k.startswith("p_improve@") for t in study.trials for k in t.user_attrs)


@pytest.mark.parametrize(
    ("mean", "var", "best"), [(0.0, 1.0, 0.0), (1.0, 4.0, 0.0), (-2.0, 0.25, 0.5), (0.3, 0.0, 0.2)]
)
def test_probability_of_improvement_is_the_normal_tail(mean, var, best) -> None:
    from scipy.stats import norm

    from optuna_mfkd.sampling.strategies import probability_of_improvement

    expected = float(mean > best) if var == 0 else norm.sf(best, loc=mean, scale=math.sqrt(var))
    assert probability_of_improvement(mean, var, best) == pytest.approx(
        expected, rel=1e-12, abs=1e-15
    )


@pytest.mark.parametrize(("p", "pruned"), [(0.0049, True), (0.005, False), (0.6, False)])
def test_the_pruner_prunes_below_its_probability_and_says_why(p, pruned, monkeypatch) -> None:
    study, pruner = _study_with_history(0)
    monkeypatch.setattr(pruner._strategy, "improvement_probability", lambda *args: p)
    trial = study.ask(SPACE)
    trial.report(_curve(0.5, 3), 3)
    frozen = study.get_trials(deepcopy=False)[-1]
    assert pruner.prune(study, frozen) is pruned
    attrs = study.get_trials(deepcopy=False)[-1].user_attrs
    assert attrs["p_improve@3"] == p
    assert ("pruned_by" in attrs) is pruned
    if pruned:
        assert attrs["pruned_by"] == f"MFKDPruner(p={p:.3g} < 0.005 at step 3)"


def test_points_beyond_the_per_rung_cap_are_not_proposed_again(monkeypatch) -> None:
    from optuna_mfkd.sampling import strategies

    monkeypatch.setattr(
        strategies, "MAX_PER_RUNG", 4
    )  # the model sees the 4 latest trials per rung

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_int("x", 0, 4), trial.suggest_int("y", 0, 4)
        for step in (1, 2, 3):
            value = (x - 3) ** 2 + (y - 1) ** 2 + 1.0 / step
            trial.report(value, step)
            if step == 1 and trial.number % 2:  # every other run stops after its first rung
                raise optuna.TrialPruned()
        return value

    sampler = MFKDSampler(steps=[1, 3], seed=0, max_fit_iter=20)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=18)
    points = [(t.params["x"], t.params["y"]) for t in study.trials]
    assert len(set(points)) == len(points) == 18
