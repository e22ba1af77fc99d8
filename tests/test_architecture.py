"""The package's import structure: light modules stay light, lazy public names resolve."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("module", ["optuna_mfkd", "optuna_mfkd.nasbench201.space", "optuna_mfkd.datasets"])
def test_light_modules_import_no_torch(module: str) -> None:
    res = _python(f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'")
    assert res.returncode == 0, res.stderr


def test_lazy_public_names() -> None:
    import optuna_mfkd
    from optuna_mfkd.sampler import MFKDSampler
    from optuna_mfkd.training.objectives import NB201TrainingObjective

    assert optuna_mfkd.MFKDSampler is MFKDSampler
    assert optuna_mfkd.NB201TrainingObjective is NB201TrainingObjective
    assert set(optuna_mfkd.__all__) <= set(dir(optuna_mfkd))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        optuna_mfkd.nothing  # noqa: B018


# ---------------------------------------------------------------------- what never imports what
# The import statements of every module of the package, read with ast (nothing is imported).
PACKAGE = ROOT / "optuna_mfkd"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


class _Imports(ast.NodeVisitor):
    """(imported name, runs at import time) for each import of one module.

    ``from pkg import name`` yields ``pkg.name`` when that is a module of the package, else
    ``pkg``. Imports inside functions run later (lazy); imports under ``if TYPE_CHECKING:``
    never run but still count as dependencies.
    """

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.lazy = False
        self.found: list[tuple[str, bool]] = []

    def _nested(self, node: ast.AST) -> None:
        outer, self.lazy = self.lazy, True
        self.generic_visit(node)
        self.lazy = outer

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING":
            self._nested(node)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, not self.lazy) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative import
            package = self.module.split(".")[: None if self.is_package else -1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self.found.append((full if full in MODULES else base, not self.lazy))


def _imports(module: str) -> list[tuple[str, bool]]:
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


IMPORTS: dict[str, list[tuple[str, bool]]] = {m: _imports(m) for m in MODULES}


def _targets(prefix: str) -> dict[str, set[str]]:
    """Module -> everything it imports, for the modules ``prefix`` names (a package or module)."""
    return {m: {t for t, _ in found} for m, found in IMPORTS.items()
            if m == prefix or m.startswith(prefix + ".")}


def _violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in _targets(prefix).items() for t in targets
                  if any(t == f or t.startswith(f + ".") for f in forbidden))


def test_gp_knows_tensors_only() -> None:
    assert _violations("optuna_mfkd.gp", ("optuna.storages", "optuna_mfkd.nasbench201")) == []


@pytest.mark.parametrize("package", ["optuna_mfkd.distill", "optuna_mfkd.training"])
def test_training_knows_nothing_of_search(package: str) -> None:
    # Neither the sampler nor its GP, the benchmark harness, or the package facade that
    # re-exports the sampler.
    forbidden = ("optuna_mfkd.sampler", "optuna_mfkd.gp", "optuna_mfkd.bench")
    assert _violations(package, forbidden) == []
    assert [m for m, targets in _targets(package).items() if "optuna_mfkd" in targets] == []


def test_the_space_module_stays_light() -> None:
    # Everything that runs when optuna_mfkd.nasbench201.space is imported: its own top-level
    # imports, those of the package __init__ files above each module, and so on.
    seen, todo, external = set(), ["optuna_mfkd.nasbench201.space"], set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for name in [".".join(parts[:k]) for k in range(1, len(parts) + 1)]:
            if name in MODULES and name not in seen:
                seen.add(name)
                for target, at_import in IMPORTS[name]:
                    if not at_import:
                        continue
                    if target.split(".")[0] == "optuna_mfkd":
                        todo.append(target)
                    else:
                        external.add(target.split(".")[0])
    assert not external & {"torch", "torchvision", "gpytorch", "botorch"}, sorted(external)
    assert "optuna_mfkd.nasbench201.network" not in seen


def test_nothing_in_the_package_imports_benchmarks() -> None:
    assert _violations("optuna_mfkd", ("benchmarks",)) == []


def _unit(module: str) -> str:
    """Subpackage (``gp``, ``training``, ...) or top-level module of a package module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<facade>"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> successors), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    modules = {m: {t for t, _ in found if t in MODULES and t != m} for m, found in IMPORTS.items()}
    assert _cycle(modules) is None
    units: dict[str, set[str]] = {}
    for m, targets in modules.items():
        units.setdefault(_unit(m), set()).update(_unit(t) for t in targets if _unit(t) != _unit(m))
    assert _cycle(units) is None


def test_cycle_finder() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_sampling_parts_never_import_upwards() -> None:
    # the adapter (sampler.py) imports its parts, never the other way round; the parts know
    # neither the benchmark, the command line, training nor the NB201 space
    upward = ("optuna_mfkd.sampler", "optuna_mfkd.bench", "optuna_mfkd.cli", "optuna_mfkd.training",
              "optuna_mfkd.nasbench201", "optuna_mfkd.distill")
    assert _violations("optuna_mfkd.sampling", upward) == []
    assert _violations("optuna_mfkd.gp", ("optuna_mfkd.sampling", "optuna_mfkd.sampler")) == []


def test_modules_stay_small() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > 500} == {}
    assert sizes["optuna_mfkd.sampler"] < 300
