"""Learning-curve tables: the generator (``benchmarks/curve_tables.py``), the replay
(``optuna_mfkd.bench.curve_tables.TableCurve``) and the live problem (``benchmarks/curve_live.py``)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import itertools
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from optuna_mfkd.bench.curve_tables import TableCurve, TableError, read_sums

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import curve_live  # noqa: E402
import curve_tables  # noqa: E402
import curve_training  # noqa: E402

A_VALUES, KINDS, STEPS = (1, 3, 5), ("x", "y"), 4


def _value(a: int, kind: str, step: int) -> float:
    return a / 10 + (0.5 if kind == "y" else 0.0) + 1 / step


def _seconds(a: int, step: int) -> float:
    return a * 0.25 + step


def _write(path: Path, rows: list[tuple[int, str]]) -> Path:
    """A hand-written table: ``a`` in 1, 3, 5, ``kind`` in x, y, 4 steps."""
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "a",
                "kind",
                *(f"value_{k}" for k in range(1, STEPS + 1)),
                *(f"seconds_{k}" for k in range(1, STEPS + 1)),
            ]
        )
        for a, kind in rows:
            writer.writerow(
                [
                    a,
                    kind,
                    *(repr(_value(a, kind, k)) for k in range(1, STEPS + 1)),
                    *(_seconds(a, k) for k in range(1, STEPS + 1)),
                ]
            )
    return path


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    return _write(tmp_path / "toy.csv.gz", list(itertools.product(A_VALUES, KINDS)))


def test_lookups_space_and_rungs(table_path: Path) -> None:
    table = TableCurve.load(table_path)
    assert table.name == "toy"
    assert table.distributions == {
        "a": IntDistribution(1, 5, step=2),
        "kind": CategoricalDistribution(("x", "y")),
    }
    assert table.report_steps == (1, 2, 3, 4) and table.rungs == (1, 3, 4)
    assert table.optimum == pytest.approx(_value(1, "x", STEPS))
    for a, kind, step in itertools.product(A_VALUES, KINDS, range(1, STEPS + 1)):
        assert table.value({"a": a, "kind": kind}, step) == _value(a, kind, step)
    assert table.value({"a": 3.0, "kind": "y"}, 2) == _value(3, "y", 2)  # an integral float
    assert {tuple(c.values()) for c in table.configurations()} == set(
        itertools.product(A_VALUES, KINDS)
    )


def test_cost_in_steps_or_seconds(table_path: Path) -> None:
    steps = TableCurve.load(table_path)
    seconds = TableCurve.load(table_path, cost="seconds")
    params = {"a": 5, "kind": "x"}
    assert [steps.cost(params, k) for k in (1, 3)] == [1.0, 3.0]
    assert seconds.cost(params, 3) == pytest.approx(sum(_seconds(5, k) for k in (1, 2, 3)))
    assert seconds.seconds_array()[steps.row(params)] == pytest.approx(
        [_seconds(5, k) for k in range(1, STEPS + 1)]
    )


def test_every_suggestion_is_a_row(table_path: Path) -> None:
    table = TableCurve.load(table_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(lambda trial: table.value(table.suggest(trial), table.final_step), n_trials=20)
    assert len({tuple(t.params.values()) for t in study.trials}) == 6


@pytest.mark.parametrize(
    "params, match",
    [
        ({"a": 2, "kind": "x"}, r"parameter 'a' = 2 is not on the grid \[1, 3, 5\]"),
        ({"a": 1.5, "kind": "x"}, r"parameter 'a' = 1.5 is not on the grid"),
        ({"a": True, "kind": "x"}, r"parameter 'a' = True is not on the grid"),
        ({"a": 1, "kind": "z"}, r"parameter 'kind' = 'z' is not on the grid"),
        ({"a": 1}, r"parameter 'kind' is missing"),
        ({"a": 1, "kind": "x", "b": 0}, r"unknown parameter 'b'"),
    ],
)
def test_off_grid_params_name_the_parameter(table_path: Path, params: dict, match: str) -> None:
    table = TableCurve.load(table_path)
    with pytest.raises(ValueError, match=match) as info:
        table.value(params, 1)
    assert "\n" not in str(info.value) and str(info.value).startswith("toy: ")


def test_steps_outside_the_table(table_path: Path) -> None:
    table = TableCurve.load(table_path)
    for step in (0, STEPS + 1):
        with pytest.raises(ValueError, match=f"step {step} is not one of the report steps"):
            table.value({"a": 1, "kind": "x"}, step)


def test_checksum(table_path: Path) -> None:
    digest = hashlib.sha256(table_path.read_bytes()).hexdigest()
    assert TableCurve.load(table_path, sha256=digest.upper()).name == "toy"
    with pytest.raises(TableError, match=rf"{table_path}: SHA-256 {digest} differs"):
        TableCurve.load(table_path, sha256="0" * 64)


@pytest.mark.parametrize(
    "rows, match",
    [
        (
            list(itertools.product(A_VALUES, KINDS))[:-1],
            "5 rows, but the parameters' values make 6",
        ),
        ([*itertools.product(A_VALUES, KINDS), (1, "x")], "1 configurations appear more than once"),
        (list(itertools.product((1, 2, 5), KINDS)), r"'a' are not evenly spaced: \[1, 2, 5\]"),
    ],
)
def test_incomplete_or_malformed_grids(tmp_path: Path, rows: list, match: str) -> None:
    path = _write(tmp_path / "bad.csv.gz", rows)
    with pytest.raises(TableError, match=match) as info:
        TableCurve.load(path)
    assert str(info.value).startswith(str(path))


def test_missing_or_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=f"{tmp_path / 'none.csv.gz'}: no such curve table"):
        TableCurve.load(tmp_path / "none.csv.gz")
    (tmp_path / "junk.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(TableError, match="junk.csv.gz: not a readable CSV table"):
        TableCurve.load(tmp_path / "junk.csv.gz")
    (tmp_path / "cols.csv").write_text("a,value_1\n1,0.5\n")
    with pytest.raises(TableError, match="cols.csv: expected columns value_1..value_E"):
        TableCurve.load(tmp_path / "cols.csv")


def test_complete_prefix() -> None:
    sizes = [4, 3, 2, 3, 2, 2, 2]  # mlp-digits
    expected = {1: 1, 4: 4, 5: 4, 12: 8, 16: 16, 10**6: 576}
    assert {n: curve_tables.complete_prefix(sizes, n) for n in expected} == expected


def test_live_curve_trains_each_epoch_once(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict] = []

    def fake_train(name, params, epochs=curve_training.EPOCHS):
        started.append(dict(params))
        for epoch in range(1, epochs + 1):
            yield 1 / epoch, 0.5

    monkeypatch.setattr(curve_training, "train", fake_train)
    live = curve_live.LiveCurve("mlp-digits", cost="seconds")
    params = next(curve_training.grid("mlp-digits"))
    assert [live.value(params, k) for k in (1, 2, 3)] == [1.0, 0.5, 1 / 3]
    assert live.epochs_trained(params) == 3 and live.value(params, 1) == 1.0
    assert live.cost(params, 27) == 13.5 and live.epochs_trained(params) == 27
    assert len(started) == 1
    with pytest.raises(ValueError, match="parameter 'depth' = 5 is not on the grid"):
        live.value({**params, "depth": 5}, 1)


def test_generated_table_matches_live_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 4-row, 3-epoch table of mlp-digits (``--limit 5`` rounds down to a complete
    sub-grid), then 2 of its rows trained again live."""
    args = ["--problem", "mlp-digits", "--limit", "5", "--epochs", "3", "--out", str(tmp_path)]
    curve_tables.main(args)
    path = tmp_path / "mlp-digits.csv.gz"
    table = TableCurve.load(path, sha256=read_sums(tmp_path / "SHA256SUMS")["mlp-digits.csv.gz"])
    assert table.report_steps == (1, 2, 3) and table.rungs == (1, 3)
    assert table.configurations() == list(curve_training.grid("mlp-digits"))[:4]
    assert table.distributions["solver"] == CategoricalDistribution(("adam", "sgd"))
    assert table.distributions["depth"] == IntDistribution(1, 1)
    capsys.readouterr()
    assert curve_live.check(path, rows=2, seed=0)
    out = capsys.readouterr().out
    assert out.count("3/3 epochs equal") == 2 and "mlp-digits: all values equal" in out
