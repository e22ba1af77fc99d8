from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from optuna_mfkd.bench.evolution import RegularizedEvolutionSampler
from optuna_mfkd.bench.methods import METHODS, get_method
from optuna_mfkd.bench.protocols import get_protocol
from optuna_mfkd.nasbench201.table import load_table


def test_budgets(nb201_table_path):
    table = load_table(nb201_table_path)
    nb201 = get_protocol("nb201")
    assert [nb201.budget(table, d) for d in ("cifar10", "cifar100", "imagenet16")] == [12_000, 12_000, 36_000]
    assert get_protocol("nb201-12k").budget(table, "imagenet16") == 12_000
    sec = pd.read_csv(nb201_table_path, usecols=["cifar100_train_seconds_per_epoch"]).iloc[:, 0]
    assert get_protocol("mf").budget(table, "cifar100") == pytest.approx(50 * 200 * float(np.median(sec)))


def test_method_registry_builds():
    mf = get_protocol("mf")
    built = {name: get_method(name).build(3, mf.context(name)) for name in ("random", "tpe", "gp", "re", "bohb", "hyperband")}
    assert isinstance(built["re"][0], RegularizedEvolutionSampler)
    assert isinstance(built["gp"][0], optuna.samplers.GPSampler)
    pruner = built["bohb"][1]
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and isinstance(built["bohb"][0], optuna.samplers.TPESampler)
    assert {m for m in METHODS if m.startswith("mfkd")} == {
        "mfkd", "mfkd-gpr", "mfkd-nst", "mfkd-ce", "mfkd-kd", "mfkd-nst-ca", "mfkd-ce-ca", "mfkd-kd-ca", "mfkd-gpr-ca",
        "mfkd-paper", "mfkd-mes", "mfkd-ucb",
    }
    # mfkd-mes / mfkd-ucb are the defaults with the level rule named, on the protocol's levels.
    for name, strategy in (("mfkd-mes", "mf-mes"), ("mfkd-ucb", "cost-aware")):
        sampler = get_method(name).build(3, mf.context(name))[0]
        assert sampler.strategy == strategy and sampler.fidelities == ["12ep", "200ep"]


def test_objectives_per_method(nb201_table_path):
    table = load_table(nb201_table_path)
    mf = get_protocol("mf")
    assert mf.objective(table, "cifar10", "bohb").promotion == ("12ep", "200ep")
    assert mf.objective(table, "cifar10", "tpe").default_level == "200ep"
    assert mf.objective(table, "cifar10", "mfkd").levels == {"12ep": 12, "200ep": 200}
    assert get_protocol("nb201").objective(table, "cifar10", "gp").levels == {"12ep": 12}
    with pytest.raises(ValueError, match="needs a low-fidelity pool|not part of protocol"):
        get_protocol("nb201").objective(table, "cifar10", "mfkd-nst")
