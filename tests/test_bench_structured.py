"""Structured single-level problems: constraints and the feasible incumbent, a conditional
space, an ordinal grid; optima checked against independent formulas and enumerations."""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.search_space import intersection_search_space

from optuna_mfkd.bench import catalog, harness
from optuna_mfkd.bench.incumbent import FEASIBLE_ATTR, incumbent_curve
from optuna_mfkd.bench.runs import META_ATTR, RESULT_ATTR, RunSpec
from optuna_mfkd.bench.structured import (
    GRID,
    STRUCTURED_PROBLEMS,
    StructuredProblem,
    tabular_grid_value,
)
from optuna_mfkd.bench.synthetic import REGRET_FLOOR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import suite_settings as suite  # noqa: E402

_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])


def _hartmann(x, a, p):
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(a * (np.asarray(x) - p) ** 2, axis=1))))


def _branin(x1, x2):
    b = 5.1 / (4 * math.pi**2)
    return (x2 - b * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def _problem(pid: str, **changes) -> StructuredProblem:
    return dataclasses.replace(STRUCTURED_PROBLEMS[pid](), **changes)


def _evaluate(problem: StructuredProblem, params: dict) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial(params)
    study.optimize(problem.objective("random"), n_trials=1)
    return study.trials[0]


def test_constrained_hartmann_optimum_constraint_and_feasible_incumbent():
    problem = _problem("constrained-hartmann/1-level")
    x_star = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert problem.optimum == pytest.approx(_hartmann(x_star, _H6_A, _H6_P), abs=1e-7)  # float32-rounded x*
    assert problem.optimum == pytest.approx(-3.32237, abs=1e-5) and sum(v * v for v in x_star) < 1
    assert problem.budget() == 40 and problem.levels[-1].name == "top"

    rng = np.random.default_rng(0)
    for x in [x_star, [0.9] * 6, *rng.uniform(size=(5, 6)).tolist()]:
        t = _evaluate(problem, {f"x{i}": v for i, v in enumerate(x)})
        norm = math.sqrt(sum(v * v for v in x))
        assert t.value == pytest.approx(_hartmann(x, _H6_A, _H6_P), abs=1e-7)  # BoTorch: float32 constants
        assert t.constraints == {"c0": pytest.approx(norm - 1, abs=1e-12)}  # Optuna's: feasible iff <= 0
        assert t.user_attrs[FEASIBLE_ATTR] is (norm <= 1)
        assert t.user_attrs["log10_regret"] == pytest.approx(math.log10(max(t.value - problem.optimum, REGRET_FLOOR)))

    # An infeasible trial better than every feasible one never becomes the incumbent.
    def trial(value, feasible):
        attrs = {"cost": 1.0, "log10_regret": problem.log10_regret(value), FEASIBLE_ATTR: feasible}
        return optuna.trial.create_trial(value=value, user_attrs=attrs)

    trials = [trial(-1.0, True), trial(problem.optimum + 1e-3, True), trial(-10.0, False), trial(-2.0, True)]
    for i, t in enumerate(trials):
        t.number = i
    costs, tests, final, value = incumbent_curve(trials, "top", "log10_regret", "minimize")
    assert costs.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert tests.tolist() == pytest.approx([problem.log10_regret(-1.0)] + [-3.0] * 3)
    assert (final, value) == (pytest.approx(-3.0), problem.optimum + 1e-3)
    # No feasible trial: no incumbent.
    _, tests, final, value = incumbent_curve(trials[2:3], "top", "log10_regret", "minimize")
    assert np.isnan(tests).all() and math.isnan(final) and math.isnan(value)


def test_branches_space_is_conditional_and_optimum_is_hartmann3():
    problem = _problem("branches/1-level")
    b_star = [0.114614, 0.555649, 0.852547]
    h3 = _hartmann(b_star, _H3_A, _H3_P)
    assert problem.optimum == pytest.approx(h3 + 3.0, abs=1e-7) and problem.optimum == pytest.approx(-0.86278, abs=1e-5)
    # each branch at its own minimiser, from the formulas; the hartmann3 branch is the best
    assert _evaluate(problem, {"branch": "branin", "s": 0.3, "a_x0": math.pi, "a_x1": 2.275}).value == \
        pytest.approx(_branin(math.pi, 2.275) / 50 - 0.5) == pytest.approx(0.397887 / 50 - 0.5, abs=1e-6)
    assert _evaluate(problem, {"branch": "rosenbrock", "s": 0.3, "c_x0": 0.5, "c_x1": -0.7}).value == pytest.approx(-0.6)
    t = _evaluate(problem, {"branch": "hartmann3", "s": 0.8, **{f"b_x{i}": v for i, v in enumerate(b_star)}})
    assert t.value == pytest.approx(h3 + 3.0 + 0.25)  # the shared parameter's (s - 0.3)^2
    assert FEASIBLE_ATTR not in t.user_attrs and t.constraints == {}

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(problem.objective("random"), n_trials=30)
    own = {"branin": {"a_x0", "a_x1"}, "hartmann3": {"b_x0", "b_x1", "b_x2"}, "rosenbrock": {"c_x0", "c_x1"}}
    for t in study.trials:
        assert set(t.params) == {"branch", "s"} | own[t.params["branch"]]
    assert {t.params["branch"] for t in study.trials} == set(own)
    assert set(intersection_search_space(study.trials)) == {"branch", "s"}


def _grid_minimum_by_loops():
    """The grid's minimum by another route: a Python loop over four parameters, a full
    meshgrid of the other five."""
    sizes = [p.size for p in GRID]
    looped = [3, 6, 7, 8]  # depth, momentum, optimizer, activation
    inner = [i for i in range(len(GRID)) if i not in looped]
    mesh = np.meshgrid(*[np.arange(sizes[i]) for i in inner], indexing="ij")
    best, arg = math.inf, None
    for ks in itertools.product(*[range(sizes[i]) for i in looped]):
        idx: list = [None] * len(GRID)
        for i, k in zip(looped, ks, strict=True):
            idx[i] = np.full(mesh[0].shape, k)
        for i, m in zip(inner, mesh, strict=True):
            idx[i] = m
        values = tabular_grid_value(idx)
        j = int(np.argmin(values))
        if values.flat[j] < best:
            best, arg = float(values.flat[j]), tuple(int(x.flat[j]) for x in idx)
    return best, arg


def test_tabular_grid_shape_and_optimum_by_enumeration():
    problem = _problem("tabular-grid/1-level")
    sizes = [p.size for p in GRID]
    assert len(GRID) == 9 and all(2 <= n <= 10 for n in sizes)
    assert math.prod(sizes) == problem.facts["grid_size"] == 1_411_200 < 2_000_000

    best, arg = _grid_minimum_by_loops()
    assert problem.optimum == pytest.approx(best, abs=1e-12)
    assert problem.minimiser == {p.name: p.value(k) for p, k in zip(GRID, arg, strict=True)}
    t = _evaluate(problem, dict(problem.minimiser))
    assert t.value == pytest.approx(best) and t.user_attrs["log10_regret"] == math.log10(REGRET_FLOOR)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(problem.objective("random"), n_trials=40)
    dists = study.trials[0].distributions
    assert [type(dists[p.name]) for p in GRID] == [FloatDistribution, IntDistribution, IntDistribution,
                                                   IntDistribution, FloatDistribution, FloatDistribution,
                                                   FloatDistribution, CategoricalDistribution,
                                                   CategoricalDistribution]
    for p in GRID:
        d = dists[p.name]
        if not isinstance(d, CategoricalDistribution):  # ordered, on a grid
            assert d.step == p.step and not d.log and (d.low, d.high) == (p.low, p.high)
        for v in {t.params[p.name] for t in study.trials}:  # on the grid (floats up to rounding)
            k = p.index(v)
            assert 0 <= k < p.size and (v == p.value(k) if isinstance(d, CategoricalDistribution)
                                        else v == pytest.approx(p.value(k), abs=1e-9))
    assert all(t.value >= best for t in study.trials)
    assert len({round(t.value, 9) for t in study.trials}) > 30  # the values vary over the grid


def test_structured_problems_in_the_suite_and_through_the_harness(sqlite_url):
    assert suite.expand(["synthetic-dropin"]) == list(STRUCTURED_PROBLEMS)
    assert not set(STRUCTURED_PROBLEMS) & set(suite.TUNING_PROBLEMS)
    assert set(STRUCTURED_PROBLEMS) <= set(suite.expand(["all"]))
    assert any("constrained-hartmann/1-level" in line for line in suite.problem_table(list(STRUCTURED_PROBLEMS)))
    for pid in STRUCTURED_PROBLEMS:
        problem = dataclasses.replace(catalog.make_problem(pid, methods=suite.METHOD_NAMES), budget_top_evals=5)
        assert problem.methods == suite.METHOD_NAMES
        spec = RunSpec(problem, "tpe", 0)
        harness.run_one(spec, sqlite_url)
        study = optuna.load_study(study_name=spec.name, storage=sqlite_url)
        assert len(study.trials) == 5
        meta, record = study.user_attrs[META_ATTR], study.user_attrs[RESULT_ATTR]
        assert meta["optimum"] == problem.optimum and meta["metric"]["attr"] == "log10_regret"
        feasible = [t for t in study.trials if t.user_attrs.get(FEASIBLE_ATTR, True)]
        expected = min((t.value for t in feasible), default=None)
        assert record["final_val"] == (pytest.approx(expected) if expected is not None else None)
