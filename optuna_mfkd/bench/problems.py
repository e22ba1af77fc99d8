"""What the harness runs: a benchmark problem (objective, levels, costs, budget, metric).

A problem is anything with the interface of :class:`Problem`; the harness runs one study per
(problem, method, seed) and names it ``<problem.name>/<problem.variant>/<method>/seed-<k>``.
Two kinds exist:

- NAS-Bench-201 protocols on one dataset (:class:`optuna_mfkd.bench.protocols.NB201Problem`:
  name = protocol, variant = dataset; metric = the incumbent's 200-epoch test accuracy);
- synthetic functions from BoTorch (:mod:`optuna_mfkd.bench.synthetic`: name = function,
  variant = its levels; metric = the incumbent's log10 simple regret).

Every objective records the user attribute ``cost`` of each trial (the harness stops a run
once the total reaches the budget, :class:`~optuna_mfkd.fidelity.MaxCostCallback`) and, on
the trials that can become the incumbent, the metric's user attribute. The incumbent is the
best COMPLETE trial at the top level in the study's direction (ties: the earlier trial); the
metric reported is its attribute, which the search never reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from optuna_mfkd.bench.methods import Method, MethodContext, get_method


@dataclass(frozen=True)
class Metric:
    """The figure a run reports: a user attribute of the incumbent.

    Attributes:
        attr: the trial user attribute holding it.
        label: what it is, for tables and plot axes.
        higher_is_better: its direction (which method is "ahead").
        unit: the unit of differences between methods (e.g. ``"pts"``, ``"log10"``).
    """

    attr: str
    label: str
    higher_is_better: bool
    unit: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Metric:
        return cls(str(data["attr"]), str(data["label"]), bool(data["higher_is_better"]), str(data["unit"]))


#: The NAS-Bench-201 protocols' figure (and that of studies stored before metrics were recorded).
NB201_TEST_ACCURACY = Metric("test_acc_200ep", "200-epoch test accuracy of the incumbent (%)", True, "pts")


@runtime_checkable
class Problem(Protocol):
    """The interface the harness runs (see the module docstring).

    Attributes:
        name: first part of the study names (``nb201``, ``hartmann6``, ...).
        variant: second part (the dataset, the levels, ...).
        direction: ``"maximize"`` or ``"minimize"``, the study's direction.
        top_level: the level whose trials can become the incumbent.
        metric: what a run reports.
        cost_unit: the unit of the ``cost`` attributes and of the budget.
        methods: the method names this problem runs.
    """

    name: str
    variant: str
    direction: str
    top_level: str
    metric: Metric
    cost_unit: str
    methods: tuple[str, ...]

    def method(self, name: str) -> Method:
        """The method ``name`` (:class:`ValueError` when this problem does not run it)."""
        ...

    def budget(self) -> float:
        """Total cost a run may spend (in :attr:`cost_unit`)."""
        ...

    def context(self, method: str) -> MethodContext:
        """What method ``method`` needs to know (levels, warm-up sizes)."""
        ...

    def objective(self, method: str) -> Callable[..., float]:
        """The Optuna objective of method ``method``."""
        ...

    def warmup_queue(self, method: str, seed: int) -> list[tuple[dict[str, Any], dict[str, object]]]:
        """Trials ``(params, user_attrs)`` to enqueue before a run (usually none)."""
        ...

    def meta(self, method: str) -> dict[str, Any]:
        """JSON-able facts stored with each study (data source, optimum, ...)."""
        ...


def resolve_method(name: str, owner: str, allowed: Sequence[str]) -> Method:
    """The method ``name`` for ``owner`` (a problem running ``allowed`` methods)."""
    method = get_method(name)
    if name not in allowed:
        raise ValueError(f"method {name!r} is not part of {owner} (methods: {list(allowed)}).")
    return method


def problem_id(problem: Problem) -> str:
    """``<name>/<variant>``: how reports and the suite's command line name a problem."""
    return f"{problem.name}/{problem.variant}"
