"""Request bodies declared as pydantic models, checked so that one 422 names every bad
field, and the JSON Schema of the same declarations for the OpenAPI document.

A body model derives from :class:`Body` (unknown keys refused, no type coercion: a JSON
``"5"`` is not an integer). :func:`parse` checks a decoded JSON body against it and returns
the fields that were given, as a dict. The rules the whole API shares, which pydantic does
not have on its own:

- a blank string, an empty list or ``null`` counts as not given (so a required field sent
  as ``""`` is "required", and an optional one is left unchanged);
- no string anywhere in a body may hold a NUL character (PostgreSQL refuses them);
- a date is a ``YYYY-MM-DD`` string and arrives in the handler as ``datetime.date``;
- ``also_required`` names fields a particular caller insists on (the CRM's registration
  rules per service).

Messages are short and for people: "required", "unknown field", "at most 200 characters",
"one of in, out", "item 2: expected a string".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from ccorch.errors import CcorchError


class ValidationFailed(CcorchError):
    """The request names fields that are missing or invalid: ``fields`` maps each to why."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__(
            "invalid request: " + "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        )


class Body(BaseModel):
    """The base of every request body: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError("expected a date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date (YYYY-MM-DD)") from None


# A row's id (every table's ids start at 1).
Id = Annotated[int, Field(ge=1)]

# A calendar day sent as "YYYY-MM-DD" (JSON Schema: string, format date).
Day = Annotated[dt.date, BeforeValidator(_iso_day)]


class OneOf:
    """``Annotated[str, OneOf(choices)]``: one of a set of strings known when the module
    loads (a ``Literal`` needs them written out); refused as "one of a, b, c"."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.literal_schema(list(self.choices))


def anchored(pattern: str) -> str:
    """A regular expression that must match the whole value (pydantic's ``pattern``
    searches; ours have always meant the whole string)."""
    return rf"^(?:{pattern})$"


def parse(
    model: type[Body],
    body: Any,
    *,
    also_required: Sequence[str] = (),
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields of ``body`` that were given, checked against ``model``; raises
    :class:`ValidationFailed` naming each problem. ``context`` reaches the model's
    validators (the tenant's country for phone numbers)."""
    if not isinstance(body, dict):
        raise ValidationFailed({"(body)": "expected a JSON object"})
    errors: dict[str, str] = {}
    given: dict[str, Any] = {}
    for key, value in body.items():
        if _blank(value):
            continue
        if _has_nul(value):
            errors[str(key)] = "contains a NUL character"
            continue
        given[key] = value
    try:
        checked = model.model_validate(given, context=dict(context or {}))
    except ValidationError as e:
        for err in e.errors(include_url=False):
            name = str(err["loc"][0]) if err["loc"] else "(body)"
            errors.setdefault(name, _message(err))
        checked = None
    for name in also_required:
        if name not in given:
            errors.setdefault(name, "required")
    if errors:
        raise ValidationFailed(errors)
    assert checked is not None
    return checked.model_dump(exclude_unset=True)


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list) and not value)
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected a boolean",
    "list_type": "expected an array",
    "dict_type": "expected an object",
    "missing": "required",
    "extra_forbidden": "unknown field",
}


# A limit not met: the message, filled from the error's context.
_BOUNDS = {
    "string_too_short": "at least {min_length} characters",
    "string_too_long": "at most {max_length} characters",
    "too_short": "at least {min_length} items",
    "too_long": "at most {max_length} items",
    "greater_than_equal": "at least {ge:g}",
    "less_than_equal": "at most {le:g}",
}


def _message(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _EXPECTED:
        text = _EXPECTED[kind]
    elif kind in _BOUNDS:
        text = _BOUNDS[kind].format(**ctx)
    elif kind == "literal_error":
        text = "one of " + str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
    elif kind == "string_pattern_mismatch":
        pattern = str(ctx["pattern"])
        if pattern.startswith("^(?:") and pattern.endswith(")$"):
            pattern = pattern[4:-2]
        text = f"does not match {pattern}"
    elif kind in ("value_error", "assertion_error") and "error" in ctx:
        text = str(ctx["error"])
    else:
        text = str(err["msg"])
    items = [p for p in err["loc"][1:] if isinstance(p, int)]
    return f"item {items[0]}: {text}" if items else text


def all_optional(model: type[Body], name: str) -> type[Body]:
    """The same fields with none required: the body of a change to one row."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        typ: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[key] = (typ | None, info.__class__(default=None, description=info.description))
    return create_model(name, __base__=Body, **fields)


class _Schema(GenerateJsonSchema):
    """JSON Schema as the API reads: an optional field shows its own type (``null`` is
    taken as "not given" by :func:`parse`), without pydantic's generated titles."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            del out["default"]
        return out


REF_TEMPLATE = "#/components/schemas/{model}"


def model_schema(model: type[Body]) -> dict[str, Any]:
    """The JSON Schema of a body model (no model title; nested models under ``$defs``)."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, schema_generator=_Schema)
    schema.pop("title", None)
    return schema


def type_schema(typ: Any) -> dict[str, Any]:
    """The JSON Schema of a plain (annotated) type: a query parameter's."""
    return TypeAdapter(typ).json_schema(ref_template=REF_TEMPLATE, schema_generator=_Schema)
