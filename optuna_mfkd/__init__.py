"""optuna-mfkd: multi-fidelity neural architecture search with knowledge distillation (MF-KD).

Public names:

- :class:`MFKDSampler`: the AR1 co-kriging multi-fidelity sampler for Optuna.
- :func:`fidelity_of`, :func:`best_high_fidelity_trial`, :class:`MaxCostCallback`: helpers
  for multi-fidelity objectives and studies.
- :class:`NB201TrainingObjective`: trains NAS-Bench-201 cells, optionally with distillation.
"""

from __future__ import annotations

import warnings
from typing import Any

# linear_operator (under GPyTorch) calls torch.jit.script at import, which torch >= 2.10
# reports as deprecated on every import; the warning is not actionable for our users.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)

from optuna_mfkd.fidelity import MaxCostCallback, best_high_fidelity_trial, fidelity_of  # noqa: E402
from optuna_mfkd.sampler import MFKDSampler  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MFKDSampler",
    "MaxCostCallback",
    "NB201TrainingObjective",
    "best_high_fidelity_trial",
    "fidelity_of",
]


def __getattr__(name: str) -> Any:
    # The training objective pulls in torchvision and the trainer; load it on first use.
    if name == "NB201TrainingObjective":
        from optuna_mfkd.training.objective import NB201TrainingObjective

        return NB201TrainingObjective
    raise AttributeError(f"module 'optuna_mfkd' has no attribute {name!r}")
