from __future__ import annotations

import itertools
import random

import numpy as np
import optuna
import pytest

from optuna_mfkd.nasbench201 import space as S


def test_constants():
    assert S.OPS == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    assert S.EDGES == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    assert S.NUM_ARCHS == 15625
    assert S.EDGE_PARAM_NAMES == ["edge_0->1", "edge_0->2", "edge_1->2", "edge_0->3", "edge_1->3", "edge_2->3"]


def test_round_trip_every_cell():
    seen = set()
    for index in range(S.NUM_ARCHS):
        ops = S.index_to_ops(index)
        arch_str = S.ops_to_arch_str(ops)
        assert S.arch_str_to_ops(arch_str) == ops
        assert S.ops_to_index(ops) == index
        seen.add(ops)
    assert seen == set(itertools.product(S.OPS, repeat=6))


def test_index_order_is_the_seeded_shuffle():
    # Independent statement of the official order: product over the edges, shuffled with seed 88.
    cells = list(itertools.product(S.OPS, repeat=6))
    random.seed(88)
    random.shuffle(cells)
    assert [S.index_to_ops(i) for i in (0, 1, 11472, 15624)] == [cells[i] for i in (0, 1, 11472, 15624)]


def test_arch_str_format_and_resnet_cell():
    arch = S.Architecture.from_index(S.RESNET_INDEX)
    assert arch.arch_str == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert S.Architecture.from_str(arch.arch_str) == arch
    assert S.Architecture.from_ops(list(arch.ops)).index == S.RESNET_INDEX
    assert arch.params["edge_0->1"] == "nor_conv_3x3" and arch.params["edge_2->3"] == "skip_connect"


def test_one_hot():
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none")
    x = S.one_hot(ops)
    assert x.shape == (30,)
    assert np.flatnonzero(x).tolist() == [0, 6, 12, 18, 24, 25]


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|",  # two nodes
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|",  # node 3 short
        "|conv~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # unknown op
        "|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # wrong source
        "nor_conv_3x3~0+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",  # no bars
    ],
)
def test_malformed_arch_strings(bad):
    with pytest.raises(ValueError, match="arch string|unknown operation"):
        S.arch_str_to_ops(bad)


def test_bad_ops_and_indices():
    with pytest.raises(ValueError, match="unknown operation 'conv5x5'"):
        S.ops_to_index(("conv5x5",) + ("none",) * 5)
    with pytest.raises(ValueError, match="6 operations"):
        S.Architecture(("none",) * 5)
    for bad in (-1, 15625, 3.0, True):
        with pytest.raises(ValueError, match="index"):
            S.index_to_ops(bad)


def test_canonical_form():
    a = S.Architecture.from_ops(["nor_conv_3x3", "none", "none", "none", "skip_connect", "none"])
    b = S.Architecture.from_ops(["none", "nor_conv_3x3", "none", "none", "none", "skip_connect"])
    assert a.canonical_form() == b.canonical_form() == "((nor_conv_3x3(x)))"
    # Output cut off from the input: the cell computes zero.
    assert S.canonical_form(["nor_conv_3x3"] * 3 + ["none"] * 3) == "0"
    assert S.canonical_form(["skip_connect"] * 6) != S.canonical_form(["skip_connect"] * 5 + ["none"])


def test_suggest_architecture_defines_six_categoricals():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = S.suggest_architecture(trial)
    assert set(trial.params) == set(S.EDGE_PARAM_NAMES)
    assert all(trial.distributions[n].choices == tuple(S.OPS) for n in S.EDGE_PARAM_NAMES)
    assert S.architecture_from_params(trial.params) == arch
    fixed = optuna.trial.FixedTrial(arch.params)
    assert S.suggest_architecture(fixed) == arch


def test_table_rows_agree_with_reproduced_order(nb201_table_path):
    import pandas as pd

    df = pd.read_csv(nb201_table_path, usecols=["index", "arch_str"])
    assert [S.arch_str_to_ops(s) for s in df["arch_str"]] == [S.index_to_ops(i) for i in df["index"]]
