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

__all__ = [
    "EDGES",
    "EDGE_PARAM_NAMES",
    "NUM_ARCHS",
    "OPS",
    "Architecture",
    "build_network",
    "suggest_architecture",
]


def __getattr__(name: str):
    # The network needs torch; keep ``import optuna_mfkd.nasbench201`` light until it is used.
    if name == "build_network":
        from optuna_mfkd.nasbench201.network import build_network

        return build_network
    raise AttributeError(f"module 'optuna_mfkd.nasbench201' has no attribute {name!r}")
