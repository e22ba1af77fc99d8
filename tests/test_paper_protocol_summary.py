"""benchmarks/paper_protocol_summary.py: seed-paired comparisons of report folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark
from scipy.stats import wilcoxon


@pytest.fixture(scope="module")
def summary_mod():
    return load_benchmark("paper_protocol_summary")


def _report_folder(path: Path, finals: dict[str, list[float]], shuffle_seed: int) -> Path:
    """A folder shaped like `optuna-mfkd report`'s output: runs.csv (rows shuffled) and summary.csv."""
    path.mkdir()
    rows = [{"protocol": "nb201", "dataset": "cifar10", "method": m, "seed": s, "final_test_acc": v}
            for m, vals in finals.items() for s, v in enumerate(vals)]
    runs = pd.DataFrame(rows).sample(frac=1.0, random_state=shuffle_seed)
    runs.to_csv(path / "runs.csv", index=False)
    pd.DataFrame({"method": list(finals), "mean_at_0.5_budget": [np.mean(v) - 1 for v in finals.values()]}).to_csv(
        path / "summary.csv", index=False)
    return path


def test_paired_differences_by_seed(summary_mod, tmp_path):
    rng = np.random.default_rng(3)
    base = rng.normal(94.0, 0.4, 12).round(2)
    nst = base + np.array([0.1, 0.0, 0.0, 0.2, -0.1, 0.3, 0.0, 0.1, 0.2, -0.2, 0.1, 0.0])
    a = _report_folder(tmp_path / "a", {"mfkd-ce": list(base), "mfkd-nst": list(nst), "random": list(base - 0.5)}, 0)
    b = _report_folder(tmp_path / "b", {"mfkd-nst": list(nst + 0.05)}, 1)
    out = tmp_path / "summary.md"
    summary_mod.main(["--setting", f"n1=30:{a}", "--setting", f"n1=100:{b}",
                      "--pair", "mfkd-nst:mfkd-ce", "n1=30/mfkd-nst:n1=100/mfkd-nst", "--out", str(out)])
    text = out.read_text()
    d = np.round(nst - base, 9)  # independent of the shuffled row order; exact ties
    p = wilcoxon(d[d != 0]).pvalue
    assert (f"| n1=30/`mfkd-nst` | n1=30/`mfkd-ce` | 12 | {d.mean():+.3f} |" in text
            and f"| 6 / 4 / 2 | {p:.2g} |" in text)
    # Only settings with both methods: n1=100 has no mfkd-ce, so no row for it.
    assert "n1=100/`mfkd-nst` | n1=100/`mfkd-ce`" not in text
    # Across settings: every seed is 0.05 behind; the exact Wilcoxon p of 12 equal signs is 2 / 2**12.
    assert "| n1=30/`mfkd-nst` | n1=100/`mfkd-nst` | 12 | -0.050 |" in text
    p_cross = 2 / 2**12
    # Holm over the table's two rows: the smaller p times 2, the larger max(itself, that).
    assert f"| 0 / 0 / 12 | {p_cross:.2g} | {2 * p_cross:.2g} |" in text
    assert f"| 6 / 4 / 2 | {p:.2g} | {max(p, 2 * p_cross):.2g} |" in text
    # The method table: mean +- std (n) [mean at half budget], method order of the harness.
    assert f"| `mfkd-nst` | {nst.mean():.2f} +- {nst.std(ddof=1):.2f} (12) [{nst.mean() - 1:.2f}] |" in text
    assert text.index("`random`") < text.index("`mfkd-nst`") < text.index("`mfkd-ce`")
    assert "| `random` | " in text and "| — |" in text  # random has no runs in n1=100


def test_bad_input_is_named(summary_mod, tmp_path, capsys):
    a = _report_folder(tmp_path / "a", {"mfkd-ce": [1.0, 2.0], "mfkd-nst": [1.5, 2.5]}, 0)
    out = tmp_path / "s.md"
    for argv, needle in [
        (["--setting", "n1=30"], "NAME:FOLDER"),
        (["--setting", f"n1=30:{tmp_path / 'missing'}"], "runs.csv not found"),
        (["--setting", f"n1=30:{a}", "--pair", "mfkd-nst"], "expected A:B"),
        (["--setting", f"n1=30:{a}", "--pair", "n1=60/mfkd-nst:n1=30/mfkd-ce"], "unknown setting 'n1=60'"),
    ]:
        with pytest.raises(SystemExit):
            summary_mod.main([*argv, "--out", str(out)])
        assert needle in capsys.readouterr().err
    assert not out.exists()
