"""What every CRM route handler shares: the request's database pool, its JSON body (a
malformed one is a 422 naming the body), and the JSON error answer."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.validation import ValidationFailed


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
