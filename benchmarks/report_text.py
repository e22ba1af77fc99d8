"""What the repository's benchmark reports say besides their tables.

The Markdown files of ``benchmarks/report-text/``: what the figure of a run is on the
NAS-Bench-201 problems (``nb201-intro.md``) and on BoTorch's synthetic functions
(``synthetic-intro.md``), and the published NAS-Bench-201 figures quoted as context
(``published-figures.md``). :func:`for_metrics` picks them for the metrics of a report's
runs; ``optuna-mfkd report --intro ... --appendix ...`` takes the same files::

    optuna-mfkd report --storage sqlite:///bench.db --out report \\
        --intro benchmarks/report-text/nb201-intro.md --appendix benchmarks/report-text/published-figures.md
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric

#: The folder of the Markdown files.
FOLDER = Path(__file__).resolve().parent / "report-text"
NB201_INTRO = FOLDER / "nb201-intro.md"
SYNTHETIC_INTRO = FOLDER / "synthetic-intro.md"
PUBLISHED_FIGURES = FOLDER / "published-figures.md"


def lines(path: Path) -> list[str]:
    """A Markdown file's lines and a blank line after them (a paragraph of the report)."""
    return [*path.read_text().rstrip("\n").splitlines(), ""]


def for_metrics(metrics: Iterable[Metric]) -> dict[str, list[str]]:
    """``intro`` and ``appendix`` of :func:`optuna_mfkd.bench.report.write_report` for a report
    whose runs have ``metrics``: the NAS-Bench-201 introduction and published figures where a
    run reports NB201's test accuracy, the synthetic introduction where one reports another
    metric (the log10 simple regret)."""
    metrics = set(metrics)
    intro: list[str] = []
    appendix: list[str] = []
    if NB201_TEST_ACCURACY in metrics:
        intro += lines(NB201_INTRO)
        appendix += lines(PUBLISHED_FIGURES)
    if metrics - {NB201_TEST_ACCURACY}:
        intro += lines(SYNTHETIC_INTRO)
    return {"intro": intro, "appendix": appendix}


def for_storage(storage: object, problems: Iterable[str] | None = None) -> dict[str, list[str]]:
    """:func:`for_metrics` of the finished runs in ``storage`` (of ``problems``, ids or names)."""
    from optuna_mfkd.bench.results import load_runs

    return for_metrics(r.metric for r in load_runs(storage, list(problems) if problems else None))  # type: ignore[arg-type]
