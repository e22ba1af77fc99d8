"""DEHB (Awad, Mallik, Hutter 2021: differential evolution inside Hyperband brackets).

``dehb.DEHB`` with its published defaults (``mutation_factor=0.5``, ``crossover_prob=0.5``,
``strategy="rand1_bin"``, ``async_strategy="immediate"``) and one worker, driven by its own
``ask()`` / ``tell()``. The budgets are the problem's levels: ``min_fidelity`` and
``max_fidelity`` are the lowest and highest resource, ``eta`` makes the rungs equal to the
levels (see :mod:`optuna_mfkd.bench.peers.common`). On NB201's 12 -> 200 epochs,
``eta = 200 / 12``: brackets alternate between 16 configurations at 12 epochs with the best
one promoted to 200, and 2 configurations at 200 epochs.

DEHB writes a log (and, on ``save()``, its state) under ``output_path``; the adapter points it
to a private temporary folder and saves nothing (``save_freq="end"``, and ``run()``, the only
caller of the final save, is not used).
"""

from __future__ import annotations

from typing import Any

from optuna_mfkd.bench.peers.common import PeerSampler, Proposal, context_levels, require


class DEHBSampler(PeerSampler):
    """DEHB's ask/tell loop as an Optuna sampler (see :class:`PeerSampler`)."""

    packages = ("dehb", "ConfigSpace")

    def __init__(self, method: str, search_space: Any, levels: Any, seed: int) -> None:
        dehb = require("dehb", method, "dehb")
        super().__init__(method, search_space, levels, seed)
        self._dehb = self.build_peer(
            lambda eta: dehb.DEHB(
                cs=self.space.configspace(seed),
                min_fidelity=levels.min,
                max_fidelity=levels.max,
                eta=eta,
                n_workers=1,
                seed=seed,
                output_path=self.scratch_dir(),
                save_freq="end",
                log_level="ERROR",
            ),
            lambda peer: peer.fidelities,
        )

    def _ask(self) -> Proposal:
        job = self._dehb.ask()
        return Proposal(self.space.decode(dict(job["config"])), self.levels.index_of(job["fidelity"]), job,
                        budget=job["fidelity"], bracket=int(job["bracket_id"]), peer_trial=int(job["config_id"]))

    def _tell(self, proposal: Proposal, loss: float | None, cost: float) -> None:
        # DEHB has no failure status; a failed evaluation is the worst fitness.
        fitness = float("inf") if loss is None else loss
        self._dehb.tell(proposal.token, {"fitness": fitness, "cost": cost})


def make_sampler(name: str, seed: int, context: Any) -> DEHBSampler:
    space, levels = context_levels(name, context)
    return DEHBSampler(name, space, levels, seed)
