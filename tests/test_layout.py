"""The codebase's shape, checked: SQL only in ``monitor/store/``, stages that never
reach for storage or orchestration, and an import graph without cycles. Each check
names the file and line that breaks it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "monitor"

# stages take data and return data: they never import these
STAGES = ("fetch", "parse", "dedupe", "match", "deliver")
ORCHESTRATION = ("pipeline", "cli", "store", "outbox", "scheduler")
# the only packages and modules that touch the database through monitor.store
STORE_USERS = ("pipeline", "outbox", "scheduler", "cli", "store")

SQL_CALL = re.compile(r"(?<![\w.])(?<!def )(select|insert|update|delete|text)\(")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, *, runtime_only: bool) -> list[tuple[str, int]]:
    """(imported monitor module, line) of a module; with ``runtime_only``, leaving out
    imports under ``if TYPE_CHECKING:`` (they do not run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for child in node.body for n in ast.walk(child))
    known = _modules()
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, path.name == "__init__.py")
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("monitor"):
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in known and name != module and (name, node.lineno) not in out:
                    out.append((name, node.lineno))
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_sql_outside_the_store() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(ROOT / "store"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SQL_CALL.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(ROOT.parent)}:{n}: {line.strip()}")
    assert not found, "SQL belongs in monitor/store/:\n" + "\n".join(found)


def test_stages_never_import_storage_or_orchestration() -> None:
    found = []
    for module, path in _modules().items():
        if _top(module) not in STAGES:
            continue
        for name, line in _imports(module, path, runtime_only=False):
            if _top(name) in ORCHESTRATION:
                found.append(f"{path.relative_to(ROOT.parent)}:{line}: imports {name}")
    assert not found, "\n".join(found)


def test_only_orchestration_imports_the_store() -> None:
    found = []
    for module, path in _modules().items():
        if _top(module) in STORE_USERS:
            continue
        for name, line in _imports(module, path, runtime_only=False):
            if _top(name) == "store":
                found.append(f"{path.relative_to(ROOT.parent)}:{line}: imports {name}")
    assert not found, "\n".join(found)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycles() -> None:
    """Between modules, counting every import that runs (those only for the type
    checker excepted)."""
    graph = {
        module: {name for name, _ in _imports(module, path, runtime_only=True)}
        for module, path in _modules().items()
    }
    # a package's __init__ re-exporting its own modules is not a cycle with them
    for module in graph:
        graph[module] = {n for n in graph[module] if not module.startswith(n + ".")}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("rows = await session.exec(select(Row))", "SQL"),
        ("seen.update(x)", None),
        ("sa_update = 1", None),
        ("async def update(self, msg: AlertMessage) -> None:", None),
        ("conn.execute(text('SELECT 1'))", "SQL"),
    ],
)
def test_the_sql_check_tells_queries_from_method_calls(source: str, problem: str | None) -> None:
    assert bool(SQL_CALL.search(source)) == (problem is not None)
