"""The NAS-Bench-201 network for any cell, with xautodl's ``TinyNetwork`` parameter names.

Macro structure (C = 16, N = 5), indices into :attr:`NB201Network.cells`::

    stem      conv3x3(3 -> C) + BN
    0 .. 4    N cells at C channels, 32 x 32
    5         residual block C -> 2C, stride 2
    6 .. 10   N cells at 2C, 16 x 16
    11        residual block 2C -> 4C, stride 2
    12 .. 16  N cells at 4C, 8 x 8
    lastact   BN + ReLU, global average pool, classifier (Linear)

A cell has 4 nodes; node_j = sum over i < j of op_ij(node_i) and the cell outputs node 3.
Edge ``k`` of the cell is ``cells.{i}.layers.{k}`` in arch-string order (0->1), (0->2),
(1->2), (0->3), (1->3), (2->3), so checkpoints saved by xautodl/NB201 (and the teachers in
``MFKD_TEACHERS``) load with ``load_state_dict(..., strict=True)``.

The forward pass skips ``none`` edges (they add zero) and edges whose target node does not
reach the cell output; the logits are those of the reference implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from optuna_mfkd.nasbench201.space import EDGES, OPS, arch_str_to_ops

#: Layers distilled by default: cells 2 and 3 of stages 1 and 2 and the first residual block.
DEFAULT_DISTILL_LAYERS = (2, 3, 5, 8, 9)


def _parse_arch(arch: str) -> list[tuple[str, int]]:
    """NB201 arch string -> six (op, source node) pairs in edge order."""
    ops = arch_str_to_ops(arch)
    return [(op, src) for op, (src, _) in zip(ops, EDGES, strict=True)]


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d; parameters at ``op.1`` and ``op.2``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Pooling(nn.Module):
    """3x3 average pooling, stride 1, padding 1, ``count_include_pad=False`` (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The ``none`` operation: multiplies by zero (skipped by :class:`InferCell`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _make_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return Pooling()
    raise ValueError(f"unknown NB201 operation {name!r}; expected one of {tuple(OPS)}.")


class InferCell(nn.Module):
    """One NB201 cell: a 4-node DAG whose 6 edges are in ``layers`` in arch-string order."""

    def __init__(self, edges: Sequence[tuple[str, int]], channels: int) -> None:
        super().__init__()
        self.edges = [op for op, _ in edges]
        self.layers = nn.ModuleList(_make_op(op, channels) for op, _ in edges)
        # (edge index, source node, target node), for the edges that can change the output.
        targets = [1, 2, 2, 3, 3, 3]
        sources = [src for _, src in edges]
        live_nodes = {3}
        for k in (5, 4, 3, 2, 1, 0):
            if edges[k][0] != "none" and targets[k] in live_nodes:
                live_nodes.add(sources[k])
        self._plan = [
            (k, sources[k], targets[k])
            for k in range(6)
            if edges[k][0] != "none" and targets[k] in live_nodes
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for k, src, dst in self._plan:
            inp = nodes[src]
            if inp is None:  # a node fed only by `none` edges is zero
                inp = torch.zeros_like(x)
                nodes[src] = inp
            out = self.layers[k](inp)
            nodes[dst] = out if nodes[dst] is None else nodes[dst] + out
        return nodes[3] if nodes[3] is not None else torch.zeros_like(x)


class ResNetBasicblock(nn.Module):
    """Stride-2 residual block between stages (xautodl's ``ResNetBasicblock`` layout)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NB201 ``TinyNetwork`` for one cell.

    ``forward(x)`` returns logits; :meth:`forward_features` also returns the outputs of the
    chosen entries of ``cells`` (indices as in the module docstring) from the same pass.
    """

    def __init__(self, arch: str, num_classes: int, C: int = 16, N: int = 5) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        edges = _parse_arch(arch)
        self.arch = arch
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c_curr in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicblock(c_prev, c_curr))
            cells.extend(InferCell(edges, c_curr) for _ in range(N))
            c_prev = c_curr
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the outputs of ``cells[i]`` for each ``i`` in ``layers`` (in that order)."""
        wanted = {int(i): None for i in layers}
        for i in wanted:
            if not 0 <= i < len(self.cells):
                raise ValueError(f"layer index {i} out of range 0..{len(self.cells) - 1}.")
        feats: dict[int, torch.Tensor] = {}
        h = self.stem(x)
        for i, cell in enumerate(self.cells):
            h = cell(h)
            if i in wanted:
                feats[i] = h
        h = self.global_pooling(self.lastact(h)).flatten(1)
        return self.classifier(h), [feats[int(i)] for i in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x, ())[0]


def build_network(arch: str, num_classes: int) -> NB201Network:
    """The NB201 network (C = 16, N = 5) for cell ``arch`` with ``num_classes`` outputs.

    Parameter names follow xautodl's ``TinyNetwork``; ``forward(x)`` returns logits.

    Raises:
        ValueError: ``arch`` is not an NB201 cell string or ``num_classes`` is not positive.
    """
    return NB201Network(arch, num_classes)
