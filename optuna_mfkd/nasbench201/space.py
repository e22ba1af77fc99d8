"""The NAS-Bench-201 cell search space.

A cell is a DAG on 4 nodes; each of its 6 edges ``i -> j`` (``i < j``) carries one of 5
operations, so the space holds ``5**6 = 15,625`` cells. Node ``j`` is the sum over ``i < j``
of ``op_ij(node_i)``; the cell outputs node 3.

Three equivalent names for a cell:

- the op tuple: the 6 operation names in :data:`EDGES` order
  ``(0->1), (0->2), (1->2), (0->3), (1->3), (2->3)``;
- the arch string: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1, node 2, node 3; ``op~i``
  is the edge from node ``i``);
- the official NB201 index: ``itertools.product(OPS, repeat=6)`` shuffled with
  ``random.seed(88)`` (this reproduces the benchmark's own numbering without its file).

:func:`suggest_architecture` defines the same six categorical Optuna parameters (one per edge,
named ``edge_i->j``) for every sampler. This module imports no torch.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import optuna

OPS: list[str] = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES: list[tuple[int, int]] = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
NUM_OPS = len(OPS)
NUM_EDGES = len(EDGES)
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
EDGE_PARAM_NAMES: list[str] = [f"edge_{i}->{j}" for i, j in EDGES]
#: Seed of the shuffle that gives the official NB201 index order.
INDEX_SEED = 88
#: Official index of the ResNet-like cell (the teacher architecture of MF-KD).
RESNET_INDEX = 11472

_OP_POS = {op: k for k, op in enumerate(OPS)}
Ops = tuple[str, str, str, str, str, str]


@functools.lru_cache(maxsize=1)
def _index_order() -> tuple[tuple[str, ...], ...]:
    cells = list(itertools.product(OPS, repeat=NUM_EDGES))
    random.Random(INDEX_SEED).shuffle(cells)
    return tuple(cells)


@functools.lru_cache(maxsize=1)
def _ops_to_index_map() -> dict[tuple[str, ...], int]:
    return {ops: k for k, ops in enumerate(_index_order())}


def _check_ops(ops: object) -> Ops:
    if isinstance(ops, str) or not hasattr(ops, "__iter__"):
        raise ValueError(f"ops must be a sequence of {NUM_EDGES} operation names, got {ops!r}.")
    ops = tuple(ops)  # type: ignore[arg-type]
    if len(ops) != NUM_EDGES:
        raise ValueError(f"ops must name {NUM_EDGES} operations (one per edge), got {len(ops)}: {ops!r}.")
    for op in ops:
        if op not in _OP_POS:
            raise ValueError(f"unknown operation {op!r} in {ops!r}; known operations: {OPS}.")
    return ops  # type: ignore[return-value]


def _check_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"an NB201 index must be an integer, got {index!r}.")
    if not 0 <= int(index) < NUM_ARCHS:
        raise ValueError(f"NB201 index {index} is out of range [0, {NUM_ARCHS - 1}].")
    return int(index)


def ops_to_arch_str(ops: tuple[str, ...] | list[str]) -> str:
    """``("nor_conv_3x3", ...)`` -> ``"|nor_conv_3x3~0|+|...|"``."""
    ops = _check_ops(ops)
    nodes, k = [], 0
    for j in range(1, 4):
        nodes.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(nodes)


def arch_str_to_ops(arch_str: str) -> Ops:
    """Parse an arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into the op tuple."""
    if not isinstance(arch_str, str):
        raise ValueError(f"an arch string must be a str, got {arch_str!r}.")
    nodes = arch_str.split("+")
    if len(nodes) != 3:
        raise ValueError(
            f"malformed arch string {arch_str!r}: expected 3 nodes separated by '+', "
            "like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'."
        )
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise ValueError(f"malformed arch string {arch_str!r}: node {j} {node!r} must be wrapped in '|'.")
        parts = node[1:-1].split("|")
        if len(parts) != j:
            raise ValueError(f"malformed arch string {arch_str!r}: node {j} needs {j} inputs, got {len(parts)}.")
        for i, part in enumerate(parts):
            op, sep, src = part.partition("~")
            if not sep or src != str(i):
                raise ValueError(
                    f"malformed arch string {arch_str!r}: node {j} input {i} is {part!r}, expected 'op~{i}'."
                )
            if op not in _OP_POS:
                raise ValueError(f"unknown operation {op!r} in arch string {arch_str!r}; known operations: {OPS}.")
            ops.append(op)
    return tuple(ops)  # type: ignore[return-value]


def index_to_ops(index: int) -> Ops:
    """Official NB201 index -> op tuple."""
    return _index_order()[_check_index(index)]  # type: ignore[return-value]


def ops_to_index(ops: tuple[str, ...] | list[str]) -> int:
    """Op tuple -> official NB201 index."""
    return _ops_to_index_map()[_check_ops(ops)]


def one_hot(ops: tuple[str, ...] | list[str]) -> np.ndarray:
    """Concatenated one-hot encoding of the 6 edge operations, shape ``(30,)``, float64.

    Entry ``5 * e + k`` is 1 when edge ``e`` (in :data:`EDGES` order) carries ``OPS[k]``.
    """
    ops = _check_ops(ops)
    x = np.zeros(NUM_EDGES * NUM_OPS)
    for e, op in enumerate(ops):
        x[NUM_OPS * e + _OP_POS[op]] = 1.0
    return x


def canonical_form(ops: tuple[str, ...] | list[str]) -> str:
    """A string equal for cells that compute the same function of their input.

    Each node is written as the sorted multiset of ``op(input)`` terms of its incoming edges;
    ``none`` edges and zero inputs vanish (every NB201 op maps a zero input to zero),
    ``skip_connect`` is the identity. Two cells with the same canonical form are isomorphic
    (same computation up to the order of the sums). The 15,625 cells fall into 8,765 such
    classes; NB201's own count of unique cells (6,466) uses a coarser equivalence.
    """
    ops = _check_ops(ops)
    exprs: list[str | None] = ["x"]
    k = 0
    for j in range(1, 4):
        terms = []
        for i in range(j):
            op, src = ops[k + i], exprs[i]
            if op == "none" or src is None:
                continue
            terms.append(src if op == "skip_connect" else f"{op}({src})")
        k += j
        exprs.append("(" + "+".join(sorted(terms)) + ")" if terms else None)
    return exprs[3] or "0"


@dataclass(frozen=True)
class Architecture:
    """One NB201 cell: its op tuple, arch string and official index."""

    ops: Ops

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", _check_ops(self.ops))

    @classmethod
    def from_ops(cls, ops: tuple[str, ...] | list[str]) -> Architecture:
        return cls(tuple(ops))  # type: ignore[arg-type]

    @classmethod
    def from_str(cls, arch_str: str) -> Architecture:
        return cls(arch_str_to_ops(arch_str))

    @classmethod
    def from_index(cls, index: int) -> Architecture:
        return cls(index_to_ops(index))

    @property
    def arch_str(self) -> str:
        return ops_to_arch_str(self.ops)

    @property
    def index(self) -> int:
        return ops_to_index(self.ops)

    @property
    def params(self) -> dict[str, str]:
        """The Optuna parameters of this cell (for ``enqueue_trial``)."""
        return dict(zip(EDGE_PARAM_NAMES, self.ops, strict=True))

    def one_hot(self) -> np.ndarray:
        return one_hot(self.ops)

    def canonical_form(self) -> str:
        return canonical_form(self.ops)

    def __str__(self) -> str:
        return self.arch_str


def suggest_architecture(trial: optuna.trial.BaseTrial) -> Architecture:
    """Suggest one NB201 cell: six categorical parameters ``edge_i->j`` over :data:`OPS`."""
    ops = tuple(trial.suggest_categorical(name, OPS) for name in EDGE_PARAM_NAMES)
    return Architecture(ops)  # type: ignore[arg-type]


def architecture_from_params(params: dict[str, object]) -> Architecture:
    """Rebuild the cell from a trial's ``params`` (as written by :func:`suggest_architecture`)."""
    missing = [n for n in EDGE_PARAM_NAMES if n not in params]
    if missing:
        raise ValueError(f"trial params lack the NB201 edge parameters {missing}; got {sorted(params)}.")
    return Architecture(tuple(str(params[n]) for n in EDGE_PARAM_NAMES))  # type: ignore[arg-type]


def cell_key(params: dict[str, object]) -> str:
    """Isomorphism class of the cell in a trial's ``params``: its :func:`canonical_form`.

    Pass it as ``MFKDSampler(point_key=cell_key)``: isomorphic cells compute the same
    function (the table gives them equal values), so the sampler treats them as one point
    of its model and never proposes a cell isomorphic to one already evaluated at that level.
    """
    return architecture_from_params(params).canonical_form()
