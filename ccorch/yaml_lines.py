"""YAML read with line numbers, so a bad file (an IVR flow, a service scenario) is refused
naming the line of each problem: mappings and sequences come back as ``LineMap`` and
``LineSeq``, which remember where each key and item is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ccorch.errors import CcorchError


class YamlProblems(CcorchError):
    """Text that is not usable YAML; ``problems`` are (file, line, reason)."""

    def __init__(self, problems: list[tuple[str, int, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}:{line}: {r}" for f, line, r in problems))


class LineMap(dict[str, Any]):
    line: int = 0
    lines: dict[str, int]


class LineSeq(list[Any]):
    line: int = 0
    lines: list[int]


def _build(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        m = LineMap()
        m.line = node.start_mark.line + 1
        m.lines = {}
        for k, v in node.value:
            key = loader.construct_object(k, deep=True)
            m[str(key)] = _build(loader, v)
            m.lines[str(key)] = k.start_mark.line + 1  # where the key is written
        return m
    if isinstance(node, yaml.SequenceNode):
        s = LineSeq(_build(loader, v) for v in node.value)
        s.line = node.start_mark.line + 1
        s.lines = [v.start_mark.line + 1 for v in node.value]
        return s
    return loader.construct_object(node, deep=True)


def compose(text: str, path: str) -> Any:
    """The document of ``text``, with lines; raises YamlProblems naming the line."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:  # a character YAML refuses (control characters)
        line = text[: max(0, e.position)].count("\n") + 1
        raise YamlProblems(
            [(path, line, f"YAML: {e.reason} (character #x{e.character:04x})")]
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblems([(path, 1, "empty file")])
        return _build(loader, node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlProblems([(path, line, f"YAML: {e.problem or e}")]) from None
    except yaml.YAMLError as e:  # the reader meets a bad character further on
        line = text[: max(0, getattr(e, "position", 0))].count("\n") + 1
        raise YamlProblems([(path, line, f"YAML: {e}")]) from None
    finally:
        loader.dispose()


def line_of(doc: Any, loc: Sequence[int | str]) -> int:
    """The line where the value at ``loc`` (keys and indexes, as pydantic's errors give
    them) is written: the deepest part of the path that exists."""
    line = getattr(doc, "line", 1)
    here = doc
    for part in loc:
        if isinstance(here, LineMap) and str(part) in here:
            line = here.lines.get(str(part), line)
            here = here[str(part)]
        elif isinstance(here, LineSeq) and isinstance(part, int) and 0 <= part < len(here):
            line = here.lines[part]
            here = here[part]
        else:
            break
    return line
