"""The house rules (docs/architecture.md), checked on the source: module size, no import cycle
(type-only and function-level imports included), no reads of another module's private names,
no clock read outside the clock object, a pure core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "controller"
MAX_LINES = 400
CLOCK_READS = {
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "perf_counter"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
    ("asyncio", "sleep"),
}
"""`module.function` calls that read (or wait on) a clock."""
CLOCK_ALLOWED = ("controller/runtime/clock.py", "controller/sim/")
"""The clock object itself; the simulators play the outside world, on their own clocks."""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}
"""Public despite the underscore (collections.namedtuple)."""


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def imported(name: str, path: Path) -> set[str]:
    """Every module of ours that `name` imports, anywhere in it (under TYPE_CHECKING and in
    functions too): an edge of the dependency graph."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imported(name, path) for name, path in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_there_is_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_only_the_core() -> None:
    edges = graph()
    outside = {
        name: sorted(t for t in targets if not t.startswith("controller.core"))
        for name, targets in edges.items()
        if name.startswith("controller.core")
    }
    assert {k: v for k, v in outside.items() if v} == {}


def private_reads(path: Path) -> list[str]:
    """`x._name` where x is not self or cls (a module, another object), and `from m import _x`."""
    out = []
    for node in ast.walk(tree(path)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("controller")
        ):
            out += [f"{node.lineno}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in NAMEDTUPLE_API:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Name)
            and base.func.id == "super"
        ):
            continue
        out.append(f"{node.lineno}: {ast.unparse(node)}")
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_reads_another_ones_private_names(name: str) -> None:
    assert private_reads(MODULES[name]) == []


def clock_reads(path: Path) -> list[str]:
    out = []
    for node in ast.walk(tree(path)):
        base = node.value if isinstance(node, ast.Attribute) else None
        if isinstance(base, ast.Name) and (base.id, getattr(node, "attr", "")) in CLOCK_READS:
            out.append(f"{node.lineno}: {ast.unparse(node)}")
    return out


def test_no_clock_is_read_outside_the_clock_object() -> None:
    found = {
        str(path.relative_to(ROOT)): reads
        for path in MODULES.values()
        if not str(path.relative_to(ROOT)).startswith(CLOCK_ALLOWED)
        and (reads := clock_reads(path))
    }
    assert found == {}


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The finders are not blind: each flags what it looks for, and only that."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import time\n"
        "from controller.kube.wire import _json_object\n"
        "def f(other, config):\n"
        "    self._mine, config._replace(), other.__class__\n"
        "    return other._state, time.monotonic(), super()._base\n"
    )
    assert private_reads(sample) == [
        "2: from controller.kube.wire import _json_object",
        "5: other._state",
    ]
    assert clock_reads(sample) == ["5: time.monotonic"]
    assert clock_reads(PACKAGE / "runtime" / "clock.py")
    assert "controller.core.policy" in imported(
        "controller.runtime.controller", MODULES["controller.runtime.controller"]
    )
