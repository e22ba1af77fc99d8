"""optuna-mfkd: multi-fidelity neural architecture search with knowledge distillation (MF-KD).

Public names:

- :class:`MFKDSampler`: the AR1 co-kriging multi-fidelity sampler for Optuna.
- :class:`MFKDPruner`: the model-based pruner of its step (learning-curve) mode.
- :func:`fidelity_of`, :func:`best_high_fidelity_trial`, :class:`MaxCostCallback`,
  :func:`level_costs`: helpers for multi-fidelity objectives and studies.
- :class:`NB201TrainingObjective`: trains NAS-Bench-201 cells, optionally with distillation.

``import optuna_mfkd`` (and any light submodule, such as :mod:`optuna_mfkd.nasbench201.space`)
loads neither torch nor the GP stack: :class:`MFKDSampler` and :class:`NB201TrainingObjective`
are imported from their modules on first access (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

# linear_operator (under GPyTorch) calls torch.jit.script at import, which torch >= 2.10
# reports as deprecated on every import; the warning is not actionable for our users.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)

from optuna_mfkd.fidelity import MaxCostCallback, best_high_fidelity_trial, fidelity_of, level_costs  # noqa: E402

if TYPE_CHECKING:
    from optuna_mfkd.pruning import MFKDPruner
    from optuna_mfkd.sampler import MFKDSampler
    from optuna_mfkd.training.objectives import NB201TrainingObjective

__version__ = "0.1.0"

__all__ = [
    "MFKDPruner",
    "MFKDSampler",
    "MaxCostCallback",
    "NB201TrainingObjective",
    "best_high_fidelity_trial",
    "fidelity_of",
    "level_costs",
]

#: Public names that need torch, and the module defining each.
_LAZY = {
    "MFKDPruner": "optuna_mfkd.pruning",
    "MFKDSampler": "optuna_mfkd.sampler",
    "NB201TrainingObjective": "optuna_mfkd.training.objectives",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'optuna_mfkd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
