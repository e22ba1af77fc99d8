"""The search methods of the benchmarks, all run through Optuna: one registry, one meaning
per name.

Each method is a name and a factory ``(seed, context) -> (sampler, pruner, mode)``:

| name | sampler | pruner | evaluates |
| --- | --- | --- | --- |
| ``random`` | RandomSampler | - | single level |
| ``tpe`` | TPESampler (Optuna defaults) | - | single level |
| ``gp`` | GPSampler (Optuna defaults) | - | single level |
| ``re`` | regularised evolution, population 10, sample 3 | - | single level |
| ``mfkd-gpr`` | MFKDSampler, top level only, the paper's settings (the paper's "GPR" ablation) | - | single level |
| ``bohb`` | TPESampler ("BOHB-style", not BOHB) | HyperbandPruner | two rungs |
| ``hyperband`` | RandomSampler | HyperbandPruner | two rungs |
| ``mfkd`` | MFKDSampler over the problem's levels with the sampler's defaults | - | every level |
| ``mfkd-paper`` | MFKDSampler over the problem's levels with the paper's settings | - | every level |

``mfkd-paper`` is the paper's Algorithm 1: a random warm-up of ``n_warmup_single`` (20)
trials on one level, or ``n_warmup_low`` (100) on each cheaper level and ``n_warmup_high``
(20) on the top one, then UCB (beta = 1, on the variance) over 5,000 random candidates at the
top level. Studies stored before the two names were told apart hold the paper's two-level
sampler under ``mfkd`` too: :data:`optuna_mfkd.bench.runs.LEGACY_METHODS` reads them as
``mfkd-paper``.

``mfkd-nst`` / ``mfkd-kd`` / ``mfkd-ce`` (the paper protocol) are ``mfkd-paper`` on two
levels whose low level is a cached (or live) low-fidelity score: NST distillation / Hinton KD
/ plain cross-entropy (:attr:`Method.low_loss`). ``mfkd-nst-ca`` / ``mfkd-ce-ca`` /
``mfkd-kd-ca`` are ``mfkd`` over such a score, queried on the pool's cells only
(:attr:`Method.pool_cells_only`); ``mfkd-gpr-ca`` is ``mfkd`` on the top level alone
(:attr:`Method.top_level_only`); ``mfkd-mes`` and ``mfkd-ucb`` are ``mfkd`` with the level rule
named: ``strategy="mf-mes"`` (the level of most information on the top level's maximum per unit
cost, the default) and ``strategy="cost-aware"`` (MF-GP-UCB's, the default before it), so runs
of either rule keep their name whatever the default is.

Peers (other libraries' multi-fidelity optimisers, optional extra ``peers``; see
:mod:`optuna_mfkd.bench.peers`): ``dehb``, ``syne-bohb``, ``syne-asha``, ``smac-mf``,
``smac-hb``. They need a problem whose context gives its search space and level resources.

A report compares every method with the MFKDSampler variants present
(:func:`reference_methods`, from :attr:`Method.reference_rank` and
:attr:`Method.reference_unless`).

Hyperband on two rungs uses ``HyperbandPruner(min_resource=12, max_resource=200,
reduction_factor=3)``; the objective reports at step 12 only (see
:mod:`optuna_mfkd.nasbench201.tabular`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from optuna_mfkd.bench.evolution import RegularizedEvolutionSampler
from optuna_mfkd.bench.peers import EXTRA_HINT, PEERS
from optuna_mfkd.defaults import N_WARMUP_HIGH, N_WARMUP_LOW, PAPER_SAMPLER_SETTINGS
from optuna_mfkd.sampler_factory import mfkd_sampler

#: Modes of evaluation: a single level, the two-rung Hyperband mode, or sampler-chosen levels.
SINGLE, TWO_RUNG, MULTI = "single", "two-rung", "multi"


@dataclass(frozen=True)
class MethodContext:
    """What a method needs to know about the protocol it runs in.

    ``search_space`` (the problem's Optuna distributions) and ``level_resources`` (level
    name -> resource, e.g. epochs) are what the peers need to build their own spaces and
    budgets; our samplers learn the space from the objective.
    """

    single_level: str
    low_level: str | None = None
    high_level: str | None = None
    n_warmup_low: int = N_WARMUP_LOW
    n_warmup_high: int = N_WARMUP_HIGH
    n_warmup_single: int = N_WARMUP_HIGH
    sampler_options: dict[str, Any] = field(default_factory=dict)
    #: The problem's notion of equal points for MFKDSampler's ``point_key`` (NB201: isomorphic
    #: cells), used by ``mfkd`` (sampler defaults).
    point_key: Callable[[dict[str, Any]], Any] | None = None
    #: Every level of the problem, cheapest first (empty: ``low_level``/``high_level``).
    levels: tuple[str, ...] = ()
    search_space: dict[str, BaseDistribution] | None = None
    level_resources: dict[str, float] | None = None


Built = tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner | None, str]


@dataclass(frozen=True)
class Method:
    """One search method: its name, what it is, how it evaluates, how it is built, and what a
    protocol must give it."""

    name: str
    description: str
    mode: str
    build: Callable[[int, MethodContext], Built]
    needs_low_level: bool = False
    #: Top-level modules of optional packages the method needs (see :func:`check_installed`).
    requires: tuple[str, ...] = ()
    #: The loss (``"nst"``, ``"ce"``, ``"kd"``) whose low-fidelity score, read from a pool or
    #: trained live, is the method's low level; ``None``: the protocol's own levels.
    low_loss: str | None = None
    #: The low level is queried on the pool's cells only (``level_points``) and no warm-up is
    #: enqueued (the sampler draws its own); it needs a pool. Otherwise a method with a
    #: :attr:`low_loss` gets the pool's warm-up cells enqueued (:attr:`pool_warmup`).
    pool_cells_only: bool = False
    #: The method searches the protocol's top level alone (its low level dropped).
    top_level_only: bool = False
    #: Rank of the method as a reference of reports, lower first (``None``: never one).
    reference_rank: int | None = None
    #: A reference only where this other method did not run (``mfkd-paper`` for ``mfkd``).
    reference_unless: str | None = None

    @property
    def pool_warmup(self) -> bool:
        """Whether a pool's low-fidelity warm-up cells are enqueued before a run."""
        return self.low_loss is not None and not self.pool_cells_only


def _hyperband() -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=12, max_resource=200, reduction_factor=3)


def _mfkd_single(seed: int, ctx: MethodContext) -> Built:
    level = ctx.single_level
    sampler = mfkd_sampler(
        [level], n_warmup_high=ctx.n_warmup_single, seed=seed,
        **{**PAPER_SAMPLER_SETTINGS, **ctx.sampler_options},
    )
    return sampler, None, SINGLE


def _mfkd_multi(seed: int, ctx: MethodContext) -> Built:
    if ctx.low_level is None or ctx.high_level is None:
        raise ValueError("the two-level MFKDSampler needs a protocol with a low and a high level.")
    sampler = mfkd_sampler(
        [ctx.low_level, ctx.high_level],
        n_warmup_high=ctx.n_warmup_high,
        n_warmup_low=ctx.n_warmup_low,
        seed=seed,
        **{**PAPER_SAMPLER_SETTINGS, **ctx.sampler_options},
    )
    return sampler, None, MULTI


def _levels(ctx: MethodContext) -> list[str]:
    if ctx.levels:
        return list(ctx.levels)
    return [lv for lv in (ctx.low_level, ctx.high_level) if lv] or [ctx.single_level]


def _mfkd_defaults(seed: int, ctx: MethodContext) -> Built:
    # Only the levels, the seed, the problem's notion of equal points (NB201: isomorphic
    # cells, as the NB201 helpers and the CLI pass it) and what the problem allows at each
    # level (``level_points`` of a pool): the sampler's defaults are measured.
    options = {"point_key": ctx.point_key} if ctx.point_key is not None else {}
    return mfkd_sampler(_levels(ctx), seed=seed, **options, **ctx.sampler_options), None, MULTI


def _mfkd_strategy(strategy: str) -> Callable[[int, MethodContext], Built]:
    # The defaults with the level rule ``strategy`` (whichever rule is the default).
    def build(seed: int, ctx: MethodContext) -> Built:
        return _mfkd_defaults(seed, replace(ctx, sampler_options={**ctx.sampler_options, "strategy": strategy}))

    return build


def _mfkd_paper(seed: int, ctx: MethodContext) -> Built:
    levels = _levels(ctx)
    n_high = ctx.n_warmup_single if len(levels) == 1 else ctx.n_warmup_high
    sampler = mfkd_sampler(levels, n_warmup_high=n_high, n_warmup_low=ctx.n_warmup_low, seed=seed,
                           **PAPER_SAMPLER_SETTINGS, **ctx.sampler_options)
    return sampler, None, MULTI


def _optuna(name: str, description: str, sampler: Callable[[int], optuna.samplers.BaseSampler]) -> Method:
    return Method(name, description, SINGLE, lambda s, c: (sampler(s), None, SINGLE))


def _kd(name: str, description: str, loss: str, rank: int | None) -> Method:
    return Method(name, description, MULTI, _mfkd_multi, needs_low_level=True, low_loss=loss, reference_rank=rank)


def _cost_aware(name: str, description: str, loss: str, rank: int | None = None) -> Method:
    return Method(name, description, MULTI, _mfkd_defaults, needs_low_level=True, low_loss=loss,
                  pool_cells_only=True, reference_rank=rank)


def _peer_method(peer: Any) -> Method:
    def build(seed: int, ctx: MethodContext) -> Built:
        return peer.build_sampler(seed, ctx), None, MULTI

    return Method(peer.name, peer.description, MULTI, build, needs_low_level=True, requires=peer.requires)


#: Every method by name, in the order of report tables. Reference ranks: ``mfkd-nst``,
#: ``mfkd``, ``mfkd-nst-ca``, ``mfkd-ce``, ``mfkd-kd``, ``mfkd-gpr``; ``mfkd-paper`` where
#: ``mfkd`` did not run.
METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        _optuna("random", "RandomSampler", lambda s: optuna.samplers.RandomSampler(seed=s)),
        _optuna("tpe", "TPESampler (Optuna defaults)", lambda s: optuna.samplers.TPESampler(seed=s)),
        _optuna("gp", "GPSampler (Optuna defaults)", lambda s: optuna.samplers.GPSampler(seed=s)),
        _optuna("re", "regularised evolution (population 10, sample 3)",
                lambda s: RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=s)),
        Method("mfkd-gpr", "MFKDSampler, top level only (GP-UCB)", SINGLE, _mfkd_single, reference_rank=5),
        Method("bohb", "TPESampler + HyperbandPruner (BOHB-style)", TWO_RUNG,
               lambda s, c: (optuna.samplers.TPESampler(seed=s), _hyperband(), TWO_RUNG)),
        Method("hyperband", "RandomSampler + HyperbandPruner", TWO_RUNG,
               lambda s, c: (optuna.samplers.RandomSampler(seed=s), _hyperband(), TWO_RUNG)),
        Method("mfkd", "MFKDSampler, the problem's levels, sampler defaults", MULTI, _mfkd_defaults,
               reference_rank=1),
        _kd("mfkd-nst", "MFKDSampler, NST-distilled low fidelity (MF-KD)", "nst", 0),
        _kd("mfkd-ce", "MFKDSampler, cross-entropy low fidelity (no KD)", "ce", 3),
        _kd("mfkd-kd", "MFKDSampler, Hinton-KD low fidelity", "kd", 4),
        _cost_aware("mfkd-nst-ca", "MFKDSampler defaults (cost-aware), NST low fidelity on the pool's cells",
                    "nst", 2),
        _cost_aware("mfkd-ce-ca", "MFKDSampler defaults (cost-aware), cross-entropy low fidelity on the pool's cells",
                    "ce"),
        _cost_aware("mfkd-kd-ca", "MFKDSampler defaults (cost-aware), Hinton-KD low fidelity on the pool's cells",
                    "kd"),
        Method("mfkd-gpr-ca", "MFKDSampler defaults, top level only", MULTI, _mfkd_defaults, top_level_only=True),
        Method("mfkd-mes", "MFKDSampler defaults, level chosen by MF-MES per unit cost (strategy='mf-mes')",
               MULTI, _mfkd_strategy("mf-mes"), reference_rank=2),
        Method("mfkd-ucb", "MFKDSampler defaults, level chosen by MF-GP-UCB's rule (strategy='cost-aware')",
               MULTI, _mfkd_strategy("cost-aware")),
        *(_peer_method(p) for p in PEERS.values()),
        Method("mfkd-paper", "MFKDSampler, the paper's settings (UCB, beta 1, 5,000 candidates)", MULTI,
               _mfkd_paper, reference_rank=1, reference_unless="mfkd"),
    ]
}


def reference_methods(present: Collection[str], references: Sequence[str] | None = None) -> list[str]:
    """The methods among ``present`` the others are compared with.

    ``references``: those of them that are present, in this order. ``None``: the methods
    with a :attr:`Method.reference_rank`, by rank, leaving out one whose
    :attr:`Method.reference_unless` is present (``mfkd-paper`` where ``mfkd`` ran).
    """
    if references is not None:
        return [m for m in references if m in present]
    ranked = sorted((m for m in METHODS.values() if m.reference_rank is not None), key=lambda m: m.reference_rank)
    return [m.name for m in ranked if m.name in present and m.reference_unless not in present]


def stand_in_references(refs: Sequence[str]) -> bool:
    """Whether every method of ``refs`` stands in for another that did not run
    (``mfkd-paper`` for ``mfkd``)."""
    return bool(refs) and all(m in METHODS and METHODS[m].reference_unless for m in refs)


def principal_references() -> list[str]:
    """The methods that are references wherever they run (no stand-ins), by rank."""
    ranked = sorted((m for m in METHODS.values() if m.reference_rank is not None and not m.reference_unless),
                    key=lambda m: m.reference_rank)
    return [m.name for m in ranked]


def check_installed(method: Method) -> None:
    """Raise :class:`ValueError` naming the extra to install if ``method`` lacks a package."""
    import importlib.util

    for module in method.requires:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"method {method.name!r} needs the package {module!r}: {EXTRA_HINT}")


def get_method(name: str) -> Method:
    """The method ``name`` (:class:`ValueError` for an unknown one)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {list(METHODS)}.")
    return METHODS[name]
