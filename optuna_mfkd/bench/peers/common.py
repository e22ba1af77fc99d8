"""What the peer adapters share: search-space conversion, levels, and the sampler shell.

A peer proposes ``(configuration, budget)`` pairs and wants a loss back. The harness runs
Optuna studies whose objective reads the level of a trial from its ``fidelity`` user
attribute (:func:`optuna_mfkd.fidelity_of`) and records its ``cost``. :class:`PeerSampler`
joins the two: ``before_trial`` asks the peer and writes the level (and the peer's own
bracket/budget) into the trial's user attributes, ``sample_relative`` returns the peer's
configuration as the trial's params, ``after_trial`` tells the peer the loss. So the peer's
own loop drives the search, while every evaluation is an ordinary trial of the study and
``MaxCostCallback`` stops it at the budget exactly as for every other method.

Budgets: a problem's levels are resources ``r_0 < ... < r_{L-1}`` (epochs on NB201). The
peers get ``min = r_0``, ``max = r_{L-1}`` and the reduction factor
``eta = (r_{L-1} / r_0) ** (1 / (L - 1))``, so that their rungs ``r_0 * eta**k`` are exactly
the levels; levels that are not geometric are rejected. With the NB201 levels 12 and 200
epochs, ``eta = 200 / 12`` and every bracket has rungs 12 and 200 only. Each adapter reads
the rungs its peer computed and checks them against the levels; where the peer's own
floating-point rounding of ``log(max / min) / log(eta)`` loses a rung (levels 1, 10, 100),
``eta`` is lowered by a relative :data:`ETA_NUDGE` and the rungs are checked again.

Loss: peers minimise, so a maximised study value ``v`` is told as ``-v`` (a minimised one as
``v``); a failed evaluation is told as a failure in each peer's own way.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, TypeVar

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from optuna_mfkd.bench.peers import EXTRA_HINT
from optuna_mfkd.fidelity import FIDELITY_ATTR, FIDELITY_LEVEL_ATTR, record_user_attrs, trial_cost

#: User attributes a peer's evaluation carries beside the level (absent when a peer has none).
BRACKET_ATTR = "peer:bracket"
BUDGET_ATTR = "peer:budget"
PEER_TRIAL_ATTR = "peer:trial"
#: Relative tolerance (in log space) between a peer's budget and a level's resource.
BUDGET_RTOL = 1e-6
#: Relative decrease of ``eta`` that makes a peer's rounding of ``log(max/min) / log(eta)``
#: land on the intended number of rungs where the exact ratio rounds down (e.g. 1, 10, 100).
ETA_NUDGE = 1e-9

T = TypeVar("T")


@contextlib.contextmanager
def keep_other_loggers() -> Iterator[None]:
    """Undo what a peer's logging set-up does to other packages' loggers.

    SMAC configures logging with ``logging.config.dictConfig`` (on import and when a facade
    is made), which disables every logger that exists by then and sets the root level, e.g.
    ``optuna_mfkd.sampler``'s warnings would vanish for the rest of the process; the
    ``disabled`` flags, the root level and ``logging.disable`` are restored.
    """
    loggers = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    before = {lg: lg.disabled for lg in loggers}
    root_level, disable = logging.root.level, logging.root.manager.disable
    try:
        yield
    finally:
        for lg, disabled in before.items():
            lg.disabled = disabled
        logging.root.setLevel(root_level)
        logging.disable(disable)


def require(module: str, method: str, package: str) -> Any:
    """Import ``module`` or fail with one line naming the extra that installs it."""
    try:
        with keep_other_loggers():
            return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"method {method!r} needs the package {package!r} ({type(exc).__name__}: {exc}); {EXTRA_HINT}"
        ) from None


def package_versions(*distributions: str) -> dict[str, str | None]:
    """Installed versions of the given distributions (``None`` where one is absent)."""
    out: dict[str, str | None] = {}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@dataclass(frozen=True)
class Levels:
    """A problem's levels, cheapest first, with the resource each one trains for.

    Attributes:
        names: level names (the ``fidelity`` user attribute of a trial).
        resources: resource of each level (e.g. epochs), strictly increasing and positive.
    """

    names: tuple[str, ...]
    resources: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.resources) or len(self.names) < 2:
            raise ValueError(
                f"a peer needs at least two levels with one resource each, got {dict(zip(self.names, self.resources))}."
            )
        if any(not r > 0 for r in self.resources) or any(
            b <= a for a, b in zip(self.resources, self.resources[1:])
        ):
            raise ValueError(
                f"level resources must be positive and strictly increasing, got {list(self.resources)}."
            )
        eta = self.eta
        for k, r in enumerate(self.resources):
            if abs(math.log(r / (self.min * eta**k))) > BUDGET_RTOL:
                raise ValueError(
                    f"level resources {list(self.resources)} are not geometric, so no reduction factor makes "
                    "the peers' rungs equal to the levels."
                )

    @classmethod
    def from_mapping(cls, resources: Mapping[str, float]) -> Levels:
        """Levels from ``{name: resource}`` (sorted by resource)."""
        items = sorted(resources.items(), key=lambda kv: float(kv[1]))
        return cls(tuple(n for n, _ in items), tuple(float(r) for _, r in items))

    @property
    def min(self) -> float:
        return self.resources[0]

    @property
    def max(self) -> float:
        return self.resources[-1]

    @property
    def eta(self) -> float:
        """Reduction factor whose rungs are the levels: ``(max / min) ** (1 / (L - 1))``."""
        n = len(self.resources) - 1
        return self.max / self.min if n == 1 else (self.max / self.min) ** (1.0 / n)

    def index_of(self, budget: float) -> int:
        """The level whose resource equals a peer's ``budget`` (up to rounding)."""
        logs = [abs(math.log(float(budget) / r)) for r in self.resources]
        k = min(range(len(logs)), key=logs.__getitem__)
        if logs[k] > BUDGET_RTOL:
            raise ValueError(
                f"the peer asked for budget {budget!r}, which is none of the levels {dict(zip(self.names, self.resources))}."
            )
        return k


class SearchSpace:
    """An Optuna search space and its ConfigSpace / Syne Tune counterparts.

    Categorical choices become string labels (``str(choice)``, mapped back on decoding);
    floats and integers keep their bounds and log scale. Stepped floats, and integers with a
    step other than 1, become ordinal grids (ConfigSpace's ``OrdinalHyperparameter``, Syne
    Tune's ``finrange``) of the same values.
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        if not distributions:
            raise ValueError("a peer needs the problem's search space (no distributions given).")
        self.distributions = dict(distributions)
        self._labels: dict[str, dict[str, Any]] = {}
        self._grids: dict[str, list[float]] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                labels = {str(c): c for c in dist.choices}
                if len(labels) != len(dist.choices):
                    raise ValueError(
                        f"parameter {name!r}: choices {dist.choices} do not have distinct string forms."
                    )
                self._labels[name] = labels
            elif isinstance(dist, FloatDistribution | IntDistribution):
                if (isinstance(dist, FloatDistribution) and dist.step is not None) or (
                    isinstance(dist, IntDistribution) and dist.step != 1
                ):
                    count = int(round((dist.high - dist.low) / dist.step)) + 1
                    self._grids[name] = [dist.low + k * dist.step for k in range(count)]
            else:
                raise ValueError(f"parameter {name!r}: unsupported distribution {dist}.")

    def configspace(self, seed: int) -> Any:
        """A ``ConfigSpace.ConfigurationSpace`` with the same parameters."""
        import ConfigSpace as CS

        cs = CS.ConfigurationSpace(seed=seed)
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                hp: Any = CS.CategoricalHyperparameter(name, list(self._labels[name]))
            elif name in self._grids:
                hp = CS.OrdinalHyperparameter(name, self._grids[name])
            elif isinstance(dist, FloatDistribution):
                hp = CS.UniformFloatHyperparameter(name, dist.low, dist.high, log=dist.log)
            else:
                hp = CS.UniformIntegerHyperparameter(name, dist.low, dist.high, log=dist.log)
            cs.add(hp)
        return cs

    def synetune(self) -> dict[str, Any]:
        """A Syne Tune config space (``choice`` / ``uniform`` / ``randint`` and log forms)."""
        from syne_tune import config_space as st

        space: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                space[name] = st.choice(list(self._labels[name]))
            elif name in self._grids:
                grid = self._grids[name]
                space[name] = st.finrange(
                    grid[0], grid[-1], len(grid), cast_int=isinstance(dist, IntDistribution)
                )
            elif isinstance(dist, FloatDistribution):
                space[name] = (st.loguniform if dist.log else st.uniform)(dist.low, dist.high)
            else:
                space[name] = (st.lograndint if dist.log else st.randint)(dist.low, dist.high)
        return space

    def decode(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna params (in the distributions' own types) from a peer's configuration."""
        params: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            if name not in config:
                raise ValueError(
                    f"the peer's configuration lacks parameter {name!r}: {dict(config)}."
                )
            value = config[name]
            if isinstance(dist, CategoricalDistribution):
                params[name] = self._labels[name][str(value)]
            elif name in self._grids:
                grid = self._grids[name]
                nearest = min(grid, key=lambda g: abs(g - float(value)))
                params[name] = int(nearest) if isinstance(dist, IntDistribution) else float(nearest)
            elif isinstance(dist, FloatDistribution):
                params[name] = min(max(float(value), dist.low), dist.high)
            else:
                params[name] = min(max(int(round(float(value))), dist.low), dist.high)
        return params


@dataclass
class Proposal:
    """One evaluation a peer asked for.

    Attributes:
        params: Optuna params of the configuration.
        level: index into :attr:`Levels.names`.
        token: what the peer needs back when told the result.
        budget: the budget the peer asked for (stored as ``peer:budget``).
        bracket: the peer's bracket (``peer:bracket``), where it has brackets.
        peer_trial: the peer's own id of the configuration or trial (``peer:trial``).
        extra: further bookkeeping of the peer, JSON-able user attributes.
    """

    params: dict[str, Any]
    level: int
    token: Any
    budget: float
    bracket: int | None = None
    peer_trial: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def user_attrs(self) -> dict[str, Any]:
        return {
            BRACKET_ATTR: self.bracket,
            BUDGET_ATTR: float(self.budget),
            PEER_TRIAL_ATTR: self.peer_trial,
            **self.extra,
        }


class PeerSampler(optuna.samplers.BaseSampler):
    """Optuna sampler shell around a peer's ask/tell loop (see the module docstring).

    Subclasses implement :meth:`_ask` and :meth:`_tell` and set :attr:`packages` (the
    distributions whose versions go into the study's meta). One study at a time, one
    evaluation at a time: the peers run their sequential (one-worker) loop.

    Args:
        method: harness method name (for messages and meta).
        search_space: the problem's Optuna distributions, by parameter name.
        levels: the problem's levels and their resources.
        seed: the peer's seed.
    """

    packages: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, method: str, search_space: Mapping[str, BaseDistribution], levels: Levels, seed: int
    ) -> None:
        self.method = method
        self.space = SearchSpace(search_space)
        self.levels = levels
        self.seed = seed
        self._pending: dict[int, Proposal] = {}
        self._scratch: str | None = None
        self.eta = levels.eta

    # -- what a peer implements -------------------------------------------------------
    def _ask(self) -> Proposal:
        raise NotImplementedError

    def _tell(self, proposal: Proposal, loss: float | None, cost: float) -> None:
        """Report ``loss`` (``None``: the evaluation failed) and its ``cost`` to the peer."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The peer's settings that differ from its defaults or that the levels fix."""
        return {"min_budget": self.levels.min, "max_budget": self.levels.max, "eta": self.eta}

    # -- helpers -----------------------------------------------------------------------
    def build_peer(self, build: Callable[[float], T], rungs: Callable[[T], Sequence[float]]) -> T:
        """``build(eta)`` with the ``eta`` whose rungs (as the peer computed them) are the levels."""
        got: list[float] = []
        for eta in (self.levels.eta, self.levels.eta * (1.0 - ETA_NUDGE)):
            peer = build(eta)
            got = sorted(float(r) for r in rungs(peer))
            if len(got) == len(self.levels.resources) and all(
                abs(math.log(g / r)) <= BUDGET_RTOL for g, r in zip(got, self.levels.resources)
            ):
                self.eta = eta
                return peer
        raise ValueError(
            f"method {self.method!r}: the peer's rungs {got} are not the levels {list(self.levels.resources)}."
        )

    def scratch_dir(self) -> str:
        """A private folder for files a peer insists on writing (removed with the sampler)."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"{self.method}-")
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch

    @property
    def bench_meta(self) -> dict[str, Any]:
        """What the harness stores in the study's meta: the peer, its versions, its settings."""
        return {
            "peer": {
                "method": self.method,
                "versions": package_versions(*self.packages),
                "settings": self.settings(),
            }
        }

    # -- the Optuna sampler interface --------------------------------------------------
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if len(study.directions) != 1:
            raise ValueError(
                f"method {self.method!r} optimises a single objective; the study has {len(study.directions)}."
            )
        if trial._trial_id in self._pending:
            return
        proposal = self._ask()
        self._pending[trial._trial_id] = proposal
        attrs = {
            FIDELITY_ATTR: self.levels.names[proposal.level],
            FIDELITY_LEVEL_ATTR: proposal.level,
            **proposal.user_attrs(),
        }
        record_user_attrs(trial, study, attrs)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.space.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        proposal = self._pending.get(trial._trial_id)
        if proposal is None:
            return {}
        return {k: v for k, v in proposal.params.items() if k in search_space}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        raise ValueError(
            f"method {self.method!r}: the objective suggested {param_name!r} ({param_distribution}), which is not "
            f"in the search space given to the peer ({list(self.space.distributions)})."
        )

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        proposal = self._pending.pop(trial._trial_id, None)
        if proposal is None:
            return
        loss = None
        if state == TrialState.COMPLETE and values:
            sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
            loss = sign * float(values[0])
        self._tell(proposal, loss, trial_cost(trial))


def context_levels(method: str, context: Any) -> tuple[Mapping[str, BaseDistribution], Levels]:
    """The search space and levels a peer needs from a :class:`MethodContext`."""
    space = getattr(context, "search_space", None)
    resources = getattr(context, "level_resources", None)
    if not space or not resources:
        raise ValueError(
            f"method {method!r} needs a problem with an Optuna search space and at least two levels with resources."
        )
    return space, Levels.from_mapping(resources)
