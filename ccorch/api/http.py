"""What every route handler shares: the request's database pool, its JSON body (a
malformed one is a 422 naming the body), the JSON error answer, and who is acting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.validation import ValidationFailed
from ccorch.errors import RequestRefused


def request_now(request: Request) -> dt.datetime:
    """The node's clock (``app.ctx.clock``: tests may set it), for a request's work."""
    now: dt.datetime = request.app.ctx.clock()
    return now


def pool(request: Request) -> AsyncConnectionPool:
    p: AsyncConnectionPool = request.app.ctx.pool
    return p


def error(status: int, error: str, message: str, **extra: Any) -> HTTPResponse:
    return json({"error": error, "message": message, **extra}, status=status)


def json_body(request: Request) -> Any:
    try:
        return request.json
    except Exception:  # Sanic raises its own error type for malformed JSON
        raise ValidationFailed({"(body)": "malformed JSON"}) from None


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter in [lo, hi]; ``default`` when absent; else 422 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ValidationFailed({name: "expected an integer"}) from None
    if not lo <= v <= hi:
        raise ValidationFailed({name: f"from {lo} to {hi}"})
    return v


@dataclass(frozen=True)
class Actor:
    """Who sends a command (over REST or the WebSocket): the user, its roles and its
    operator extension (if any)."""

    user_id: int
    login: str
    roles: frozenset[str]
    extension: str | None


async def actor_of(request: Request) -> Actor:
    from ccorch.crm import store  # the users live in the CRM's tables

    user = request.ctx.user
    async with pool(request).connection() as conn:
        ext = await store.user_extension(conn, user.id)
    return Actor(user.id, user.login, frozenset(user.roles), ext)


async def command_reply(ref: Any, key: str, work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A WebSocket command's reply frame: ``{"type": "reply", "id", "status": 200, key:
    result}``, or the refusal with the status and error the REST route would answer."""
    try:
        result = await work
    except RequestRefused as e:
        return {"type": "reply", "id": ref, "status": e.status, "error": e.code,
                "message": e.message}  # fmt: skip
    except ValidationFailed as e:
        return {"type": "reply", "id": ref, "status": 422, "error": "validation",
                "fields": e.fields}  # fmt: skip
    return {"type": "reply", "id": ref, "status": 200, key: result}


def iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """A database row for JSON: its timestamps as ISO 8601 text."""
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
