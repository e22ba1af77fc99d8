"""Searches on learning-curve problems (:class:`~optuna_mfkd.bench.curves.CurveProblem`):
the methods, one run, and its anytime trace.

Every method runs an Optuna study whose objective trains a configuration step by step:

- ``<sampler>+<pruner>``: Optuna's pruning workflow. The run reports at every step of the
  problem and asks ``trial.should_prune()`` after each one but the last; samplers ``mfkd``
  (``MFKDSampler(steps=rungs)``), ``tpe``, ``gp``, ``random``; pruners ``pruner``
  (:class:`~optuna_mfkd.pruning.MFKDPruner`), ``hyperband``
  (``HyperbandPruner(min_resource=rungs[0], max_resource=final step, reduction_factor=3)``),
  ``sha`` (``SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=3)``);
  ``pruner@<p>`` is MFKDPruner with ``min_probability=p`` (e.g. ``mfkd+pruner@0.02``, for
  choosing the threshold); ``mfkd@w<k>`` is the step mode with ``k`` warm-up trials instead of
  the default (e.g. ``mfkd@w5+pruner``).
- ``mfkd-levels``: MFKDSampler's level mode (the defaults: MF-MES's level rule) with one level per
  rung: a trial trains up to its level's step.
- peers (:mod:`optuna_mfkd.bench.peers`: ``dehb``, ``syne-asha``, ``syne-bohb``, ``smac-hb``,
  ``smac-mf``): each evaluation trains up to the peer's budget, one of the rungs.

Checkpoints: a configuration trained before resumes from the furthest step it reached (for
every method), so a run is charged ``cost(params, target) - cost(params, reached)``: promoting
a configuration never trains it again from scratch. The budget is in full trainings
(``budget x cost`` of a run to the final step, in the problem's cost units, taken as
``final step`` units for every configuration); a run ends once it spent it (or after
:data:`MAX_TRIALS_PER_BUDGET` trials per unit of budget, a guard against samplers that only
propose configurations already trained).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import optuna

from optuna_mfkd.bench.curves import CurveProblem
from optuna_mfkd.fidelity import COST_ATTR, fidelity_of

#: Samplers and pruners of the ``<sampler>+<pruner>`` methods.
SAMPLERS = ("mfkd", "tpe", "gp", "random")
PRUNERS = ("pruner", "hyperband", "sha")
#: Peers run on the rungs as their budgets.
PEER_METHODS = ("dehb", "syne-asha", "syne-bohb", "smac-hb", "smac-mf")
#: The level mode of MFKDSampler, one level per rung.
LEVEL_METHOD = "mfkd-levels"
#: A run also ends after this many trials per full training of budget.
MAX_TRIALS_PER_BUDGET = 40
#: Reduction factor of Optuna's Hyperband and successive-halving pruners here.
REDUCTION_FACTOR = 3


def level_name(step: int) -> str:
    """The level name of a rung (level mode and peers)."""
    return f"step{step}"


def pruner_threshold(pruner: str) -> float | None:
    """``p`` of a ``pruner@<p>`` pruner name (MFKDPruner's ``min_probability``), ``None``
    for a name without ``@``; a ``ValueError`` when ``p`` is not a number in [0, 1)."""
    name, at, value = pruner.partition("@")
    if not at:
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if name != "pruner" or not 0 <= threshold < 1:
        raise ValueError(f"pruner {pruner!r}: only 'pruner@<p>' with p in [0, 1) takes a threshold")
    return threshold


def sampler_warmup(sampler: str) -> int | None:
    """``k`` of an ``mfkd@w<k>`` sampler name (the step mode's warm-up trials), ``None`` for a
    name without ``@``; a ``ValueError`` when ``k`` is not a non-negative integer."""
    name, at, value = sampler.partition("@")
    if not at:
        return None
    if name != "mfkd" or not value.startswith("w") or not value[1:].isdigit():
        raise ValueError(f"sampler {sampler!r}: only 'mfkd@w<k>' with k a non-negative integer takes a warm-up")
    return int(value[1:])


def check_method(name: str) -> str:
    """``name`` if it is a method of this module, else a ``ValueError`` naming it."""
    sampler, _, pruner = name.partition("+")
    for part, parse in ((sampler, sampler_warmup), (pruner, pruner_threshold)):
        try:
            parse(part)  # checks an ``@`` setting; ``None`` without one
        except ValueError as err:
            raise ValueError(f"method {name!r}: {err}") from None
    sampler, pruner = sampler.partition("@")[0], pruner.partition("@")[0]
    if name in PEER_METHODS or name == LEVEL_METHOD or (sampler in SAMPLERS and pruner in PRUNERS):
        return name
    raise ValueError(
        f"method {name!r}: use <sampler>+<pruner> with sampler in {SAMPLERS} and pruner in {PRUNERS} "
        f"(pruner@<p>: MFKDPruner's threshold; mfkd@w<k>: its warm-up), {LEVEL_METHOD!r}, or a peer in {PEER_METHODS}"
    )


def build_study(problem: CurveProblem, method: str, seed: int) -> optuna.Study:
    """An in-memory study of ``method`` (see the module) on ``problem``."""
    from optuna_mfkd import MFKDPruner, MFKDSampler

    check_method(method)
    rungs = list(problem.rungs)
    if method == LEVEL_METHOD:
        sampler = MFKDSampler(fidelities=[level_name(r) for r in rungs], seed=seed)
        return optuna.create_study(sampler=sampler)
    if method in PEER_METHODS:
        from optuna_mfkd.bench.peers import PEERS

        context = SimpleNamespace(
            search_space=dict(problem.distributions),
            level_resources={level_name(r): float(r) for r in rungs},
        )
        return optuna.create_study(sampler=PEERS[method].build_sampler(seed, context))
    sampler_name, _, pruner_name = method.partition("+")
    if sampler_name.partition("@")[0] == "mfkd":
        sampler = MFKDSampler(steps=rungs, seed=seed)
        if (warmup := sampler_warmup(sampler_name)) is not None:
            sampler = MFKDSampler(steps=rungs, seed=seed, n_warmup={sampler.fidelities[-1]: warmup})
    else:
        sampler = {
            "tpe": optuna.samplers.TPESampler,
            "gp": optuna.samplers.GPSampler,
            "random": optuna.samplers.RandomSampler,
        }[sampler_name](seed=seed)
    if pruner_name.partition("@")[0] == "pruner":
        threshold = pruner_threshold(pruner_name)
        pruner: optuna.pruners.BasePruner = (
            MFKDPruner(sampler) if threshold is None else MFKDPruner(sampler, min_probability=threshold)
        )
    elif pruner_name == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=rungs[0],
            max_resource=problem.final_step,
            reduction_factor=REDUCTION_FACTOR,
        )
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rungs[0], reduction_factor=REDUCTION_FACTOR
        )
    return optuna.create_study(sampler=sampler, pruner=pruner)


class CurveObjective:
    """The objective of a run: trains a configuration step by step, resuming checkpoints,
    and counts what it spends (:attr:`spent`, in the problem's cost units)."""

    def __init__(self, problem: CurveProblem, method: str) -> None:
        self.problem = problem
        self.prunes = "+" in method
        self.spent = 0.0
        self._reached: dict[tuple, int] = {}
        self._targets = {level_name(r): r for r in problem.rungs}

    def __call__(self, trial: optuna.Trial) -> float:
        problem = self.problem
        params = problem.suggest(trial)
        key = tuple(sorted((k, repr(v)) for k, v in params.items()))
        target = (
            problem.final_step
            if self.prunes
            else self._targets[fidelity_of(trial, level_name(problem.final_step))]
        )
        reached = self._reached.get(key, 0)
        value = math.nan
        for step in problem.report_steps:
            if step > target:
                break
            value = problem.value(params, step)
            trial.report(value, step)
            if self.prunes and step < problem.final_step and trial.should_prune():
                self._charge(trial, params, key, reached, step)
                raise optuna.TrialPruned()
        self._charge(trial, params, key, reached, target)
        return value

    def _charge(
        self, trial: optuna.Trial, params: Mapping[str, Any], key: tuple, reached: int, step: int
    ) -> None:
        cost = max(
            self.problem.cost(params, step)
            - (self.problem.cost(params, reached) if reached else 0.0),
            0.0,
        )
        self._reached[key] = max(reached, step)
        self.spent += cost
        trial.set_user_attr(COST_ATTR, cost)


def run(
    problem: CurveProblem,
    method: str,
    seed: int,
    budget: float,
    storage: optuna.storages.BaseStorage | None = None,
) -> dict[str, Any]:
    """One search: the best final value after each trial with the cost spent so far
    (``trace``: ``[spent, best or None]`` per trial), trial counts and wall seconds. The study
    is copied into ``storage`` when given (named ``step/<problem>/<method>/seed<seed>``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = build_study(problem, method, seed)
    objective = CurveObjective(problem, method)
    limit = budget * problem.final_step
    final = problem.final_step
    best = math.inf
    trace: list[list[float | None]] = []
    started = time.perf_counter()
    for _ in range(int(MAX_TRIALS_PER_BUDGET * budget)):
        if objective.spent >= limit:
            break
        study.optimize(objective, n_trials=1)
        last = study.trials[-1]
        if (
            last.state == optuna.trial.TrialState.COMPLETE
            and max(last.intermediate_values, default=0) >= final
        ):
            best = min(best, float(last.value))
        trace.append([objective.spent, None if math.isinf(best) else best])
    seconds = time.perf_counter() - started
    states = [t.state.name for t in study.trials]
    if storage is not None:
        from optuna_mfkd.bench.bulk_copy import store_study

        named = optuna.create_study(study_name=f"step/{problem.name}/{method}/seed{seed}")
        named.add_trials(study.trials)
        for k, v in {
            "problem": problem.name,
            "method": method,
            "seed": seed,
            "budget": budget,
        }.items():
            named.set_user_attr(k, v)
        store_study(named, storage)
    return {
        "problem": problem.name,
        "method": method,
        "seed": seed,
        "budget": budget,
        "trace": trace,
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "seconds": round(seconds, 2),
    }


def best_at(record: Mapping[str, Any], fraction: float, final_step: int) -> float | None:
    """The best final value once ``fraction`` of the record's budget was spent (``None``:
    no run had finished by then)."""
    limit = fraction * record["budget"] * final_step
    best = [b for spent, b in record["trace"] if spent <= limit + 1e-9 and b is not None]
    return best[-1] if best else None
