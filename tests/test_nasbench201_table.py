from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest

from optuna_mfkd.nasbench201.space import Architecture
from optuna_mfkd.nasbench201.table import (
    CompactTable,
    bundled_table_path,
    compact_columns,
    load_table,
)
from optuna_mfkd.nasbench201.tabular import ScoreLevel, TabularObjective


@pytest.fixture(scope="module")
def table(nb201_table_path):
    return load_table(nb201_table_path)


@pytest.fixture(scope="module")
def row0(nb201_table_path):
    return pd.read_csv(nb201_table_path, nrows=3).set_index("index").loc[0]


def test_lookups_match_the_csv_row(table, row0):
    assert table.val_acc("cifar10", 0, 12) == row0["cifar10_valid_val_acc_12ep"]
    assert table.val_acc("cifar10-valid", 0, 200) == row0["cifar10_valid_val_acc_200ep_mean"]
    assert table.test_acc("cifar100", 0, 200) == row0["cifar100_test_acc_200ep"]
    assert table.test_acc("ImageNet16-120", 0, 12) == row0["imagenet16_test_acc_12ep"]
    assert table.seconds_per_epoch("imagenet16", 0) == row0["imagenet16_train_seconds_per_epoch"]
    seeds = table.val_acc_seeds("cifar10", 0)
    assert seeds == tuple(float(s) for s in row0["cifar10_valid_val_acc_200ep_seeds"].split(";"))
    assert abs(sum(seeds) / len(seeds) - row0["cifar10_valid_val_acc_200ep_mean"]) < 1e-3
    assert table.arch_str(0) == row0["arch_str"]


def test_best_cells(table):
    assert table.best_test_acc("cifar10") == pytest.approx(94.3733, abs=1e-4)
    assert table.column("cifar10", "test").argmax() == 6111


def test_bad_inputs(table, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown NB201 dataset"):
        table.val_acc("mnist", 0)
    with pytest.raises(ValueError, match="12, 200"):
        table.val_acc("cifar10", 0, 50)
    with pytest.raises(ValueError, match="index"):
        table.val_acc("cifar10", 15625)
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv.*columns"):
        CompactTable(missing)
    monkeypatch.setenv("NB201_TABLE", str(missing))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_table()


def test_bundled_table_is_the_default(monkeypatch):
    """No path and no NB201_TABLE: the table shipped with the package, whose best cells and
    ResNet cell are those its README lists."""
    monkeypatch.delenv("NB201_TABLE", raising=False)
    table = load_table()
    assert Path(table.source) == bundled_table_path() and bundled_table_path().name == "nb201_compact.csv.gz"
    for ds, index, best in (("cifar10", 6111, 94.37), ("cifar100", 9930, 73.50), ("imagenet16", 3888, 46.88)):
        test = table.column(ds, "test")
        assert test.shape == (15_625,) and int(test.argmax()) == index
        assert float(test.max()) == pytest.approx(best, abs=0.006)  # the README's 2 decimals
    resnet = [table.test_acc(ds, 11472) for ds in ("cifar10", "cifar100", "imagenet16")]
    assert resnet == pytest.approx([93.91, 70.70, 44.17], abs=0.006)
    assert (bundled_table_path().parent / "README.md").read_text().count("MIT") >= 1


def test_bundled_table_equals_the_given_csv(nb201_table_path):
    """The bundled file holds exactly the rows of the compact CSV it was made from."""
    if nb201_table_path == bundled_table_path():
        pytest.skip("NB201_TABLE is not set: no separate CSV to compare the bundled table with")
    given = pd.read_csv(nb201_table_path)
    bundled = pd.read_csv(bundled_table_path())
    pd.testing.assert_frame_equal(bundled, given)


@pytest.mark.parametrize("kind", ["empty", "binary", "header-only", "truncated-gz"])
def test_unreadable_tables_are_named(kind, tmp_path):
    import gzip

    path = tmp_path / (f"{kind}.csv.gz" if kind == "truncated-gz" else f"{kind}.csv")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "header-only":
        with gzip.open(bundled_table_path(), "rt") as f:
            path.write_text(f.readline())
    else:
        path.write_bytes(bundled_table_path().read_bytes()[:50_000])
    with pytest.raises(ValueError, match=path.name):
        load_table(path)


def test_empty_paths_and_folders_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="empty"):
        load_table("")
    with pytest.raises(ValueError, match="folder"):
        load_table(tmp_path)
    monkeypatch.setenv("NB201_TABLE", "")
    with pytest.raises(ValueError, match="NB201_TABLE is set but empty"):
        load_table()
    with pytest.raises(FileNotFoundError, match="official.pth"):
        load_table(tmp_path / "official.pth")


def test_wrong_columns_named(tmp_path):
    path = tmp_path / "wrong.csv"
    pd.DataFrame({"index": [0], "arch_str": ["x"], "acc": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"wrong.csv.*lacks the compact table's columns.*cifar10_valid_val_acc_12ep"):
        CompactTable(path)
    assert "cifar10_train_seconds_per_epoch" in compact_columns()


def test_wrong_arch_order_is_caught(nb201_table_path, tmp_path):
    df = pd.read_csv(nb201_table_path)
    df.loc[5, "arch_str"], df.loc[6, "arch_str"] = df.loc[6, "arch_str"], df.loc[5, "arch_str"]
    path = tmp_path / "swapped.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="arch_str of index 5"):
        CompactTable(path)


def _run(objective, params, user_attrs=None, pruner=None):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.enqueue_trial(params, user_attrs=user_attrs)
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def test_tabular_objective_value_cost_attrs(table, row0):
    arch = Architecture.from_index(0)
    obj = TabularObjective(table, "cifar10", default_level="12ep")
    t = _run(obj, arch.params)
    assert t.value == row0["cifar10_valid_val_acc_12ep"]
    assert t.user_attrs["cost"] == pytest.approx(12 * row0["cifar10_train_seconds_per_epoch"])
    assert t.user_attrs["test_acc_200ep"] == row0["cifar10_test_acc_200ep"]
    assert t.user_attrs["nb201_index"] == 0 and t.user_attrs["evaluated_at"] == "12ep"
    assert t.intermediate_values == {12: row0["cifar10_valid_val_acc_12ep"]}
    # The fidelity chosen by a multi-fidelity sampler selects the 200-epoch level.
    t = _run(obj, arch.params, {"fidelity": "200ep"})
    assert t.value == row0["cifar10_valid_val_acc_200ep_mean"]
    assert t.user_attrs["cost"] == pytest.approx(200 * row0["cifar10_train_seconds_per_epoch"])


class _Always(optuna.pruners.BasePruner):
    def __init__(self, answer: bool) -> None:
        self.answer, self.steps = answer, []

    def prune(self, study, trial):
        self.steps.append(trial.last_step)
        return self.answer


def test_two_rung_mode(table, row0):
    arch = Architecture.from_index(0)
    sec = row0["cifar10_train_seconds_per_epoch"]
    obj = TabularObjective(table, "cifar10", promotion=("12ep", "200ep"))
    for prune in (True, False):
        pruner = _Always(prune)
        t = _run(obj, arch.params, pruner=pruner)
        assert pruner.steps == [12]  # should_prune is asked at the 12-epoch rung only
        if prune:
            assert t.state == optuna.trial.TrialState.PRUNED
            assert t.user_attrs["cost"] == pytest.approx(12 * sec)
        else:
            assert t.value == row0["cifar10_valid_val_acc_200ep_mean"]
            assert t.user_attrs["cost"] == pytest.approx(212 * sec)
            assert t.user_attrs["evaluated_at"] == "200ep"


def test_score_level(table, row0):
    arch = Architecture.from_index(0)
    obj = TabularObjective(table, "cifar10", {"nst": ScoreLevel({0: 42.0}, cost_epochs=0.3), "12ep": 12})
    t = _run(obj, arch.params, {"fidelity": "nst"})
    assert t.value == 42.0
    assert t.user_attrs["cost"] == pytest.approx(0.3 * row0["cifar10_train_seconds_per_epoch"])
    with pytest.raises(ValueError, match="no score for NB201 cell 1"):
        _run(obj, Architecture.from_index(1).params, {"fidelity": "nst"})
    with pytest.raises(ValueError, match="12 or 200 epochs"):
        TabularObjective(table, "cifar10", {"5ep": 5})


class _FakeResults:
    def get_dataset_seeds(self, name):
        return [777, 888]

    def get_metrics(self, name, setname, iepoch=None, is_random=False):
        if iepoch is not None:
            return {"accuracy": float(iepoch)}
        return {"accuracy": {777: 80.0, 888: 82.0}[is_random]}


class _FakeAPI:
    """The two nas_201_api calls OfficialTable makes, with made-up values."""

    def __init__(self):
        self.calls = []

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=False):
        self.calls.append((index, dataset, hp))
        return {"valid-accuracy": 50.0 + int(hp), "test-accuracy": 60.0 + int(hp),
                "valtest-accuracy": 70.0 + int(hp), "train-per-time": 13.5}

    def query_meta_info_by_index(self, index, hp="12"):
        return _FakeResults()


def test_official_backend_maps_the_api():
    from optuna_mfkd.nasbench201.table import OfficialTable

    api = _FakeAPI()
    t = OfficialTable("official.pth", api=api)
    assert t.val_acc("cifar10", 7, 12) == 62.0 and api.calls[-1] == (7, "cifar10-valid", "12")
    assert t.test_acc("cifar10", 7, 200) == 260.0 and api.calls[-1] == (7, "cifar10", "200")
    assert t.test_acc("cifar100", 7, 200) == 270.0  # ori-test (valtest) for cifar100 / ImageNet
    assert t.seconds_per_epoch("imagenet16", 7) == 13.5 and api.calls[-1][1] == "ImageNet16-120"
    assert t.val_acc_seeds("cifar10", 7) == (80.0, 82.0)
    assert t.curve("cifar10", 7, 12).tolist() == list(map(float, range(12)))


def test_official_backend_needs_nas_201_api(monkeypatch):
    import sys

    from optuna_mfkd.nasbench201.table import OfficialTable

    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    with pytest.raises(ImportError, match="pip install nas-bench-201"):
        OfficialTable("official.pth")


@pytest.mark.slow
def test_wheel_ships_the_table(tmp_path):
    """A wheel built from the source holds the bundled table and its README (not only an
    editable install finds them)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools", reason="building a wheel needs setuptools")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "optuna_mfkd", src / "optuna_mfkd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("optuna_mfkd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("optuna_mfkd/nasbench201/data/nb201_compact.csv.gz") == bundled_table_path().read_bytes()
        assert b"MIT" in zf.read("optuna_mfkd/nasbench201/data/README.md")
