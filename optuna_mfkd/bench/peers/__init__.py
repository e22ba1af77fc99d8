"""Multi-fidelity optimisers of other libraries, run in the harness beside our methods.

Each peer runs its own ask/tell loop; an adapter (an Optuna sampler, see
:class:`~optuna_mfkd.bench.peers.common.PeerSampler`) asks the peer for the next
(configuration, budget), turns the budget into one of the problem's levels, lets the
harness's objective evaluate it as an ordinary Optuna trial (so every evaluation is a trial of
the study, with its params, level, cost and value, in the same storage as every other
method) and tells the peer the result.

| method | peer | package |
| --- | --- | --- |
| ``dehb`` | DEHB (differential evolution + Hyperband) | ``dehb`` |
| ``syne-bohb`` | Syne Tune ``BOHB`` (asynchronous SH + KDE searcher) | ``syne-tune`` |
| ``syne-asha`` | Syne Tune ``ASHA`` (asynchronous SH, random search) | ``syne-tune`` |
| ``smac-mf`` | SMAC3 ``MultiFidelityFacade`` (random forest + Hyperband) | ``smac`` |
| ``smac-hb`` | SMAC3 ``HyperbandFacade`` (random + Hyperband) | ``smac`` |

The packages are the optional extra ``peers`` (``pip install 'optuna-mfkd[peers]'``); this
module imports none of them, so the registry is cheap to import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

#: Install hint shown when a peer's package is missing.
EXTRA_HINT = "pip install 'optuna-mfkd[peers]'"


@dataclass(frozen=True)
class Peer:
    """One peer method: its harness name, what it is, and where its adapter lives.

    Attributes:
        name: harness method name.
        description: shown in reports.
        module: adapter module under :mod:`optuna_mfkd.bench.peers`.
        requires: top-level modules the adapter imports (from the extra ``peers``).
        factory: name of the adapter's ``factory(name, seed, context) -> PeerSampler``.
    """

    name: str
    description: str
    module: str
    requires: tuple[str, ...]
    factory: str = "make_sampler"

    def build_sampler(self, seed: int, context: Any) -> Any:
        """The peer's Optuna sampler for ``seed`` and a harness
        :class:`~optuna_mfkd.bench.methods.MethodContext` (the registry in
        :mod:`optuna_mfkd.bench.methods` wraps it as a method; this package does not import
        that module, so the two stay free of an import cycle)."""
        module: Any = importlib.import_module(f"{__name__}.{self.module}")
        return getattr(module, self.factory)(self.name, seed, context)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer("dehb", "DEHB (differential evolution + Hyperband), published defaults", "dehb", ("dehb",)),
        Peer("syne-bohb", "Syne Tune BOHB (asynchronous SH + KDE searcher), published defaults", "synetune", ("syne_tune",)),
        Peer("syne-asha", "Syne Tune ASHA (asynchronous SH, random search), published defaults", "synetune", ("syne_tune",)),
        Peer("smac-mf", "SMAC3 MultiFidelityFacade (random forest + Hyperband), published defaults", "smac", ("smac",)),
        Peer("smac-hb", "SMAC3 HyperbandFacade (random search + Hyperband), published defaults", "smac", ("smac",)),
    ]
}
