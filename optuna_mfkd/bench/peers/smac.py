"""SMAC3's multi-fidelity facades: ``MultiFidelityFacade`` (``smac-mf``) and ``HyperbandFacade`` (``smac-hb``).

``smac-mf`` is SMAC's BOHB-like configuration: a random forest (SMAC 2.4's scikit-learn
forest, the facade's default; the older ``pyrfr`` forest is not used), log expected
improvement, local and random search, a random initial design and the Hyperband
intensifier. ``smac-hb`` is Hyperband with random configurations. Both with the facades'
published defaults, driven by SMAC's own ``ask()`` / ``tell()``, with:

- ``Scenario(deterministic=True)``: a table lookup (or any harness objective) returns the
  same value for the same configuration and level;
- ``min_budget`` / ``max_budget`` the lowest / highest level resource and the intensifier's
  ``eta`` the one that makes the rungs equal to the levels (see
  :mod:`optuna_mfkd.bench.peers.common`);
- ``n_trials`` 5000 (SMAC's own stopping rule, used only by its ``optimize()`` loop, not by
  ``ask()``: the harness's cost budget stops a run, even one with more trials, as on the wing
  weight's cheapest level); it only sizes the initial design, which stays at the default 10
  per hyperparameter;
- the forest fitted on one thread (``n_jobs=1``; the default uses every core, which changes
  the speed, not the result).

SMAC writes its scenario under ``output_directory``; the adapter points it to a private
temporary folder and never saves the run history (``tell(..., save=False)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna_mfkd.bench.peers.common import (
    PeerSampler,
    Proposal,
    context_levels,
    keep_other_loggers,
    require,
)

FACADES = {"smac-mf": "MultiFidelityFacade", "smac-hb": "HyperbandFacade"}
#: SMAC's ``n_trials`` (sizes the initial design only; the harness's budget stops a run).
N_TRIALS = 5000
STAGE_ATTR = "peer:stage"


class SMACSampler(PeerSampler):
    """A SMAC3 facade's ask/tell loop as an Optuna sampler (see :class:`PeerSampler`).

    Args:
        facade: ``"MultiFidelityFacade"`` or ``"HyperbandFacade"``.
    """

    packages = ("smac", "ConfigSpace", "scikit-learn")

    def __init__(self, method: str, search_space: Any, levels: Any, seed: int, facade: str) -> None:
        smac = require("smac", method, "smac")
        self._runhistory = require("smac.runhistory.dataclasses", method, "smac")
        self._status = require("smac.runhistory.enumerations", method, "smac").StatusType
        super().__init__(method, search_space, levels, seed)
        self.facade_name = facade
        cls = getattr(smac, facade)
        scenario = smac.Scenario(
            self.space.configspace(seed),
            deterministic=True,
            n_trials=N_TRIALS,
            min_budget=levels.min,
            max_budget=levels.max,
            seed=seed,
            output_directory=Path(self.scratch_dir()),
        )

        def build(eta: float) -> Any:
            model = cls.get_model(scenario)
            if isinstance(getattr(model, "_rf_opts", None), dict):
                model._rf_opts["n_jobs"] = 1  # threads only: the forest is the same
            return cls(
                scenario,
                target_function=_not_called,
                model=model,
                intensifier=cls.get_intensifier(scenario, eta=eta),
                logging_level=40,
                overwrite=True,
            )

        with keep_other_loggers():
            self._smac = self.build_peer(build, _first_bracket_budgets)
        self._config_ids: dict[Any, int] = {}

    def settings(self) -> dict[str, Any]:
        return {"facade": self.facade_name, "n_trials": N_TRIALS, "deterministic": True, **super().settings()}

    def _bracket_of(self, info: Any) -> tuple[int | None, int | None]:
        """SMAC's (bracket, stage) of a trial, read from the Hyperband intensifier's tracker."""
        intensifier = self._smac.intensifier
        try:
            for (bracket, stage), pairs in intensifier._tracker.items():
                budget = intensifier._budgets_in_stage[bracket][stage]
                if abs(budget - info.budget) <= 1e-9 * budget and any(info.config in configs for _, configs in pairs):
                    return int(bracket), int(stage)
        except (AttributeError, KeyError, TypeError):  # private SMAC state changed
            pass
        return None, None

    def _ask(self) -> Proposal:
        info = self._smac.ask()
        bracket, stage = self._bracket_of(info)
        config_id = self._config_ids.setdefault(info.config, len(self._config_ids))
        return Proposal(self.space.decode(dict(info.config)), self.levels.index_of(info.budget), info,
                        budget=info.budget, bracket=bracket, peer_trial=config_id, extra={STAGE_ATTR: stage})

    def _tell(self, proposal: Proposal, loss: float | None, cost: float) -> None:
        if loss is None:
            value = self._runhistory.TrialValue(cost=float("inf"), time=cost, status=self._status.CRASHED)
        else:
            value = self._runhistory.TrialValue(cost=loss, time=cost)
        self._smac.tell(proposal.token, value, save=False)


def _first_bracket_budgets(facade: Any) -> list[float]:
    """The budgets of Hyperband's first (largest) bracket, by SMAC's own formulas.

    The intensifier computes them only at its first ``ask``; its two static helpers give them
    now.
    """
    hb = facade.intensifier
    max_iter = hb._get_max_iterations(hb._eta, hb._max_budget, hb._min_budget)
    return list(hb._compute_configs_and_budgets_for_stages(hb._eta, hb._max_budget, max_iter)[0])


def _not_called(config: Any, seed: int = 0, budget: float | None = None) -> float:
    """SMAC wants a target function; the harness evaluates instead (ask/tell only)."""
    raise RuntimeError("the SMAC adapter runs ask/tell; its target function is never called.")


def make_sampler(name: str, seed: int, context: Any) -> SMACSampler:
    space, levels = context_levels(name, context)
    return SMACSampler(name, space, levels, seed, FACADES[name])

