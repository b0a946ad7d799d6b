"""The HTTP room: the route table every domain (CRM, flows, agents, calls, webhooks, ...)
declares its routes in, the guard that checks the session and the roles on each request,
and the OpenAPI document built from the same declarations, so documentation and behaviour
cannot drift.

Sessions: ``Authorization: Bearer <token>``, or the browser app's cookie with the CSRF
header for changes (``ccorch.api.sessions``). Errors are JSON ``{"error", "message"}``:
401 without a valid session, 403 without the role (or CSRF value), 404, 409, 413, 415, 422
naming each bad field (``fields``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

import ccorch
from ccorch.api import sessions
from ccorch.api.http import error as _error
from ccorch.api.http import pool as _pool
from ccorch.api.http import request_now
from ccorch.api.validation import Body, ValidationFailed, model_schema, type_schema
from ccorch.crm import store
from ccorch.errors import RequestRefused

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "path"
    type: Any  # a type, annotated with its limits: Annotated[int, Field(ge=1, le=100)]
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    roles: tuple[str, ...] | None  # None: no session needed
    handler: Handler
    params: tuple[Param, ...] = ()
    body: type[Body] | None = None
    responses: dict[int, str] = field(default_factory=dict)
    # The largest request body taken (bigger: 413 before it is read). Sanic reads a body
    # before the handler checks the session, so anonymous callers can make us read this
    # much at most: small by default, large only where a document is uploaded.
    max_body: int = 64 * 1024


ANONYMOUS_MAX_BODY = 4 * 1024  # a login is a few hundred bytes


def _guard(route: Route) -> Handler:
    @functools.wraps(route.handler)
    async def guarded(request: Request, **kwargs: Any) -> HTTPResponse:
        if route.roles is not None:
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not token:  # a browser's session cookie: a change needs the CSRF header too
                token = request.cookies.get(sessions.SESSION_COOKIE, "")
                if (
                    token
                    and request.method not in sessions.SAFE_METHODS
                    and not sessions.csrf_ok(token, request.headers.get(sessions.CSRF_HEADER))
                ):
                    return _error(403, "csrf", f"send the CSRF value in {sessions.CSRF_HEADER}")
            if not token:
                return _error(401, "unauthorized", "log in first (Authorization: Bearer <token>)")
            async with _pool(request).connection() as conn:
                user = await store.session_user(conn, token, request_now(request))
            if user is None:
                return _error(401, "unauthorized", "session unknown or expired")
            if not user.roles & set(route.roles):
                return _error(
                    403, "forbidden", "this needs one of the roles: " + ", ".join(route.roles)
                )
            request.ctx.user, request.ctx.token = user, token
        if request.body and not _is_json(request.headers.get("content-type", "")):
            return _error(
                415,
                "unsupported_media_type",
                "send the body as JSON (Content-Type: application/json)",
            )
        try:
            return await route.handler(request, **kwargs)
        except ValidationFailed as e:
            return _error(422, "validation", "some fields are missing or invalid", fields=e.fields)
        except RequestRefused as e:
            return _error(e.status, e.code, e.message)

    return guarded


# Every room with routes: each module has ROUTES, a tuple of Route.
ROOMS = (
    "ccorch.crm.api",
    "ccorch.crm.orders",
    "ccorch.crm.utility_api",
    "ccorch.crm.scenarios",
    "ccorch.crm.workbench",
    "ccorch.ivr.api",
    "ccorch.acd.desk",
    "ccorch.calls.api",
    "ccorch.dialer.api",
    "ccorch.sms.api",
    "ccorch.email.api",
    "ccorch.supervision.alarms",
    "ccorch.supervision.lines",
    "ccorch.supervision.recording_search",
    "ccorch.supervision.report_api",
    "ccorch.webhooks",
)


def all_routes() -> tuple[Route, ...]:
    """Every room's routes, in the order of ``ROOMS``."""
    out: list[Route] = []
    for name in ROOMS:
        out.extend(importlib.import_module(name).ROUTES)
    return tuple(out)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def body_limits() -> dict[tuple[str, str], int]:
    """(method, route pattern without the leading slash, as Sanic names it) -> max body."""
    return {(r.method, r.path.lstrip("/")): r.max_body for r in all_routes()}


def blueprint() -> Blueprint:
    bp = Blueprint("api")
    for i, r in enumerate(all_routes()):
        bp.add_route(_guard(r), r.path, methods=[r.method], name=f"api_{i}")
    return bp


def _openapi_path(path: str) -> str:
    out = []
    for part in path.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[0] + "}"
        out.append(part)
    return "/".join(out)


def openapi(app: Sanic[Any, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for r in all_routes():
        op: dict[str, Any] = {"summary": r.summary, "responses": {}}
        params = [
            {"name": p.name, "in": p.where, "required": p.required, "schema": type_schema(p.type)}
            for p in r.params
        ]
        for part in r.path.split("/"):
            if part.startswith("<"):
                name, kind = part[1:-1].split(":")
                params.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer" if kind == "int" else "string"},
                    }
                )
        if params:
            op["parameters"] = params
        if r.body is not None:
            schema = model_schema(r.body)
            schemas.update(schema.pop("$defs", {}))
            schemas[r.body.__name__] = schema
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}
                    }
                },
            }
        ok = 201 if r.method == "POST" and 201 in r.responses else 200
        op["responses"][str(ok)] = {
            "description": r.responses.get(ok, "OK"),
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
        errors = {400: "bad request", 422: "invalid fields"}
        if r.roles is not None:
            op["security"] = [{"session": []}]
            errors |= {401: "no valid session", 403: "role missing"}
            op["description"] = "Roles: " + ", ".join(r.roles)
        for code, text in errors.items():
            op["responses"][str(code)] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        paths.setdefault(_openapi_path(r.path), {})[r.method.lower()] = op
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "fields": {"type": "object"},
        },
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ccorch", "version": ccorch.__version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"session": {"type": "http", "scheme": "bearer"}},
        },
    }
