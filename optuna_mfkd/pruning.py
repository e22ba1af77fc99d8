"""MFKDPruner: a model-based pruner for MFKDSampler's step (learning-curve) mode.

At each rung (``steps[m]`` of ``MFKDSampler(steps=...)``, below the last) a trial's final
value is predicted by the AR1 co-kriging model from everything observed, the trial's own
rungs included; the trial goes on while

    P(y_final(x) > f*) >= min_probability,

``f*`` the best final value so far and ``y_final(x)`` the value the trial would report (the
posterior of its latent final value plus the top level's fitted noise;
:meth:`~optuna_mfkd.sampling.strategies.LearningCurveStrategy.improvement_probability`).
Where the model cannot judge yet (the sampler's warm-up, before any trial has finished, a
point outside the modelled part of a conditional space), the trial is judged as Optuna's
``SuccessiveHalvingPruner(min_resource=steps[0], reduction_factor=3)`` would (it goes on
while its value at the rung is in the best third so far), so the warm-up does not spend the
budget on full runs. Each decision is recorded on the trial as the user attribute
``p_improve@<step>`` (the model's) and ``pruned_by`` when it prunes, so optuna-dashboard shows
why a trial stopped.

The objective is Optuna's pruning pattern, unchanged::

    sampler = MFKDSampler(steps=[1, 3, 9, 27])
    study = optuna.create_study(sampler=sampler, pruner=MFKDPruner(sampler))

    def objective(trial):
        ...
        for epoch in range(1, 28):
            trial.report(validation_score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return validation_score
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from optuna_mfkd.fidelity import record_user_attrs
from optuna_mfkd.sampler import MFKDSampler
from optuna_mfkd.sampling import history as hist
from optuna_mfkd.sampling.candidates import Candidates
from optuna_mfkd.sampling.history import History
from optuna_mfkd.sampling.strategies import LearningCurveStrategy

#: Default of :class:`MFKDPruner`'s ``min_probability``, chosen on the tuning problems
#: (AugmentedHartmann, ``mlp-digits``; ``benchmarks/results/step-mode-threshold/``): level with
#: 0.02 and 0.05 in regret, without their seeds that pruned nearly every trial (432 of 438).
MIN_PROBABILITY = 0.005
#: User attribute naming the pruner that stopped a trial.
PRUNED_BY_ATTR = "pruned_by"
#: Reduction factor of the successive halving that judges while the model cannot.
FALLBACK_REDUCTION_FACTOR = 3


def rung_reached(steps: tuple[float, ...], reported: list[float]) -> int | None:
    """The rung (below the last) that the latest report reaches for the first time: ``m``
    with ``previous < steps[m] <= latest`` (the highest such), else ``None``."""
    if not reported:
        return None
    latest = reported[-1]
    previous = reported[-2] if len(reported) > 1 else -np.inf
    crossed = [m for m in range(len(steps) - 1) if previous < steps[m] <= latest]
    return crossed[-1] if crossed else None


class MFKDPruner(BasePruner):
    """Prune a trial whose final value is unlikely to beat the best one (see the module).

    Args:
        sampler: the study's ``MFKDSampler(steps=...)``; the pruner reads its options (the
            rungs, the warm-up, the model's settings) and fits its own copy of the model.
        min_probability: prune below this probability of improving on the best final value.

    Raises:
        ValueError: ``sampler`` is not in the step mode, or ``min_probability`` is not in [0, 1).
    """

    def __init__(self, sampler: MFKDSampler, min_probability: float = MIN_PROBABILITY) -> None:
        if not isinstance(sampler, MFKDSampler) or sampler.options.steps is None:
            raise ValueError(
                "MFKDPruner needs an MFKDSampler in the step mode: MFKDSampler(steps=[...])."
            )
        if (
            isinstance(min_probability, bool)
            or not isinstance(min_probability, (int, float))
            or not (0 <= min_probability < 1)
        ):
            raise ValueError(
                f"min_probability must be a number in [0, 1), got {min_probability!r}."
            )
        options = sampler.options
        self.min_probability = float(min_probability)
        self._steps = options.steps
        self._names = list(options.names)
        self._strategy = LearningCurveStrategy(
            options, Candidates(options, np.random.default_rng(options.seed))
        )
        self._fallback = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, math.ceil(self._steps[0])),
            reduction_factor=FALLBACK_REDUCTION_FACTOR,
        )

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        rung = rung_reached(self._steps, sorted(trial.intermediate_values))
        if rung is None:
            return False
        history = History(study, None, self._names, with_pruned=True)
        p = self._strategy.improvement_probability(history, hist.study_id(study), trial.params)
        if p is None:
            if not self._fallback.prune(study, trial):
                return False
            by = f"SuccessiveHalvingPruner(reduction_factor={FALLBACK_REDUCTION_FACTOR}) at step {self._steps[rung]:g}"
            record_user_attrs(trial, study, {PRUNED_BY_ATTR: f"{by}, before the model could judge"})
            return True
        attrs: dict[str, object] = {f"p_improve@{self._steps[rung]:g}": p}
        prune = p < self.min_probability
        if prune:
            attrs[PRUNED_BY_ATTR] = (
                f"MFKDPruner(p={p:.3g} < {self.min_probability:g} at step {self._steps[rung]:g})"
            )
        record_user_attrs(trial, study, attrs)
        return prune
