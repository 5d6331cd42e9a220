"""The package's shape, read from its source with `ast`: imports flow one way between the
pipeline's stages (docs/architecture.md), no module imports another in a circle, internal
imports sit at the top of their module, and the CLI's start-up stays free of heavy libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmnist_kaggle"

# Lowest first: a module may import its own stage and the stages before it, never one after.
STAGES = [
    ("errors", "_version", "_openmp", "registry", "durations", "console"),
    ("metrics", "tracking", "storage"),
    ("plots",),
    ("data",),
    ("models",),
    ("training",),
    ("runs",),
    ("evaluate",),
    ("submit",),
    ("search",),
    ("reporting",),
    ("api", "estimator", "cli"),
]
RANK = {part: rank for rank, parts in enumerate(STAGES) for part in parts}
# Third-party modules that must stay out of a module's top level where they are lazy today.
HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "kaggle",
    "ray",
    "sklearn",
    "scipy",
    "matplotlib",
    "albumentations",
    "optuna",
    "mlflow",
    "pandas",
    "pyarrow",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return "api" if len(parts) == 1 else parts[1]


def _type_only(tree: ast.Module) -> set[int]:
    """Imports under `if TYPE_CHECKING:`: read by type checkers, never run."""
    return {
        id(n)
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }


def _imports(path: Path, type_only: bool = False) -> list[tuple[str, bool, int]]:
    """(imported fmnist_kaggle module, at top level?, line) for every internal import that runs
    (and, with `type_only`, those under `if TYPE_CHECKING:` too)."""
    tree = ast.parse(path.read_text())
    top, typing_only = {id(node) for node in tree.body}, _type_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only and not type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmnist_kaggle"):
            mods = _modules()
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in mods else node.module, id(node) in top, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top, node.lineno) for a in node.names if a.name.startswith("fmnist_kaggle")]
    return found


def _graph(type_only: bool = False) -> dict[str, set[str]]:
    return {name: {m for m, _, _ in _imports(path, type_only) if m != name} for name, path in _modules().items()}


def test_no_import_from_a_higher_stage_into_a_lower_one():
    wrong = []
    for name, path in _modules().items():
        for target, _, line in _imports(path):
            if target == "fmnist_kaggle" and _stage(name) != "api":
                wrong.append(f"{path.name}:{line} imports the package root (import the module that defines the name)")
            elif RANK[_stage(target)] > RANK[_stage(name)]:
                wrong.append(f"{name} ({_stage(name)}) imports {target} ({_stage(target)}) at line {line}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_type_only_imports_included():
    graph = _graph(type_only=True)
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package's __init__ importing its own submodules is how it exports them, not a cycle
    real = [c for c in cycles if not all(m.startswith(c.split(" -> ")[-1]) for m in c.split(" -> "))]
    assert not real, "\n".join(real)


def _heavy_at_import() -> set[str]:
    """Modules whose import (their top level, followed through internal imports) loads a heavy library."""
    mods = _modules()
    direct = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        tops = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        direct[name] = any(
            (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0] in HEAVY
            for n in tops
            for a in n.names
        )
    graph = {name: {m for m, at_top, _ in _imports(path) if at_top and m != name} for name, path in mods.items()}
    heavy = {n for n, h in direct.items() if h}
    while True:
        more = {n for n, deps in graph.items() if n not in heavy and deps & heavy}
        if not more:
            return heavy
        heavy |= more


def test_internal_modules_are_imported_at_the_top():
    """A function-level internal import only hides a cycle; it is allowed only to keep a heavy
    third-party library (torch, pandas, scikit-learn...) out of start-up."""
    heavy = _heavy_at_import()
    inside = [
        f"{name}:{line} imports {target} inside a function, and {target} loads no heavy library"
        for name, path in _modules().items()
        for target, at_top, line in _imports(path)
        if not at_top and target not in heavy
    ]
    assert not inside, "\n".join(inside)


@pytest.mark.parametrize("module", ["fmnist_kaggle.cli", "fmnist_kaggle"])
def test_start_up_imports_no_heavy_library(module):
    code = (
        f"import sys, {module}; from fmnist_kaggle.cli.main import build_parser; "
        f"build_parser(); print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"`fkaggle --help` imported {out}"


def test_heavy_libraries_stay_lazy_where_they_were():
    """Modules that the CLI imports at start-up keep torch & co. inside the functions that need them."""
    light = [
        name
        for name in _modules()
        if name.startswith(
            ("fmnist_kaggle.cli", "fmnist_kaggle.storage", "fmnist_kaggle.registry", "fmnist_kaggle.errors")
        )
    ]
    light += [
        "fmnist_kaggle.data.images",
        "fmnist_kaggle.data.formats",
        "fmnist_kaggle.training.config",
        "fmnist_kaggle.runs.executors",
        "fmnist_kaggle.evaluate.blenders",
    ]
    paths = _modules()
    wrong = []
    for name in light:
        tree = ast.parse(paths[name].read_text())
        for node in tree.body:
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            wrong += [f"{name}: top-level import of {m}" for m in mods if m.split(".")[0] in HEAVY]
    assert not wrong, "\n".join(wrong)


def test_functions_and_classes_stay_short_enough_to_hold_in_mind():
    """No function over 70 lines and no class over 200 in the package (docstrings counted)."""
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = 70 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else 200
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                length = node.end_lineno - node.lineno + 1
                long += [f"{name}:{node.lineno} {node.name}: {length} lines"] if length > limit else []
    assert not long, "\n".join(long)


def test_each_contract_and_sum_has_one_definition():
    """One class for 'this unit would end late' and one for 'the deadline is here', the recipes in
    their registry only, no executor member looked up with getattr, steps per epoch defined once."""
    defined: dict[str, list[str]] = {}
    sources = {name: path.read_text() for name, path in _modules().items()}
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                defined.setdefault(node.name, []).append(name)
    assert defined["UnitLate"] == ["fmnist_kaggle.training.deadline"] and "WouldEndLate" not in defined
    assert defined["DeadlineReached"] == ["fmnist_kaggle.training.deadline"]
    assert defined["steps_per_epoch"] == ["fmnist_kaggle.training.config", "fmnist_kaggle.search.autopilot.policy"]
    assert (
        "def steps_per_epoch(option" in sources["fmnist_kaggle.search.autopilot.policy"]
    )  # the policy asks the config
    assert ".steps_per_epoch(budget.shape.train_rows)" in sources["fmnist_kaggle.search.autopilot.policy"]
    for name, text in sources.items():
        assert "CPU_RECIPES" not in text and "GPU_RECIPES" not in text, name
        assert "RECIPES: dict" not in text or name == "fmnist_kaggle.training.recipes", name
        for member in ("trains_here", "describe_machine", "capacity", "measure", "shows_unit_progress"):
            assert f'getattr(executor, "{member}"' not in text and f'getattr(ex, "{member}"' not in text, name


def test_one_module_owns_the_seconds():
    """Every reserve, share, safety and doubt the time model plans with is defined in
    training/timing.py, and the autopilot reads time only through its injected clock."""
    sources = {name: path.read_text() for name, path in _modules().items()}
    for const in ("LIMIT_RESERVE_S", "LIMIT_SHARE", "FIRST_SAFETY", "SAFETY", "GRACE", "PROBE_DOUBT", "FIRST_SLOWDOWN"):
        owners = [n for n, text in sources.items() if re.search(rf"^{const} = ", text, re.M)]
        assert owners == ["fmnist_kaggle.training.timing"], (const, owners)
    for name, text in sources.items():
        if name.rsplit(".", 1)[-1] in ("buying", "watch", "finish", "run", "policy", "menu"):
            assert "time.monotonic()" not in text, name  # the session's clock, injectable in tests
