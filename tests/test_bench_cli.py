"""``optuna-mfkd benchmark --problems`` and ``optuna-mfkd report --intro/--appendix`` in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optuna_mfkd.bench import records
from optuna_mfkd.cli import main


def test_problems_records_and_report_text(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    kept = tmp_path / "runs.jsonl"
    argv = ["benchmark", "--storage", sqlite_url, "--problems", "branin", "--methods", "random", "--seeds", "0-1",
            "--no-progress", "--records", str(kept)]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0]) == {"studies": 2, "ran": 2, "skipped": 0, "errors": 0}
    assert json.loads(out[1]) == {"records": str(kept), "written": 2}
    assert [r["study"] for r in records.read_runs(kept)] == ["branin/1-level/random/seed-0", "branin/1-level/random/seed-1"]
    assert main([*argv[:7], "--seeds", "0-2", "--no-progress"]) == 0  # resumes: one new run
    assert '"ran": 1, "skipped": 2' in capsys.readouterr().out

    intro, appendix = tmp_path / "intro.md", tmp_path / "appendix.md"
    intro.write_text("What the figures are.\n")
    appendix.write_text("## Context\n\nQuoted figures.\n")
    assert main(["report", "--storage", sqlite_url, "--out", str(tmp_path / "r"), "--intro", str(intro),
                 "--appendix", str(appendix)]) == 0
    text = (tmp_path / "r" / "README.md").read_text()
    assert "```\n\nWhat the figures are.\n\nAt 0.25 / 0.5 budget" in text
    assert text.endswith("## Context\n\nQuoted figures.\n")

    # Bad requests: one line naming the option, exit code 2.
    monkeypatch.delenv("MFKD_POOL", raising=False)
    for bad, word in ((["--problems", "branin", "--protocol", "mf"], "--protocol"),
                      (["--problems", "mf3"], "--pool"), (["--protocol", "mf3"], "--pool"),
                      (["--problems", "rosenbrock"], "rosenbrock"), (["--problems", "branin", "--n-jobs", "0"], "--n-jobs")):
        assert main(["benchmark", "--storage", sqlite_url, "--no-progress", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and word in err, err
