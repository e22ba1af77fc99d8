"""Benchmark protocols on NAS-Bench-201: what is searched, what it costs, what is reported.

- ``nb201`` (NB201 paper / MF-KD paper Table 2): maximise the 12-epoch validation accuracy;
  each query costs 12 x the cell's training seconds per epoch; budget 12,000 simulated
  seconds on CIFAR-10 / CIFAR-100 and 36,000 on ImageNet16-120 (its epochs cost about 3x as
  much, so about as many queries fit). Single-fidelity methods, plus the paper's MF-KD
  methods (``mfkd-nst``, ``mfkd-ce``) when a low-fidelity pool is given: their low level is
  a cached score of cells drawn from the pool (a uniform sample of the space), the high
  level is the 12-epoch validation accuracy. With a :class:`LiveLowFidelity` instead of a
  pool (protocol ``nb201-live``), the low level is trained live (the paper's hybrid
  protocol at the scale its settings give) and the sampler draws its own random warm-up.
  Named explicitly, the cost-aware replays ``mfkd-nst-ca`` / ``mfkd-ce-ca`` / ``mfkd-kd-ca``
  (with a pool) and ``mfkd-gpr-ca`` (methods with
  :attr:`~optuna_mfkd.bench.methods.Method.pool_cells_only` /
  :attr:`~optuna_mfkd.bench.methods.Method.top_level_only`), and ``mfkd`` / ``mfkd-paper``.
- ``nb201-12k``: as ``nb201`` with 12,000 s on every dataset (the budget NB201's scripts
  use; only about 18 queries fit on ImageNet16-120).
- ``mf``: levels 12-epoch and 200-epoch validation accuracy; budget 50 x the median
  200-epoch cost of the space; single-fidelity methods evaluate 200-epoch values only,
  Hyperband methods use the two rungs, ``mfkd-paper`` (and ``mfkd``, named explicitly) both
  levels; the peers (:mod:`optuna_mfkd.bench.peers`, named explicitly) run their own brackets
  on the two levels.
- ``mf3`` (CIFAR-10, needs a pool): three levels, a pool's one-epoch score (NST by default;
  only the pool's cells have one), then ``mf``'s 12- and 200-epoch levels and budget;
  multi-level methods (``mfkd``, and ``mfkd-paper`` named explicitly) use all three levels
  (the cheapest on the pool's cells only), single-fidelity methods the 200-epoch level.

What a method needs from a protocol is data on the method
(:class:`~optuna_mfkd.bench.methods.Method`): its mode, the loss of its low level
(``low_loss``), whether that level is restricted to the pool's cells (``pool_cells_only``) or
dropped (``top_level_only``); the protocol never branches on a method's name.

Every protocol reports the 200-epoch test accuracy of the incumbent: the best trial at the
protocol's top level (ties: the earlier trial).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optuna_mfkd.bench.lowfi import LiveLowFidelity, LowFidelityPool
from optuna_mfkd.bench.methods import METHODS, MULTI, TWO_RUNG, Method, MethodContext, get_method
from optuna_mfkd.bench.peers import PEERS
from optuna_mfkd.bench.problems import NB201_TEST_ACCURACY, Metric, resolve_method
from optuna_mfkd.datasets import DATASETS, canonical_dataset
from optuna_mfkd.defaults import N_WARMUP_HIGH, N_WARMUP_LOW, NB201_BUDGET
from optuna_mfkd.fidelity import FIDELITY_ATTR, FIDELITY_LEVEL_ATTR
from optuna_mfkd.nasbench201.space import EDGE_PARAM_NAMES, OPS, Architecture, cell_key
from optuna_mfkd.nasbench201.table import NB201Table, load_table
from optuna_mfkd.nasbench201.tabular import ScoreLevel, TabularObjective

SINGLE_FIDELITY_METHODS = ("random", "tpe", "gp", "re", "mfkd-gpr")
#: MFKDSampler over the protocol's levels, with its defaults or the paper's settings; every
#: protocol runs them when named.
MFKD_METHODS = ("mfkd", "mfkd-paper")


def nb201_search_space() -> dict[str, BaseDistribution]:
    """The distributions :func:`~optuna_mfkd.nasbench201.space.suggest_architecture` suggests."""
    return {name: CategoricalDistribution(OPS) for name in EDGE_PARAM_NAMES}


@dataclass(frozen=True)
class Protocol:
    """One benchmark protocol (see the module docstring)."""

    name: str
    description: str
    levels: Mapping[str, int]
    single_level: str
    top_level: str
    budgets: Mapping[str, float] = field(default_factory=dict)
    budget_median_top_evals: float | None = None
    methods: tuple[str, ...] = SINGLE_FIDELITY_METHODS
    low_level: str | None = None
    n_warmup_low: int = N_WARMUP_LOW
    n_warmup_high: int = N_WARMUP_HIGH
    n_warmup_single: int = N_WARMUP_HIGH
    pool: LowFidelityPool | None = None
    live: LiveLowFidelity | None = None
    #: Methods a run may name that are not run by default (the peers: an optional extra).
    extra_methods: tuple[str, ...] = ()
    #: A pool loss whose score is an extra cheapest level of every multi-level method (``mf3``).
    pool_level: str | None = None

    def budget(self, table: NB201Table, dataset: str) -> float:
        """Simulated seconds a run may spend on ``dataset``."""
        ds = canonical_dataset(dataset)
        if self.budget_median_top_evals is not None:
            epochs = self.levels[self.top_level]
            per_epoch = table.column(ds, "seconds_per_epoch")
            return float(self.budget_median_top_evals * epochs * np.median(per_epoch))
        if ds not in self.budgets:
            raise ValueError(f"protocol {self.name!r} has no budget for dataset {ds!r}.")
        return float(self.budgets[ds])

    def check(self, method: str, dataset: str) -> Method:
        m = resolve_method(method, f"protocol {self.name!r}", self.methods + self.extra_methods)
        if m.pool_cells_only and self.pool is None:
            raise ValueError(f"method {method!r} needs a low-fidelity pool (protocol {self.name!r} has none).")
        if m.low_loss is not None:
            if self.pool is None and self.live is None:
                raise ValueError(
                    f"method {method!r} needs a low-fidelity pool or a live low fidelity (protocol {self.name!r} has neither)."
                )
            loss = m.low_loss
            if self.pool is not None and loss not in self.pool.scores:
                raise ValueError(
                    f"method {method!r} needs {loss!r} scores; the pool {self.pool.source!r} has {sorted(self.pool.scores)}."
                )
            if self.live is not None and loss not in self.live.time_ratios:
                raise ValueError(f"method {method!r}: no measured time ratio for loss {loss!r} in the live low fidelity.")
            low_dataset = self.pool.dataset if self.pool is not None else "cifar10"
            if canonical_dataset(dataset) != low_dataset:
                raise ValueError(f"the low fidelity is for {low_dataset}, not {dataset}.")
        if self.pool_level is not None:
            assert self.pool is not None
            if canonical_dataset(dataset) != self.pool.dataset:
                raise ValueError(
                    f"protocol {self.name!r}: the pool's scores are for {self.pool.dataset}, not {dataset}."
                )
        return m

    def context(self, method: str) -> MethodContext:
        m = get_method(method)
        low = self.low_level
        options: dict[str, Any] = {}
        if m.low_loss is not None:
            low = m.low_loss
        if m.pool_cells_only and self.pool is not None:
            options = self._pool_points(low)
        elif m.top_level_only:
            low = None
        levels = (low, self.top_level) if low is not None else (self.top_level,)
        if self.pool_level is not None and self._mode(method) == MULTI:
            assert self.pool is not None
            levels = (self.pool_level, *levels)
            options = self._pool_points(self.pool_level)
        return MethodContext(
            single_level=self.single_level,
            low_level=low,
            high_level=self.top_level,
            n_warmup_low=self.n_warmup_low,
            n_warmup_high=self.n_warmup_high,
            n_warmup_single=self.n_warmup_single,
            levels=levels,
            point_key=cell_key,
            search_space=nb201_search_space(),
            level_resources={name: float(epochs) for name, epochs in self.levels.items()},
            sampler_options=options,
        )

    def _pool_points(self, loss: str) -> dict[str, Any]:
        """Sampler options restricting level ``loss`` to the pool's cells scored with it."""
        assert self.pool is not None
        cells = sorted(self.pool.scores[loss])
        return {"level_points": {loss: [Architecture.from_index(i).params for i in cells]}}

    def _mode(self, method: str) -> str:
        return resolve_method(method, f"protocol {self.name!r}", self.methods + self.extra_methods).mode

    def objective(self, table: NB201Table, dataset: str, method: str) -> Any:
        """The objective of ``method``: table lookups, or the hybrid one with a live low level."""
        m = self.check(method, dataset)
        if self.live is not None and m.pool_warmup:
            return self.live.objective(table, canonical_dataset(dataset), m.low_loss, self.top_level)
        levels: dict[str, int | ScoreLevel] = dict(self.levels)
        promotion = None
        if m.mode == TWO_RUNG:
            if self.low_level is None:
                raise ValueError(f"method {method!r} needs two table levels; protocol {self.name!r} has one.")
            promotion = (self.low_level, self.top_level)
        loss = m.low_loss
        if self.pool_level is not None and m.mode == MULTI:
            loss = self.pool_level
        if loss is not None:
            assert self.pool is not None
            levels = {
                loss: ScoreLevel(
                    self.pool.scores[loss], self.pool.cost_epochs[loss], step=1, name=f"{loss}_score"
                ),
                **levels,
            }
        default = self.single_level if m.mode != MULTI else self.top_level
        return TabularObjective(table, dataset, levels, default_level=default, promotion=promotion)

    def warmup_queue(self, method: str, seed: int) -> list[tuple[dict[str, str], dict[str, object]]]:
        """Trials to enqueue before a run: the pool's low-fidelity warm-up cells.

        ``n_warmup_low`` cells drawn uniformly without replacement from the pool
        (``numpy.random.default_rng(seed)``), each with its fidelity set.
        """
        m = get_method(method)
        if not m.pool_warmup or self.pool is None:
            return []  # a live low level: the sampler draws its own random warm-up
        loss = m.low_loss
        cells = sorted(self.pool.scores[loss])
        if len(cells) < self.n_warmup_low:
            raise ValueError(f"the pool holds {len(cells)} {loss} scores, fewer than n_warmup_low={self.n_warmup_low}.")
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(cells), size=self.n_warmup_low, replace=False)
        return [
            (Architecture.from_index(cells[i]).params, {FIDELITY_ATTR: loss, FIDELITY_LEVEL_ATTR: 0})
            for i in picks
        ]


@dataclass(frozen=True)
class NB201Problem:
    """A protocol on one NB201 dataset: a :class:`~optuna_mfkd.bench.problems.Problem`.

    Studies are named ``<protocol>/<dataset>/<method>/seed-<k>``; the metric is the
    incumbent's 200-epoch test accuracy; costs are simulated seconds. The table is opened
    (and cached) in the process that runs the study.

    Attributes:
        protocol: the protocol.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16``.
        table_path: the NB201 table (default ``$NB201_TABLE``).
    """

    protocol: Protocol
    dataset: str
    table_path: str | None = None

    direction = "maximize"
    metric: ClassVar[Metric] = NB201_TEST_ACCURACY
    cost_unit = "simulated seconds"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", canonical_dataset(self.dataset))

    @property
    def name(self) -> str:
        return self.protocol.name

    @property
    def variant(self) -> str:
        return self.dataset

    @property
    def top_level(self) -> str:
        return self.protocol.top_level

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.protocol.methods)

    def table(self) -> NB201Table:
        return load_table(self.table_path)

    def method(self, name: str) -> Method:
        return self.protocol.check(name, self.dataset)

    def budget(self) -> float:
        return self.protocol.budget(self.table(), self.dataset)

    def context(self, method: str) -> MethodContext:
        return self.protocol.context(method)

    def objective(self, method: str) -> Any:
        return self.protocol.objective(self.table(), self.dataset, method)

    def warmup_queue(self, method: str, seed: int) -> list[tuple[dict[str, str], dict[str, object]]]:
        return self.protocol.warmup_queue(method, seed)

    def meta(self, method: str) -> dict[str, Any]:
        table = self.table()
        protocol = self.protocol
        meta: dict[str, Any] = {"table": table.source, "best_test_acc_in_space": table.best_test_acc(self.dataset)}
        m = get_method(method)
        loss = m.low_loss
        if protocol.pool_level is not None and protocol._mode(method) == MULTI:
            loss = protocol.pool_level
        if loss is not None and protocol.pool is not None:
            meta["pool"] = protocol.pool.source
            meta["pool_cells"] = len(protocol.pool.scores[loss])
            meta["low_cost_epochs"] = protocol.pool.cost_epochs[loss]
        if loss is not None and protocol.live is not None:
            meta["low_fidelity"] = {"live": True, "loss": loss, **dict(protocol.live.settings),
                                    "time_ratio_to_ce": protocol.live.time_ratios[loss], "seed": protocol.live.seed}
        if m.pool_warmup:
            meta["n_warmup_low"] = protocol.n_warmup_low
        return meta


def nb201_protocol(
    pool: LowFidelityPool | None = None,
    name: str = "nb201",
    budgets: Mapping[str, float] | None = None,
    live: LiveLowFidelity | None = None,
) -> Protocol:
    if pool is not None and live is not None:
        raise ValueError("give a low-fidelity pool or a live low fidelity, not both.")
    losses = pool.scores if pool is not None else live.time_ratios if live is not None else {}
    kd_methods = tuple(m.name for m in METHODS.values() if m.pool_warmup and m.low_loss in losses)
    methods = SINGLE_FIDELITY_METHODS + kd_methods
    extra = tuple(m.name for m in METHODS.values() if m.top_level_only)
    if pool is not None:
        extra += tuple(m.name for m in METHODS.values() if m.pool_cells_only and m.low_loss in pool.scores)
    extra += MFKD_METHODS
    return Protocol(
        name=name,
        description="maximise 12-epoch validation accuracy; each query costs the 12-epoch training time",
        levels={"12ep": 12},
        single_level="12ep",
        top_level="12ep",
        budgets=dict(budgets or {"cifar10": NB201_BUDGET, "cifar100": NB201_BUDGET, "imagenet16": 3 * NB201_BUDGET}),
        methods=methods,
        pool=pool,
        live=live,
        extra_methods=extra,
    )


def mf_protocol() -> Protocol:
    return Protocol(
        name="mf",
        description="levels 12- and 200-epoch validation accuracy; budget 50 x median 200-epoch cost",
        levels={"12ep": 12, "200ep": 200},
        single_level="200ep",
        top_level="200ep",
        low_level="12ep",
        budget_median_top_evals=50.0,
        methods=SINGLE_FIDELITY_METHODS + ("bohb", "hyperband", "mfkd-paper"),
        extra_methods=tuple(PEERS) + ("mfkd", "mfkd-mes", "mfkd-ucb"),
    )


def mf3_protocol(pool: LowFidelityPool, loss: str = "nst") -> Protocol:
    """``mf`` with the pool's ``loss`` score as a third, cheapest level (see the module docstring)."""
    if loss not in pool.scores:
        raise ValueError(f"protocol 'mf3' needs {loss!r} scores; the pool {pool.source!r} has {sorted(pool.scores)}.")
    return dataclasses.replace(
        mf_protocol(),
        name="mf3",
        description=f"levels {loss} one-epoch score (pool cells), 12- and 200-epoch validation accuracy; "
                    "budget 50 x median 200-epoch cost",
        methods=SINGLE_FIDELITY_METHODS + ("mfkd",),
        extra_methods=("mfkd-paper",),
        pool=pool,
        pool_level=loss,
    )


def get_protocol(name: str, pool: LowFidelityPool | None = None, live: LiveLowFidelity | None = None) -> Protocol:
    """``"nb201"``, ``"nb201-12k"``, ``"mf"`` or ``"mf3"`` (needs ``pool``).

    ``pool`` (cached scores) or ``live`` (live training) adds the MF-KD methods to ``nb201``
    and ``nb201-12k``; with ``live`` the protocol's name gains ``-live`` so its studies never
    mix with the pool's in one storage.
    """
    if live is not None and name not in ("nb201", "nb201-12k"):
        raise ValueError(f"a live low fidelity needs protocol 'nb201' or 'nb201-12k', not {name!r}.")
    suffix = "-live" if live is not None else ""
    if name == "nb201":
        return nb201_protocol(pool, name="nb201" + suffix, live=live)
    if name == "nb201-12k":
        return nb201_protocol(pool, name="nb201-12k" + suffix,
                              budgets=dict.fromkeys(DATASETS, NB201_BUDGET), live=live)
    if name == "mf":
        return mf_protocol()
    if name == "mf3":
        if pool is None:
            raise ValueError("protocol 'mf3' needs a low-fidelity pool (its cheapest level).")
        return mf3_protocol(pool)
    raise ValueError(f"unknown protocol {name!r}; known: ['nb201', 'nb201-12k', 'mf', 'mf3'].")
