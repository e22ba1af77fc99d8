"""The NB201 network: xautodl parameter layout, the reference cell semantics, features."""

from __future__ import annotations

import pytest
import torch

from optuna_mfkd.nasbench201.network import InferCell, build_network

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
# Node 1 feeds nothing that reaches node 3 (edges 1->2 and 1->3 are none, 2->3 is none too):
# its conv and the conv into node 2 are dead; node 3 = conv1x1(node 0).
DEAD = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"
MIXED = "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"


def _reference_cell(cell: InferCell, x: torch.Tensor) -> torch.Tensor:
    """xautodl's InferCell: node_j = sum_i op_ij(node_i), every edge evaluated (none = x * 0)."""
    nodes = [x]
    k = 0
    for j in range(1, 4):
        total = 0
        for i in range(j):
            total = total + cell.layers[k](nodes[i])
            k += 1
        nodes.append(total)
    return nodes[3]


def _reference_forward(net, x: torch.Tensor) -> torch.Tensor:
    h = net.stem(x)
    for cell in net.cells:
        h = _reference_cell(cell, h) if isinstance(cell, InferCell) else cell(h)
    return net.classifier(net.global_pooling(net.lastact(h)).flatten(1))


def test_resnet_cell_parameter_count_and_names() -> None:
    net = build_network(RESNET, 10)
    # 0.559 M parameters for the ResNet-cell network (NB201 teacher README).
    assert sum(p.numel() for p in net.parameters()) == 559_386
    names = set(net.state_dict())
    for key in ("stem.0.weight", "stem.1.running_var", "cells.0.layers.0.op.1.weight",
                "cells.5.conv_a.op.1.weight", "cells.5.downsample.1.weight",
                "cells.11.conv_b.op.2.bias", "lastact.0.weight", "classifier.bias"):
        assert key in names


@pytest.mark.parametrize("arch", [RESNET, DEAD, MIXED])
@pytest.mark.parametrize("train", [True, False])
def test_forward_matches_reference_cell_semantics(arch: str, train: bool) -> None:
    torch.manual_seed(0)
    net = build_network(arch, 7)
    for m in net.modules():  # non-trivial BN statistics and affine terms
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.train(train)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        got = net(x)
        want = _reference_forward(net, x)
    assert got.shape == (4, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_forward_features_same_pass_and_shapes() -> None:
    torch.manual_seed(0)
    net = build_network(MIXED, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, feats = net.forward_features(x, [2, 5, 12])
    assert [tuple(f.shape) for f in feats] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    torch.testing.assert_close(logits, net(x))
    h = net.stem(x)
    for i in range(3):
        h = net.cells[i](h)
    torch.testing.assert_close(feats[0], h)
    with pytest.raises(ValueError, match="out of range"):
        net.forward_features(x, [17])


def test_bad_arch_and_classes() -> None:
    with pytest.raises(ValueError):
        build_network("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", 10)
    with pytest.raises(ValueError):
        build_network("resnet", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_network(RESNET, 0)


def test_shared_teacher_loads_strictly_and_classifies(teachers_dir, cifar10_path) -> None:
    from optuna_mfkd.distill.teacher import load_teacher
    from optuna_mfkd.training.data import load_split, seeded_subset
    from optuna_mfkd.training.trainer import accuracy

    net = load_teacher(teachers_dir / "nb201-resnet-cifar10-valid.pth")
    assert net.arch == RESNET and not net.training
    test = load_split("cifar10", cifar10_path, "test")
    sub = test.subset(seeded_subset(range(len(test)), 300, seed=0))
    acc = accuracy(net, sub)
    assert acc > 60.0  # chance is 10 %; about 80 % on the JPEG test images
