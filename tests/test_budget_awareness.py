"""The cost-aware level choice with a known budget: MaxCostCallback records it, the sampler
keeps the last share of it (and any cheap evaluation that would leave no room for a top-level
one) for the top level."""

from __future__ import annotations

import optuna
import pytest
from conftest import two_level_bowl

from optuna_mfkd import MaxCostCallback, MFKDSampler
from optuna_mfkd.fidelity import BUDGET_ATTR
from optuna_mfkd.gp.fidelity_choice import TOP_LEVEL_SHARE, within_budget
from optuna_mfkd.sampling.history import History

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_within_budget_switches_at_the_stated_share():
    costs = [1.0, 10.0]
    assert TOP_LEVEL_SHARE == 0.1
    assert within_budget([True, True], costs, budget=1000.0, spent=899.0) == [True, True]
    assert within_budget([True, True], costs, budget=1000.0, spent=900.0) == [False, True]
    assert within_budget([True, True], costs, budget=1000.0, spent=10.0, share=0.995) == [False, True]
    # Not late, but a cheap evaluation would leave no room for one at the top.
    assert within_budget([True, True], costs, budget=100.0, spent=89.0) == [True, True]
    assert within_budget([True, True], costs, budget=100.0, spent=89.5, share=0.0) == [False, True]
    # What was not allowed stays so; the top level always is.
    assert within_budget([False, True], costs, budget=1000.0, spent=0.0) == [False, True]
    assert within_budget([True, True, True], [1.0, 10.0, 100.0], 1000.0, 850.0, share=0.0) == [True, True, True]
    assert within_budget([True, True, True], [1.0, 10.0, 100.0], 1000.0, 895.0, share=0.0) == [True, False, True]
    assert within_budget([True, True, True], [1.0, 10.0, 100.0], 1000.0, 899.5, share=0.0) == [False, False, True]


def test_max_cost_callback_records_its_budget_and_history_counts_what_is_spent():
    study = optuna.create_study()
    history = History(study, None, ["low", "high"])
    assert history.budget(history.costs({})) is None
    callback = MaxCostCallback(50.0)
    for level, cost in (("low", 1.0), ("high", 10.0), ("low", 1.0)):
        trial = study.ask()
        trial.set_user_attr("fidelity", level)
        trial.set_user_attr("cost", cost)
        study.tell(trial, 0.5)
        callback(study, study.trials[-1])
    pruned = study.ask()
    pruned.set_user_attr("fidelity", "low")
    pruned.set_user_attr("cost", 1.0)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    running = study.ask()
    running.set_user_attr("fidelity", "high")
    assert study._storage.get_study_system_attrs(study._study_id)[BUDGET_ATTR] == {"budget": 50.0, "cost_attr": "cost"}
    # finished 1 + 10 + 1 + 1 (pruned) = 13, and the running trial commits one high-level
    # evaluation (the median cost of its level, 10).
    history = History(study, None, ["low", "high"])
    assert history.budget(history.costs({})) == (50.0, 23.0)
    # The trial being sampled is not part of its own history.
    frozen = study.trials[-1]
    history = History(study, frozen, ["low", "high"])
    assert history.budget(history.costs({})) == (50.0, 13.0)


@pytest.mark.parametrize("strategy", ["cost-aware", "mf-mes"])
def test_the_last_share_of_the_budget_goes_to_the_top_level(strategy):
    budget = 150.0
    sampler = MFKDSampler(["low", "high"], n_warmup={"low": 6, "high": 2}, seed=1, strategy=strategy)
    study = optuna.create_study(sampler=sampler)
    study.optimize(two_level_bowl, n_trials=200, callbacks=[MaxCostCallback(budget)])
    spent, late = 0.0, []
    for t in study.trials:
        if spent >= (1 - TOP_LEVEL_SHARE) * budget or spent + 1.0 + 10.0 > budget:
            late.append(t.user_attrs["fidelity"])
        spent += t.user_attrs["cost"]
    assert spent >= budget and late and set(late) == {"high"}, late
    # Before that the sampler did use the cheap level beyond its warm-up.
    levels = [t.user_attrs["fidelity"] for t in study.trials[8:]]
    assert "low" in levels
