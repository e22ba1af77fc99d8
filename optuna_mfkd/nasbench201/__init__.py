"""NAS-Bench-201: the cell search space, tabular backends and simulated-search objectives.

``space`` (no torch) defines the 15,625 cells and :func:`suggest_architecture`; ``table`` reads
the benchmark's values; ``objectives`` turns them into Optuna objectives with costs.
"""

from optuna_mfkd.nasbench201.space import (
    EDGE_PARAM_NAMES,
    EDGES,
    NUM_ARCHS,
    OPS,
    Architecture,
    suggest_architecture,
)

__all__ = ["EDGES", "EDGE_PARAM_NAMES", "NUM_ARCHS", "OPS", "Architecture", "suggest_architecture"]
