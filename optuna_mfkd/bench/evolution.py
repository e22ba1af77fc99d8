"""Regularised evolution (Real et al., AAAI 2019) as an Optuna sampler.

The NAS-Bench-201 paper's strongest baseline, with its settings (population 10, sample 3):

1. The first ``population_size`` trials are sampled uniformly at random.
2. Afterwards each trial takes the ``population_size`` most recent COMPLETE trials as the
   population (ageing: the oldest member dies when a child is added), draws
   ``sample_size`` of them uniformly without replacement, and mutates the best of the
   sample: one parameter, chosen uniformly, gets a different value (categorical: one of the
   other choices uniformly; numerical: a fresh uniform draw).

Works on any search space whose parameters all appear in every completed trial (the
intersection search space); parameters outside it are sampled at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Ageing evolution with tournament selection and single-parameter mutation.

    Args:
        population_size: number of most recent completed trials forming the population.
        sample_size: tournament size (the best of this many random members is the parent).
        seed: seed of the sampler's random state.
    """

    def __init__(self, population_size: int = 10, sample_size: int = 3, seed: int | None = None) -> None:
        if population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {population_size}.")
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size must be in [1, population_size={population_size}], got {sample_size}.")
        self.population_size = population_size
        self.sample_size = sample_size
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._space.calculate(study)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if len(study.directions) != 1:
            raise ValueError("RegularizedEvolutionSampler supports single-objective studies only.")
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self.population_size:
            return {}
        population = sorted(complete, key=lambda t: t.number)[-self.population_size :]
        parent = self._tournament(population, study.direction)
        child = {name: parent.params[name] for name in search_space}
        name = list(search_space)[self._rng.randint(len(search_space))]
        child[name] = self._mutate(search_space[name], child[name])
        return child

    def _tournament(self, population: Sequence[FrozenTrial], direction: StudyDirection) -> FrozenTrial:
        picks = self._rng.choice(len(population), size=self.sample_size, replace=False)
        sample = [population[i] for i in sorted(picks)]
        sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
        return max(sample, key=lambda t: sign * float(t.value))  # first of ties wins

    def _mutate(self, dist: BaseDistribution, value: Any) -> Any:
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            return value if not others else others[self._rng.randint(len(others))]
        for _ in range(100):  # numerical: uniform redraw, different from the parent's value
            internal = self._random.sample_independent(None, None, "", dist)  # type: ignore[arg-type]
            if internal != value:
                return internal
        return value

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
