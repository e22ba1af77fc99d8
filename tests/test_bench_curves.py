"""Learning-curve problems and their runs (optuna_mfkd.bench.curves, optuna_mfkd.bench.curve_runs)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from botorch.test_functions.multi_fidelity import AugmentedBranin

from optuna_mfkd.bench import curve_runs
from optuna_mfkd.bench.curves import CurveProblem, FunctionCurve, NB201Curve
from optuna_mfkd.nasbench201.space import EDGE_PARAM_NAMES, index_to_ops
from optuna_mfkd.nasbench201.table import CompactTable, bundled_table_path


class LinearCurve(CurveProblem):
    """value = x * 10 - step (so later steps are lower), steps 1..9, rungs 1, 3, 9."""

    name = "linear"
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    report_steps = tuple(range(1, 10))
    rungs = (1, 3, 9)
    optimum = -9.0

    def value(self, params, step):
        return 10.0 * params["x"] - step


def test_function_curve_matches_botorch_at_each_step():
    curve = FunctionCurve("augmented-branin")
    f = AugmentedBranin()
    lo, hi = f.bounds[0, :2].numpy(), f.bounds[1, :2].numpy()
    params = {"x0": 0.25, "x1": 0.75}
    x = lo + np.array([0.25, 0.75]) * (hi - lo)
    for step in (1, 5, 9):
        expected = float(f(torch.tensor([[*x, step / 9]], dtype=torch.float64)))
        assert curve.value(params, step) == pytest.approx(expected, rel=1e-12)
    assert curve.rungs == (1, 3, 9) and curve.final_step == 9


def test_nb201_curve_reads_the_table_and_charges_the_continuation():
    table = CompactTable(bundled_table_path())
    curve = NB201Curve(table, "cifar10")
    params = dict(zip(EDGE_PARAM_NAMES, index_to_ops(6111)))
    assert curve.value(params, 12) == pytest.approx(100 - table.val_acc("cifar10", 6111, epochs=12))
    assert curve.value(params, 200) == pytest.approx(
        100 - table.val_acc("cifar10", 6111, epochs=200)
    )
    assert curve.optimum == pytest.approx(100 - table.column("cifar10", "val", 200).max())
    assert curve.cost(params, 200) - curve.cost(params, 12) == 188
    with pytest.raises(ValueError, match="step 50"):
        curve.value(params, 50)


def test_pruned_trial_is_charged_the_steps_it_ran():
    problem = LinearCurve()
    objective = curve_runs.CurveObjective(problem, "random+sha")

    class PruneAtThree(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return max(trial.intermediate_values) == 3

    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0), pruner=PruneAtThree()
    )
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert objective.spent == 6
    assert [t.user_attrs["cost"] for t in study.trials] == [3, 3]
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3]


def test_a_promoted_configuration_resumes_from_its_checkpoint():
    problem = LinearCurve()
    objective = curve_runs.CurveObjective(problem, "dehb")
    study = optuna.create_study()
    for level in ("step3", "step9", "step9"):
        study.enqueue_trial({"x": 0.5}, user_attrs={"fidelity": level})
    study.optimize(objective, n_trials=3)
    assert [t.user_attrs["cost"] for t in study.trials] == [3, 6, 0]
    assert [t.value for t in study.trials] == [2.0, -4.0, -4.0]
    assert objective.spent == 9


def test_run_spends_the_budget_and_its_trace_only_improves():
    record = curve_runs.run(LinearCurve(), "tpe+hyperband", seed=0, budget=4)
    spent = [s for s, _ in record["trace"]]
    best = [b for _, b in record["trace"] if b is not None]
    assert spent == sorted(spent) and spent[-1] >= 4 * 9 and spent[-2] < 4 * 9
    assert best == sorted(best, reverse=True)
    within = [b for s, b in record["trace"] if s <= 4 * 9 and b is not None]
    assert (
        curve_runs.best_at(record, 1.0, 9) == within[-1]
    )  # a trial that ends past the budget does not count
    assert record["trials"] == len(spent)


def test_run_stores_the_study_in_one_storage(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'runs.db'}")
    for method in ("random+hyperband", "syne-asha"):
        curve_runs.run(LinearCurve(), method, seed=1, budget=2, storage=storage)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["step/linear/random+hyperband/seed1", "step/linear/syne-asha/seed1"]
    study = optuna.load_study(study_name=names[1], storage=storage)
    assert study.user_attrs["method"] == "syne-asha"
    assert math.isclose(sum(t.user_attrs["cost"] for t in study.trials), 18, abs_tol=9)


@pytest.mark.parametrize(
    "name",
    ["mfkd+hyperbandx", "cma+pruner", "nope", "mfkd+pruner@1.5", "mfkd+pruner@x", "tpe+sha@0.1",
     "tpe@w5+hyperband", "mfkd@5+pruner", "mfkd@w-1+pruner", "mfkd@wx+pruner"],
)
def test_unknown_methods_are_named(name):
    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        curve_runs.check_method(name)


def test_a_pruner_threshold_reaches_mfkd_pruner():
    from optuna_mfkd import MFKDPruner

    assert curve_runs.check_method("mfkd+pruner@0.02") == "mfkd+pruner@0.02"
    study = curve_runs.build_study(LinearCurve(), "mfkd+pruner@0.02", seed=0)
    assert isinstance(study.pruner, MFKDPruner) and study.pruner.min_probability == 0.02
    from optuna_mfkd.pruning import MIN_PROBABILITY

    assert curve_runs.build_study(LinearCurve(), "mfkd+pruner", seed=0).pruner.min_probability == MIN_PROBABILITY


def test_a_warmup_reaches_the_step_mode():
    """``mfkd@w<k>``: the step mode's warm-up (trials at the top level) is ``k``, the
    default's otherwise."""
    from optuna_mfkd.sampling.options import SINGLE_LEVEL_WARMUP

    assert curve_runs.check_method("mfkd@w4+pruner") == "mfkd@w4+pruner"
    study = curve_runs.build_study(LinearCurve(), "mfkd@w4+hyperband", seed=0)
    top = study.sampler.fidelities[-1]
    assert study.sampler.n_warmup[top] == 4
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    default = curve_runs.build_study(LinearCurve(), "mfkd+pruner", seed=0).sampler
    assert default.n_warmup[top] == SINGLE_LEVEL_WARMUP
