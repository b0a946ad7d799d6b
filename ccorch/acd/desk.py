"""Operators as people, not only phones: log in to this shift's groups, Ready, Not ready with
a reason, log out; supervisors force a state (seed 004: 强制签出、示忙、示闲). Over REST:

- ``POST /api/agent/login`` ``{"queues": [...]}`` (default: all the operator's groups),
  ``POST /api/agent/state`` ``{"state": "ready" | "not_ready", "reason": "lunch"}``,
  ``POST /api/agent/logout``: the signed-in operator, through its CRM user's extension;
- ``GET /api/agents`` [supervisor, admin]: every operator's state, reason, groups, phone;
- ``PUT /api/agents/{extension}/state`` [supervisor, admin]: force ready, not ready (reason
  "supervisor") or logged out; audited with who did it. Not ready during a call applies
  after it (the ACD defers it).

Each change is stored (``agent_state_log``: state, reason, when, by whom) before it is
answered, and the current login in ``agent_sessions``, so a restart logs operators in
again (:func:`restore`). Each also goes on the live event stream.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from psycopg import AsyncConnection
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.acd import Reason
from ccorch.acd.service import AcdService
from ccorch.api.http import error as _error
from ccorch.api.http import json_body as _body
from ccorch.api.http import pool as _pool
from ccorch.api.routes import Route
from ccorch.api.validation import Field, Shape, ValidationFailed
from ccorch.crm import store

log = logging.getLogger(__name__)

# The reasons an operator may give (the seed's «На обед», «Перерыв», «Не готов»).
REASONS: dict[str, Reason] = {
    "lunch": Reason.LUNCH,
    "break": Reason.BREAK,
    "not_ready": Reason.NOT_READY,
    "training": Reason.TRAINING,
}
REASON_NAMES = {int(r): r.name.lower() for r in Reason}
OPERATORS = ("operator", "supervisor", "admin")
SUPERVISORS = ("supervisor", "admin")

LOGIN = Shape(
    "AgentLogin",
    {
        "queues": Field(
            "array",
            items=Field("string", min_len=1, max_len=100),
            description="the groups to work in this shift (default: all of the operator's)",
        )
    },
)
STATE = Shape(
    "AgentState",
    {
        "state": Field("string", required=True, choices=("ready", "not_ready")),
        "reason": Field("string", choices=tuple(REASONS)),
    },
)
FORCE = Shape(
    "AgentForce",
    {"state": Field("string", required=True, choices=("ready", "not_ready", "logged_out"))},
)


def _acd(request: Request) -> AcdService:
    acd: AcdService = request.app.ctx.acd
    return acd


async def _record(
    conn: AsyncConnection[Any],
    extension: str,
    state: str,
    reason: str | None,
    by: int | None,
    queues: list[str] | None = None,
) -> None:
    """The change in the log and the session row, in one transaction (before the answer)."""
    now = dt.datetime.now(dt.UTC)
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO agent_state_log (extension, user_id, state, reason, at, by_user_id)
               VALUES (%s, (SELECT id FROM users WHERE extension = %s), %s, %s, %s, %s)""",
            (extension, extension, state, reason, now, by),
        )
        if state == "logged_out":
            await conn.execute("DELETE FROM agent_sessions WHERE extension = %s", (extension,))
        elif queues is not None:
            await conn.execute(
                """INSERT INTO agent_sessions (extension, user_id, queues, state, reason, since)
                   VALUES (%s, (SELECT id FROM users WHERE extension = %s), %s, %s, %s, %s)
                   ON CONFLICT (extension) DO UPDATE SET queues = EXCLUDED.queues,
                     state = EXCLUDED.state, reason = EXCLUDED.reason, since = EXCLUDED.since""",
                (extension, extension, queues, "ready", None, now),
            )
        else:
            await conn.execute(
                "UPDATE agent_sessions SET state = %s, reason = %s, since = %s WHERE extension = %s",
                (state, reason, now, extension),
            )


def _publish(request: Request, kind: str, extension: str, **data: Any) -> None:
    request.app.ctx.events.publish(kind, {"agent": extension, **data}, agents={extension})


def describe(acd: AcdService, extension: str) -> dict[str, Any]:
    st = acd.agent_state(extension)
    state, detail = st if st is not None else ("logged_out", None)
    return {
        "extension": extension,
        "state": state,
        "reason": REASON_NAMES.get(detail) if state == "not_ready" and detail is not None else None,
        "queues": list(acd.working.get(extension, ())),
        "groups": list(acd.agents[extension].queues),
        "phone_registered": acd.registered(extension),
        "from_desktop": extension in acd.desk,
    }


async def login(request: Request) -> HTTPResponse:
    body = LOGIN.validate(_body(request) or {})
    acd = _acd(request)
    async with _pool(request).connection() as conn:
        ext = await store.user_extension(conn, request.ctx.user.id)
        if ext is None or ext not in acd.agents:
            return _error(409, "conflict", "this user has no operator extension in the queues")
        queues = list(body.get("queues") or acd.agents[ext].queues)
        try:
            acd.login(ext, queues)
        except ValueError as e:
            raise ValidationFailed({"queues": str(e)}) from None
        acd.desk.add(ext)
        await _record(conn, ext, "logged_in", None, request.ctx.user.id, queues)
    _publish(request, "agent.login", ext, queues=queues, by=request.ctx.user.login)
    return json(describe(acd, ext))


async def set_state(request: Request) -> HTTPResponse:
    body = STATE.validate(_body(request))
    acd = _acd(request)
    async with _pool(request).connection() as conn:
        ext = await store.user_extension(conn, request.ctx.user.id)
        if ext is None or ext not in acd.logged_in:
            return _error(409, "conflict", "log in first (POST /api/agent/login)")
        reason = body.get("reason", "not_ready") if body["state"] == "not_ready" else None
        return await _apply(request, conn, acd, ext, body["state"], reason, forced=False)


async def logout(request: Request) -> HTTPResponse:
    acd = _acd(request)
    async with _pool(request).connection() as conn:
        ext = await store.user_extension(conn, request.ctx.user.id)
        if ext is None or ext not in acd.logged_in:
            return _error(409, "conflict", "not logged in")
        return await _apply(request, conn, acd, ext, "logged_out", None, forced=False)


async def _apply(
    request: Request,
    conn: AsyncConnection[Any],
    acd: AcdService,
    ext: str,
    state: str,
    reason: str | None,
    *,
    forced: bool,
) -> HTTPResponse:
    try:
        if state == "ready":
            acd.set_ready(ext)
        elif state == "not_ready":
            code = Reason.SUPERVISOR if forced else REASONS[reason or "not_ready"]
            acd.set_not_ready(ext, int(code))
        else:
            acd.logout(ext)
    except Exception as e:  # the ACD refuses (e.g. ready while on a call): a conflict
        return _error(409, "conflict", f"{ext} cannot go {state} now: {e}")
    user = request.ctx.user
    await _record(conn, ext, state, "supervisor" if forced else reason, user.id)
    if forced:
        async with conn.transaction():
            await store.audit(conn, user.id, "force", "agent", ext, None, {"state": state})
    _publish(request, "agent.forced" if forced else "agent.set", ext, state=state, by=user.login)
    return json(describe(acd, ext))


async def agents(request: Request) -> HTTPResponse:
    acd = _acd(request)
    return json({"items": [describe(acd, ext) for ext in sorted(acd.agents)]})


async def queues(request: Request) -> HTTPResponse:
    """Every queue now (a supervisor); an operator: the queues it works in this shift."""
    acd = _acd(request)
    names = sorted(acd.queue_ids)
    if not request.ctx.user.roles & set(SUPERVISORS):
        async with _pool(request).connection() as conn:
            ext = await store.user_extension(conn, request.ctx.user.id)
        names = [q for q in names if ext is not None and q in acd.working.get(ext, ())]
    return json({"items": [acd.queue_snapshot(q) for q in names]})


async def force(request: Request, extension: str) -> HTTPResponse:
    body = FORCE.validate(_body(request))
    acd = _acd(request)
    if extension not in acd.agents:
        return _error(404, "not_found", f"no operator {extension}")
    if extension not in acd.logged_in:
        return _error(409, "conflict", f"{extension} is not logged in")
    async with _pool(request).connection() as conn:
        return await _apply(request, conn, acd, extension, body["state"], None, forced=True)


async def restore(acd: AcdService, conn: AsyncConnection[Any]) -> int:
    """At start: operators logged in before the restart are logged in again, in the state
    they were in. Returns how many."""
    cur = await conn.execute("SELECT extension, queues, state, reason FROM agent_sessions")
    n = 0
    for ext, queues, state, reason in await cur.fetchall():
        if ext not in acd.agents:
            continue
        try:
            acd.login(ext, [q for q in queues if q in acd.agents[ext].queues], ready=False)
        except ValueError as e:
            log.warning("agent not restored", extra={"agent": ext, "error": str(e)})
            continue
        acd.desk.add(ext)
        if state == "ready":
            acd.set_ready(ext)
        else:
            code = REASONS.get(reason or "", Reason.SUPERVISOR if reason else Reason.NOT_READY)
            acd.set_not_ready(ext, int(code))
        n += 1
    return n


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/agent/login",
        "Log in to this shift's groups (queues), Ready",
        OPERATORS,
        login,
        body=LOGIN,
        responses={409: "no operator extension"},
    ),
    Route(
        "POST",
        "/api/agent/state",
        "Ready, or Not ready with a reason (after the call in progress, if any)",
        OPERATORS,
        set_state,
        body=STATE,
        responses={409: "not logged in, or not allowed now"},
    ),
    Route("POST", "/api/agent/logout", "Log out", OPERATORS, logout),
    Route("GET", "/api/agents", "Every operator's state, reason and groups", SUPERVISORS, agents),
    Route(
        "GET",
        "/api/queues",
        "Queues now: waiting, ringing, oldest wait, agents by state, expected wait, service "
        "level (an operator: the queues it works in)",
        OPERATORS,
        queues,
    ),
    Route(
        "PUT",
        "/api/agents/<extension:str>/state",
        "Force an operator ready, not ready (reason supervisor) or logged out; audited",
        SUPERVISORS,
        force,
        body=FORCE,
        responses={404: "no such operator", 409: "not logged in"},
    ),
)
