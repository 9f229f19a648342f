"""YAML loading that remembers where every value came from (file and line).

Pydantic reports errors by location tuples (``("watchlists", 0, "terms", 2)``);
:func:`line_for` turns such a tuple into the line of the offending YAML node, so every
configuration error can name file, line and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """Invalid configuration. ``problems`` holds one ``file:line: field: message`` per error."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class YamlDoc:
    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_for(self, loc: Sequence[str | int]) -> int:
        """Line (1-based) of the deepest node on ``loc`` that exists in the document.

        Location parts that are not document keys (pydantic's union tags such as
        ``"str"`` or ``"Phrase"``) are skipped."""
        best = self.lines.get((), 1)
        path: tuple[str | int, ...] = ()
        for part in loc:
            candidate = (*path, part)
            if candidate in self.lines:
                path = candidate
                best = self.lines[candidate]
        return best

    def where(self, loc: Sequence[str | int]) -> str:
        return f"{self.path}:{self.line_for(loc)}"


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _tab_indent(text: str, upto: int) -> int | None:
    """The first line, up to line ``upto`` (1-based) and the one after it, whose
    indentation holds a tab: the usual cause of a YAML syntax error in a hand-edited
    file, which YAML reports as an unexpected token, sometimes on a later line."""
    for number, line in enumerate(text.splitlines()[: upto + 1], 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            return number
    return None


def load_yaml(path: Path) -> YamlDoc:
    """Parse one YAML file; syntax errors become :class:`ConfigError` with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason}"]) from exc
    # one parse gives both the node tree (for lines) and the data; libyaml's loader when
    # PyYAML has it (far faster than the pure-Python one on a large feeds file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        tab = _tab_indent(text, line)
        if tab is not None:  # (YAML's own words for it name a token, not the tab)
            raise ConfigError(
                [f"{path}:{tab}: tabs are not allowed in YAML (line {tab}): indent with spaces"]
            ) from exc
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{path}:{line}: YAML syntax error: {problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML error: {exc}"]) from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlDoc(path=path, data=data, lines=lines)
