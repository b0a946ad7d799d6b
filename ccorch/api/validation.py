"""Request validation that names every bad field, and the JSON Schema of the same rules.

A body is checked against a :class:`Shape` (fields with a type and constraints). All
problems are collected, so one 422 answer lists each missing or invalid field with the
reason; the same shapes produce the OpenAPI document's schemas, so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccorch.errors import CcorchError


class ValidationFailed(CcorchError):
    """The request names fields that are missing or invalid: ``fields`` maps each to why."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__(
            "invalid request: " + "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        )


@dataclass(frozen=True)
class Field:
    kind: str  # "string", "integer", "number", "boolean", "date", "array", "object"
    required: bool = False
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    items: Field | None = None
    description: str = ""
    # An extra check returning an error message, or None when the value is fine.
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = (
            {"type": "string", "format": "date"} if self.kind == "date" else {"type": self.kind}
        )
        if self.min_len is not None:
            s["minItems" if self.kind == "array" else "minLength"] = self.min_len
        if self.max_len is not None:
            s["maxItems" if self.kind == "array" else "maxLength"] = self.max_len
        if self.pattern:
            s["pattern"] = self.pattern
        if self.choices:
            s["enum"] = list(self.choices)
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.items is not None:
            s["items"] = self.items.schema()
        if self.description:
            s["description"] = self.description
        return s


@dataclass(frozen=True)
class Shape:
    name: str
    fields: Mapping[str, Field]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {k: f.schema() for k, f in self.fields.items()},
            "required": [k for k, f in self.fields.items() if f.required],
            "additionalProperties": False,
        }

    def validate(self, body: Any, also_required: Sequence[str] = ()) -> dict[str, Any]:
        """The checked body (unknown keys refused); raises ValidationFailed naming each field."""
        if not isinstance(body, dict):
            raise ValidationFailed({"(body)": "expected a JSON object"})
        errors: dict[str, str] = {}
        for key in body:
            if key not in self.fields:
                errors[str(key)] = "unknown field"
        out: dict[str, Any] = {}
        for name, f in self.fields.items():
            value = body.get(name)
            missing = (
                value is None
                or (isinstance(value, str) and not value.strip())
                or (isinstance(value, list) and not value)
            )
            if missing:
                if f.required or name in also_required:
                    errors[name] = "required"
                continue
            problem = _check(f, value)
            if problem:
                errors[name] = problem
            else:
                out[name] = _convert(f, value)
        if errors:
            raise ValidationFailed(errors)
        return out


def _check(f: Field, v: Any) -> str | None:
    kinds: dict[str, Callable[[Any], bool]] = {
        "string": lambda x: isinstance(x, str),
        "date": lambda x: isinstance(x, str),
        "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
        "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
        "boolean": lambda x: isinstance(x, bool),
        "array": lambda x: isinstance(x, list),
        "object": lambda x: isinstance(x, dict),
    }
    if not kinds[f.kind](v):
        return f"expected {'a date (YYYY-MM-DD)' if f.kind == 'date' else 'a ' + f.kind}"
    if f.kind in ("string", "date") and "\x00" in v:
        return "contains a NUL character"
    if f.kind == "date":
        try:
            dt.date.fromisoformat(v)
        except ValueError:
            return "expected a date (YYYY-MM-DD)"
    if f.min_len is not None and len(v) < f.min_len:
        return f"at least {f.min_len} {'items' if f.kind == 'array' else 'characters'}"
    if f.max_len is not None and len(v) > f.max_len:
        return f"at most {f.max_len} {'items' if f.kind == 'array' else 'characters'}"
    if f.pattern and not re.fullmatch(f.pattern, v):
        return f"does not match {f.pattern}"
    if f.choices and v not in f.choices:
        return "one of " + ", ".join(f.choices)
    if f.minimum is not None and v < f.minimum:
        return f"at least {f.minimum:g}"
    if f.maximum is not None and v > f.maximum:
        return f"at most {f.maximum:g}"
    if f.items is not None:
        for i, item in enumerate(v):
            p = _check(f.items, item)
            if p:
                return f"item {i}: {p}"
    if f.check is not None:
        return f.check(v)
    return None


def _convert(f: Field, v: Any) -> Any:
    return dt.date.fromisoformat(v) if f.kind == "date" else v
