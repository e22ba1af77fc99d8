"""Refused ``optuna-mfkd search`` commands: one line naming the input, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_mfkd.cli import main


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_a_table_that_is_not_csv_is_named(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--table", "/dev/null", "--n-trials", "1"]) == 2
    assert "NB201 table '/dev/null' is not a compact CSV table" in _error(capsys)
    assert list(folder.iterdir()) == []  # no empty optuna-mfkd.db left behind


def test_a_table_without_the_columns_lists_them_once(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["search", "--table", "bad.csv", "--n-trials", "1"]) == 2
    err = _error(capsys)
    assert "has none of the compact table's columns" in err and err.count("'arch_str'") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["bad.csv"]


def test_an_existing_database_is_kept_when_a_command_is_refused(folder: Path, capsys) -> None:
    assert main(["search", "--n-trials", "2", "--quiet"]) == 0
    before = (folder / "optuna-mfkd.db").stat().st_size
    assert main(["search", "--table", "/dev/null", "--n-trials", "1"]) == 2
    assert (folder / "optuna-mfkd.db").stat().st_size == before


@pytest.mark.parametrize("name", ["", " ", " mfkd"])
def test_a_blank_study_name_is_refused(folder: Path, name: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--study-name", name, "--n-trials", "1"])
    assert exit_.value.code == 2
    assert list(folder.iterdir()) == []
