"""The MFKDSampler of a search's levels (a sampler factory): built one way by the command line and the harness.

A search names its fidelity levels cheapest first. The sampler draws ``n_warmup_high``
random trials at the top level and ``n_warmup_low`` at each cheaper level before its GP
proposes cells (the paper's n2 and n1). ``optuna-mfkd search`` (:mod:`optuna_mfkd.cli.search`)
and the benchmark methods (:mod:`optuna_mfkd.bench.methods`) both call :func:`mfkd_sampler`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna_mfkd.sampler import MFKDSampler


def warmup_per_level(levels: Sequence[str], n_warmup_high: int, n_warmup_low: int | None = None) -> dict[str, int]:
    """Level name -> random warm-up trials: ``n_warmup_high`` at the last (top) level,
    ``n_warmup_low`` at every cheaper one.

    Raises:
        ValueError: no level, or several levels and no ``n_warmup_low``.
    """
    names = list(levels)
    if not names:
        raise ValueError("a search needs at least one fidelity level.")
    if len(names) > 1 and n_warmup_low is None:
        raise ValueError(f"levels {names}: the cheaper levels need n_warmup_low.")
    return {**{name: int(n_warmup_low or 0) for name in names[:-1]}, names[-1]: n_warmup_high}


def mfkd_sampler(
    levels: Sequence[str] | Mapping[str, Mapping[str, Any]],
    n_warmup_high: int | None = None,
    n_warmup_low: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> MFKDSampler:
    """An :class:`~optuna_mfkd.sampler.MFKDSampler` over ``levels`` (cheapest first; names,
    or names -> settings recorded on each trial) with :func:`warmup_per_level`'s warm-ups
    (``n_warmup_high=None``: the sampler's default warm-up).

    ``options`` go to the sampler unchanged (``n_candidates``, ``beta``, ``acquisition``,
    ``point_key``, ...); what is not given keeps the sampler's default.
    """
    from optuna_mfkd.sampler import MFKDSampler  # imported here: it loads torch and the GP stack

    return MFKDSampler(
        fidelities=levels,
        n_warmup=None if n_warmup_high is None else warmup_per_level(list(levels), n_warmup_high, n_warmup_low),
        seed=seed,
        **options,
    )
