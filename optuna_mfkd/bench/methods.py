"""The search methods of the NB201 benchmark, all run through Optuna.

Each method is a name and a factory ``(seed, context) -> (sampler, pruner, mode)``:

| name | sampler | pruner | evaluates |
| --- | --- | --- | --- |
| ``random`` | RandomSampler | - | single level |
| ``tpe`` | TPESampler (Optuna defaults) | - | single level |
| ``gp`` | GPSampler (Optuna defaults) | - | single level |
| ``re`` | regularised evolution, population 10, sample 3 | - | single level |
| ``mfkd-gpr`` | MFKDSampler, top level only (the paper's "GPR" ablation) | - | single level |
| ``bohb`` | TPESampler ("BOHB-style", not BOHB) | HyperbandPruner | two rungs |
| ``hyperband`` | RandomSampler | HyperbandPruner | two rungs |
| ``mfkd`` | MFKDSampler, two levels (AR1 co-kriging) | - | both levels |

Peers (other libraries' multi-fidelity optimisers, optional extra ``peers``; see
:mod:`optuna_mfkd.bench.peers`): ``dehb``, ``syne-bohb``, ``syne-asha``, ``smac-mf``,
``smac-hb``. They need a problem whose context gives its search space and level resources.

``mfkd-nst`` / ``mfkd-kd`` / ``mfkd-ce`` (the paper protocol) are ``mfkd`` with a cached
low-fidelity score (NST distillation / Hinton KD / plain cross-entropy) as the low level.

The sampler suite (:data:`SUITE_METHODS`, registry ``"suite"``) runs the same names on every
problem: ``mfkd`` (MFKDSampler over the problem's levels with the sampler's defaults),
``mfkd-paper`` (the paper's settings), ``gp``, ``tpe``, ``random``.

Hyperband on two rungs uses ``HyperbandPruner(min_resource=12, max_resource=200,
reduction_factor=3)``; the objective reports at step 12 only (see
:mod:`optuna_mfkd.nasbench201.tabular`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from optuna_mfkd.bench.evolution import RegularizedEvolutionSampler
from optuna_mfkd.bench.peers import EXTRA_HINT, PEERS
from optuna_mfkd.defaults import N_WARMUP_HIGH, N_WARMUP_LOW, PAPER_SAMPLER_SETTINGS
from optuna_mfkd.levels import mfkd_sampler

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
    #: cells), used by the suite's ``mfkd`` (sampler defaults).
    point_key: Callable[[dict[str, Any]], Any] | None = None
    #: Every level of the problem, cheapest first (empty: ``low_level``/``high_level``).
    levels: tuple[str, ...] = ()
    search_space: dict[str, BaseDistribution] | None = None
    level_resources: dict[str, float] | None = None


Built = tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner | None, str]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    mode: str
    build: Callable[[int, MethodContext], Built]
    needs_low_level: bool = False
    #: Top-level modules of optional packages the method needs (see :func:`check_installed`).
    requires: tuple[str, ...] = ()


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


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("random", "RandomSampler", SINGLE, lambda s, c: (optuna.samplers.RandomSampler(seed=s), None, SINGLE)),
        Method("tpe", "TPESampler (Optuna defaults)", SINGLE, lambda s, c: (optuna.samplers.TPESampler(seed=s), None, SINGLE)),
        Method("gp", "GPSampler (Optuna defaults)", SINGLE, lambda s, c: (optuna.samplers.GPSampler(seed=s), None, SINGLE)),
        Method(
            "re",
            "regularised evolution (population 10, sample 3)",
            SINGLE,
            lambda s, c: (RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=s), None, SINGLE),
        ),
        Method("mfkd-gpr", "MFKDSampler, top level only (GP-UCB)", SINGLE, _mfkd_single),
        Method(
            "bohb",
            "TPESampler + HyperbandPruner (BOHB-style)",
            TWO_RUNG,
            lambda s, c: (optuna.samplers.TPESampler(seed=s), _hyperband(), TWO_RUNG),
        ),
        Method(
            "hyperband",
            "RandomSampler + HyperbandPruner",
            TWO_RUNG,
            lambda s, c: (optuna.samplers.RandomSampler(seed=s), _hyperband(), TWO_RUNG),
        ),
        Method("mfkd", "MFKDSampler, two levels (AR1 co-kriging)", MULTI, _mfkd_multi, needs_low_level=True),
        Method("mfkd-nst", "MFKDSampler, NST-distilled low fidelity (MF-KD)", MULTI, _mfkd_multi, needs_low_level=True),
        Method("mfkd-ce", "MFKDSampler, cross-entropy low fidelity (no KD)", MULTI, _mfkd_multi, needs_low_level=True),
        Method("mfkd-kd", "MFKDSampler, Hinton-KD low fidelity", MULTI, _mfkd_multi, needs_low_level=True),
        Method("mfkd-nst-ca", "MFKDSampler defaults (cost-aware), NST low fidelity on the pool's cells", MULTI,
               _mfkd_defaults, needs_low_level=True),
        Method("mfkd-ce-ca", "MFKDSampler defaults (cost-aware), cross-entropy low fidelity on the pool's cells",
               MULTI, _mfkd_defaults, needs_low_level=True),
        Method("mfkd-kd-ca", "MFKDSampler defaults (cost-aware), Hinton-KD low fidelity on the pool's cells",
               MULTI, _mfkd_defaults, needs_low_level=True),
        Method("mfkd-gpr-ca", "MFKDSampler defaults, top level only", MULTI, _mfkd_defaults),
    ]
}
def _peer_method(peer: Any) -> Method:
    def build(seed: int, ctx: MethodContext) -> Built:
        return peer.build_sampler(seed, ctx), None, MULTI

    return Method(peer.name, peer.description, MULTI, build, needs_low_level=True, requires=peer.requires)


METHODS.update({p.name: _peer_method(p) for p in PEERS.values()})

#: Methods whose results the others are compared against, in order of preference.
REFERENCE_METHODS: tuple[str, ...] = ("mfkd-nst", "mfkd", "mfkd-nst-ca", "mfkd-ce", "mfkd-kd", "mfkd-gpr")
#: The reference where none of :data:`REFERENCE_METHODS` ran on a problem (e.g. a storage of
#: the suite before its ``mfkd`` runs are added): the suite's MFKDSampler with the paper's settings.
FALLBACK_REFERENCE_METHODS: tuple[str, ...] = ("mfkd-paper",)


def reference_methods(present: Collection[str]) -> list[str]:
    """The methods among ``present`` the others are compared with: those of
    :data:`REFERENCE_METHODS`, else those of :data:`FALLBACK_REFERENCE_METHODS`."""
    refs = [m for m in REFERENCE_METHODS if m in present]
    return refs or [m for m in FALLBACK_REFERENCE_METHODS if m in present]


def check_installed(method: Method) -> None:
    """Raise :class:`ValueError` naming the extra to install if ``method`` lacks a package."""
    import importlib.util

    for module in method.requires:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"method {method.name!r} needs the package {module!r}: {EXTRA_HINT}")


def get_method(name: str, registry: str = "default") -> Method:
    """The method ``name`` of ``registry`` (:data:`REGISTRIES`: ``"default"`` or ``"suite"``)."""
    if registry not in REGISTRIES:
        raise ValueError(f"unknown method registry {registry!r}; known: {list(REGISTRIES)}.")
    methods = REGISTRIES[registry]
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; known methods: {list(methods)}.")
    return methods[name]


# The sampler suite (benchmarks/sampler_suite.py): the same method names on every problem.


def _mfkd_paper(seed: int, ctx: MethodContext) -> Built:
    levels = _levels(ctx)
    n_high = ctx.n_warmup_single if len(levels) == 1 else ctx.n_warmup_high
    sampler = mfkd_sampler(levels, n_warmup_high=n_high, n_warmup_low=ctx.n_warmup_low, seed=seed,
                           **PAPER_SAMPLER_SETTINGS, **ctx.sampler_options)
    return sampler, None, MULTI


#: Methods of the sampler suite; there, names found here take precedence over :data:`METHODS`.
#:
#: - ``mfkd``: ``MFKDSampler(fidelities=<the problem's levels>, seed=s)`` and nothing else;
#: - ``mfkd-paper``: the paper's settings: warm-up of ``n_warmup_single`` (20) random trials
#:   on one level, or ``n_warmup_low`` (100) on each cheaper level and ``n_warmup_high`` (20)
#:   on the top one, then UCB (beta = 1, on the variance) over 5,000 random candidates at the
#:   top level (``strategy="paper"`` and ``acquisition="ucb"`` where the sampler has them);
#: - ``gp``, ``tpe``, ``random``: Optuna's samplers with their defaults.
SUITE_METHODS: dict[str, Method] = {
    "mfkd": Method("mfkd", "MFKDSampler, the problem's levels, sampler defaults", MULTI, _mfkd_defaults),
    "mfkd-paper": Method("mfkd-paper", "MFKDSampler, the paper's settings (UCB, beta 1, 5,000 candidates)",
                         MULTI, _mfkd_paper),
    **{name: METHODS[name] for name in ("gp", "tpe", "random")},
}

#: Method registries by name (problems name theirs, so they pickle without the factories).
REGISTRIES: dict[str, dict[str, Method]] = {"default": METHODS, "suite": {**METHODS, **SUITE_METHODS}}
