"""Request bodies on pydantic: the API's own rules (blank = not given, NUL refused, dates,
messages people read) and the JSON Schema the OpenAPI document shows."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from ccorch.api.validation import (
    Body,
    Day,
    Id,
    OneOf,
    ValidationFailed,
    all_optional,
    anchored,
    model_schema,
    parse,
)


class Sample(Body):
    name: Annotated[str, Field(min_length=2, max_length=5)]
    code: Annotated[str, Field(pattern=anchored("[0-9]{4}"))] | None = None
    count: Annotated[int, Field(ge=1, le=10)] | None = None
    ratio: float | None = None
    on: bool | None = None
    day: Day | None = None
    kind: Literal["a", "b"] | None = None
    colour: Annotated[str, OneOf(("red", "green"))] | None = None
    tags: Annotated[list[Annotated[str, Field(max_length=3)]], Field(max_length=2)] | None = None
    parent_id: Id | None = None


def refused(body: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as e:
        parse(Sample, body, **kwargs)
    return e.value.fields


def test_a_good_body_gives_only_the_fields_sent_with_dates_as_dates() -> None:
    got = parse(Sample, {"name": "Nina", "day": "2026-12-06", "ratio": 2, "tags": ["x"]})
    assert got == {"name": "Nina", "day": dt.date(2026, 12, 6), "ratio": 2.0, "tags": ["x"]}


def test_every_bad_field_is_named_with_a_reason() -> None:
    fields = refused(
        {
            "code": "12345",
            "count": 11,
            "ratio": "2",
            "on": 1,
            "day": "2026-02-30",
            "kind": "c",
            "colour": "blue",
            "tags": ["x", "toolong"],
            "parent_id": 0,
            "extra": True,
        }
    )
    assert fields == {
        "name": "required",
        "code": "does not match [0-9]{4}",
        "count": "at most 10",
        "ratio": "expected a number",
        "on": "expected a boolean",
        "day": "expected a date (YYYY-MM-DD)",
        "kind": "one of a, b",
        "colour": "one of red, green",
        "tags": "item 1: at most 3 characters",
        "parent_id": "at least 1",
        "extra": "unknown field",
    }


def test_no_coercion_a_string_is_not_a_number_and_true_is_not_one() -> None:
    assert refused({"name": "Nina", "count": "5"}) == {"count": "expected an integer"}
    assert refused({"name": "Nina", "count": True}) == {"count": "expected an integer"}
    assert refused({"name": "Nina", "count": 2.0}) == {"count": "expected an integer"}


def test_blank_values_are_not_given_and_a_required_blank_is_required() -> None:
    assert refused({"name": "   ", "tags": []}) == {"name": "required"}
    assert parse(Sample, {"name": "Nina", "code": "", "tags": [], "count": None}) == {
        "name": "Nina"
    }


def test_the_caller_may_insist_on_more_fields() -> None:
    assert refused({"name": "Nina", "code": " "}, also_required=("code", "day")) == {
        "code": "required",
        "day": "required",
    }


def test_a_nul_character_anywhere_is_refused() -> None:
    assert refused({"name": "Ni\x00na"}) == {"name": "contains a NUL character"}
    assert refused({"name": "Nina", "tags": ["a", "\x00"]}) == {"tags": "contains a NUL character"}


def test_not_an_object() -> None:
    for body in ([], "x", 5, None):
        assert refused(body) == {"(body)": "expected a JSON object"}


def test_a_pattern_must_match_the_whole_value() -> None:
    assert refused({"name": "Nina", "code": "x1234"}) == {"code": "does not match [0-9]{4}"}
    assert refused({"name": "Nina", "code": "12345"}) == {"code": "does not match [0-9]{4}"}


def test_all_optional_keeps_every_rule_but_requires_nothing() -> None:
    change = all_optional(Sample, "SampleChange")
    assert parse(change, {"count": 3}) == {"count": 3}
    with pytest.raises(ValidationFailed) as e:
        parse(change, {"name": "x", "count": 0})
    assert e.value.fields == {"name": "at least 2 characters", "count": "at least 1"}
    assert "required" not in model_schema(change)


def test_the_schema_is_json_schema_of_the_same_rules() -> None:
    schema = model_schema(Sample)
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["name"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert props["code"]["pattern"] == "^(?:[0-9]{4})$"
    assert props["day"] == {"type": "string", "format": "date"}
    assert props["colour"] == {"type": "string", "enum": ["red", "green"]}
    assert props["count"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert props["tags"]["maxItems"] == 2 and props["tags"]["items"]["maxLength"] == 3
