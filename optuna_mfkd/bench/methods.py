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

Hyperband on two rungs uses ``HyperbandPruner(min_resource=12, max_resource=200,
reduction_factor=3)``; the objective reports at step 12 only (see
:mod:`optuna_mfkd.nasbench201.objectives`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from optuna_mfkd.bench.evolution import RegularizedEvolutionSampler
from optuna_mfkd.bench.peers import EXTRA_HINT, PEERS

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
    n_warmup_low: int = 100
    n_warmup_high: int = 20
    n_warmup_single: int = 20
    sampler_options: dict[str, Any] = field(default_factory=dict)
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


def _mfkd_sampler(**kwargs: Any) -> optuna.samplers.BaseSampler:
    from optuna_mfkd import MFKDSampler  # imported lazily: the GP stack is heavy

    return MFKDSampler(**kwargs)


def _hyperband() -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=12, max_resource=200, reduction_factor=3)


def _mfkd_single(seed: int, ctx: MethodContext) -> Built:
    level = ctx.single_level
    sampler = _mfkd_sampler(
        fidelities=[level], n_warmup={level: ctx.n_warmup_single}, seed=seed, **ctx.sampler_options
    )
    return sampler, None, SINGLE


def _mfkd_multi(seed: int, ctx: MethodContext) -> Built:
    if ctx.low_level is None or ctx.high_level is None:
        raise ValueError("the two-level MFKDSampler needs a protocol with a low and a high level.")
    sampler = _mfkd_sampler(
        fidelities=[ctx.low_level, ctx.high_level],
        n_warmup={ctx.low_level: ctx.n_warmup_low, ctx.high_level: ctx.n_warmup_high},
        seed=seed,
        **ctx.sampler_options,
    )
    return sampler, None, MULTI


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
    ]
}
METHODS.update(
    {p.name: Method(p.name, p.description, MULTI, p.build, needs_low_level=True, requires=p.requires) for p in PEERS.values()}
)

#: Methods whose results the others are compared against, in order of preference.
REFERENCE_METHODS: tuple[str, ...] = ("mfkd-nst", "mfkd", "mfkd-ce", "mfkd-kd", "mfkd-gpr")


def check_installed(method: Method) -> None:
    """Raise :class:`ValueError` naming the extra to install if ``method`` lacks a package."""
    import importlib.util

    for module in method.requires:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"method {method.name!r} needs the package {module!r}: {EXTRA_HINT}")


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {list(METHODS)}.")
    return METHODS[name]
