"""Syne Tune's ``ASHA`` and ``BOHB`` baselines (asynchronous successive halving).

``syne_tune.optimizer.baselines.ASHA`` (random search) and ``BOHB`` (its KDE searcher) with
their published defaults and one bracket, ``time_attr="resource"``, ``max_t`` the highest
level's resource, ``grace_period`` the lowest and ``reduction_factor`` the ``eta`` that makes
the rungs equal to the levels (see :mod:`optuna_mfkd.bench.peers.common`).

The adapter plays Syne Tune's ``Tuner`` with one worker, step for step: ``suggest()`` a new
trial, ``on_trial_add``, then one result per level (``on_trial_result`` with the level's
resource); the scheduler's decision is kept: ``CONTINUE`` evaluates the same configuration
at the next level, ``STOP`` (a rung decision, or the highest level reached) ends the trial
with ``on_trial_remove``, as the ``Tuner`` does. A result reported at a level is the
table's value for that level's own schedule; moving up a level is a separate training run
and costs the whole next level (the harness's cost rule for every method).

Seeding: Syne Tune 0.16's random search (``sample_random_config``, also BOHB's random
fraction and warm-up) and ASHA's bracket draw use numpy's global generator, whatever
``random_seed`` says. The adapter gives the scheduler a generator of its own, seeded with the
run's seed and swapped in around every call into Syne Tune, so a run is reproducible and
leaves the global generator as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from optuna_mfkd.bench.peers.common import PeerSampler, Proposal, context_levels, require

METRIC, RESOURCE = "loss", "resource"
SCHEDULERS = {"syne-asha": "ASHA", "syne-bohb": "BOHB"}


class SyneTuneSampler(PeerSampler):
    """A Syne Tune asynchronous scheduler's loop as an Optuna sampler (see :class:`PeerSampler`).

    Args:
        scheduler: ``"ASHA"`` or ``"BOHB"`` (a class of ``syne_tune.optimizer.baselines``).
    """

    packages = ("syne-tune",)

    def __init__(self, method: str, search_space: Any, levels: Any, seed: int, scheduler: str) -> None:
        baselines = require("syne_tune.optimizer.baselines", method, "syne-tune")
        self._status = require("syne_tune.backend.trial_status", method, "syne-tune")
        self._decision = require("syne_tune.optimizer.scheduler", method, "syne-tune").SchedulerDecision
        super().__init__(method, search_space, levels, seed)
        self.scheduler_name = scheduler
        self._rng_state = np.random.RandomState(seed).get_state()
        log = logging.getLogger("syne_tune")
        level = log.level
        log.setLevel(logging.ERROR)  # its searcher warns about a default it does not use
        try:
            with self._own_rng():
                self._scheduler = self.build_peer(
                    lambda eta: getattr(baselines, scheduler)(
                        config_space=self.space.synetune(),
                        metric=METRIC,
                        time_attr=RESOURCE,
                        max_t=levels.max,
                        grace_period=levels.min,
                        reduction_factor=eta,
                        random_seed=seed,
                    ),
                    lambda peer: [milestone for milestone, _ in peer.brackets[0].rungs],
                )
        finally:
            log.setLevel(level)
        self._next_id = 0
        self._running: tuple[Any, int] | None = None  # (trial, level to evaluate next)

    def settings(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler_name, **super().settings()}

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run Syne Tune on this run's generator in place of numpy's global one."""
        outside = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outside)

    def _ask(self) -> Proposal:
        if self._running is None:
            with self._own_rng():
                suggestion = self._scheduler.suggest()
                if suggestion is None:
                    raise RuntimeError(f"method {self.method!r}: the Syne Tune scheduler has no configuration left to suggest.")
                if not suggestion.spawn_new_trial_id:
                    raise RuntimeError(f"method {self.method!r}: resuming paused trials is not supported (one worker, stopping rule).")
                trial = self._status.Trial(trial_id=self._next_id, config=suggestion.config, creation_time=datetime.datetime.now())
                self._scheduler.on_trial_add(trial)
            self._next_id += 1
            self._running = (trial, 0)
        trial, level = self._running
        return Proposal(self.space.decode(trial.config), level, trial, budget=self.levels.resources[level],
                        bracket=0, peer_trial=trial.trial_id)

    def _tell(self, proposal: Proposal, loss: float | None, cost: float) -> None:
        trial, level = proposal.token, proposal.level
        self._running = None
        with self._own_rng():
            if loss is None:
                self._scheduler.on_trial_error(trial)
                return
            result = {METRIC: loss, RESOURCE: self.levels.resources[level]}
            decision = self._scheduler.on_trial_result(trial, result)
            if decision == self._decision.CONTINUE and level + 1 < len(self.levels.resources):
                self._running = (trial, level + 1)
            else:
                self._scheduler.on_trial_remove(trial)


def make_sampler(name: str, seed: int, context: Any) -> SyneTuneSampler:
    space, levels = context_levels(name, context)
    return SyneTuneSampler(name, space, levels, seed, SCHEDULERS[name])
