"""Issue 16: the codebase's shape, counted the way the closing note reports it.

Run by hand:  .venv/bin/python bench/code_shape.py [ROOT]   (ROOT: a checkout, default .)

Module sizes (lines), function sizes (lines from ``def`` to its last line, nested
functions counted on their own as well), and the lines outside ``monitor/store/`` that
build SQL (the pattern ``tests/test_layout.py`` forbids). Migrations are left out.
Compare two commits with ``git worktree add /tmp/old REV`` and a run on each.
"""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_layout import SQL_CALL  # (the one definition of "SQL")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "monitor"
    modules: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    sql = 0
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = str(path.relative_to(root.parent))
        source = path.read_text(encoding="utf-8")
        modules.append((len(source.splitlines()), name))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((size, f"{name}:{node.name}"))
        if "store" not in path.relative_to(root).parts:
            lines = source.splitlines()
            sql += sum(1 for line in lines if SQL_CALL.search(line.split("#", 1)[0]))
    modules.sort(reverse=True)
    functions.sort(reverse=True)
    print(f"modules: {len(modules)}, median {statistics.median(n for n, _ in modules):g} lines")
    print("largest modules:", ", ".join(f"{m} ({n})" for n, m in modules[:3]))
    print(f"functions: {len(functions)}, median {statistics.median(n for n, _ in functions):g}")
    print("largest functions:", ", ".join(f"{f} ({n})" for n, f in functions[:3]))
    print(f"lines building SQL outside monitor/store/: {sql}")


if __name__ == "__main__":
    main()
