"""Operators as people, not only phones: log in to this shift's groups, Ready, Not ready with
a reason, wrap-up ended early or extended, log out; supervisors force a state (seed 004:
强制签出、示忙、示闲). Over REST:

- ``GET /api/agent``: the signed-in operator's state, groups and the Not ready reasons it
  may give (``[acd] not_ready_reasons``);
- ``POST /api/agent/login`` ``{"queues": [...]}`` (default: all the operator's groups),
  ``POST /api/agent/state`` ``{"state": "ready" | "not_ready", "reason": "lunch"}``,
  ``POST /api/agent/wrap_up`` ``{"action": "end" | "extend"}``,
  ``POST /api/agent/logout``: the signed-in operator, through its CRM user's extension;
- ``GET /api/agents`` [supervisor, admin]: every operator's state, reason, groups, phone;
- ``PUT /api/agents/{extension}/state`` [supervisor, admin]: force ready, not ready (reason
  "supervisor") or logged out; audited with who did it. Not ready during a call applies
  after it (the ACD defers it).

The same operations are WebSocket commands on ``/api/events``: ``{"id": 1, "command":
"agent.login" | "agent.state" | "agent.wrap_up" | "agent.logout" | "agent.me", ...the body's
fields}`` and ``{"id": 2, "command": "agent.force", "agent": "7001", "state": ...}``,
answered by ``{"type": "reply", "id": 1, "status": 200, "agent": {...}}``.

Each change is stored (``agent_state_log``: state, reason, when, by whom), and the current
login in ``agent_sessions``, so a restart logs operators in again (:func:`restore`). Each
also goes on the live event stream. The time spent in each state is in ``agent_state_time``
(:mod:`ccorch.acd.state_time`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.acd import Reason
from ccorch.acd.service import AcdService
from ccorch.api.http import Actor, actor_of, command_reply, json_body
from ccorch.api.routes import Route
from ccorch.api.validation import Body, ValidationFailed, parse
from ccorch.crm import store
from ccorch.errors import RequestRefused

log = logging.getLogger(__name__)

OPERATORS = ("operator", "supervisor", "admin")
SUPERVISORS = ("supervisor", "admin")


class AgentLogin(Body):
    queues: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, description="the groups to work in this shift (default: all of the operator's)"
    )


class AgentState(Body):
    state: Literal["ready", "not_ready"]
    reason: (
        Annotated[
            str,
            Field(
                max_length=40,
                description="Not ready's reason: one of the center's (GET /api/agent lists them)",
            ),
        ]
        | None
    ) = None


class AgentWrapUp(Body):
    action: Literal["end", "extend"] = Field(
        description="end: done now (Ready, or a Not ready asked during the call); "
        "extend: more time, once per call"
    )


class AgentForce(Body):
    state: Literal["ready", "not_ready", "logged_out"]


def _acd(app: Any) -> AcdService:
    acd: AcdService = app.ctx.acd
    return acd


def _pool(app: Any) -> AsyncConnectionPool:
    p: AsyncConnectionPool = app.ctx.pool
    return p


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


def _publish(app: Any, kind: str, extension: str, **data: Any) -> None:
    app.ctx.events.publish(kind, {"agent": extension, **data}, agents={extension})


def state_of(acd: AcdService, extension: str) -> tuple[str, str | None]:
    """An operator's state now and, when Not ready, the reason's name."""
    st = acd.agent_state(extension) if extension in acd.agents else None
    state, detail = st if st is not None else ("logged_out", None)
    return state, acd.reason_name(detail) if state == "not_ready" else None


def describe(acd: AcdService, extension: str) -> dict[str, Any]:
    state, reason = state_of(acd, extension)
    return {
        "extension": extension,
        "state": state,
        "reason": reason,
        "queues": list(acd.working.get(extension, ())),
        "groups": list(acd.agents[extension].queues),
        "phone_registered": acd.registered(extension),
        "from_desktop": extension in acd.desk,
    }


def _operator(acd: AcdService, actor: Actor, *, logged_in: bool = True) -> str:
    """The acting user's extension, refused when it is no operator (or not logged in)."""
    ext = actor.extension
    if ext is None or ext not in acd.agents:
        raise RequestRefused(409, "this user has no operator extension in the queues")
    if logged_in and ext not in acd.logged_in:
        raise RequestRefused(409, "log in first (POST /api/agent/login)")
    return ext


# --- the operations, shared by REST and the WebSocket -----------------------------------


async def me(app: Any, actor: Actor, body: Any = None) -> dict[str, Any]:
    """The operator's own state, the reasons it may give for Not ready and the wrap-up codes
    it may give a call."""
    acd = _acd(app)
    ext = _operator(acd, actor, logged_in=False)
    return {
        **describe(acd, ext),
        "reasons": list(acd.reasons),
        "dispositions": list(app.ctx.config.calls.dispositions),
        "since": _since(app, ext),
    }


def _since(app: Any, ext: str) -> str | None:
    """When the operator's current state began (ISO 8601), as its time is counted."""
    state_time = getattr(app.ctx, "state_time", None)
    stretch = state_time.open.get(ext) if state_time is not None else None
    return stretch[2].isoformat() if stretch is not None else None


async def login(app: Any, actor: Actor, body: Any) -> dict[str, Any]:
    fields = parse(AgentLogin, body or {})
    acd = _acd(app)
    ext = _operator(acd, actor, logged_in=False)
    queues = list(fields.get("queues") or acd.agents[ext].queues)
    try:
        acd.login(ext, queues)
    except ValueError as e:
        raise ValidationFailed({"queues": str(e)}) from None
    acd.desk.add(ext)
    async with _pool(app).connection() as conn:
        await _record(conn, ext, "logged_in", None, actor.user_id, queues)
    _publish(app, "agent.login", ext, queues=queues, by=actor.login)
    return describe(acd, ext)


async def set_state(app: Any, actor: Actor, body: Any) -> dict[str, Any]:
    fields = parse(AgentState, body)
    acd = _acd(app)
    ext = _operator(acd, actor)
    reason = None
    if fields["state"] == "not_ready":
        reason = fields.get("reason", "not_ready" if "not_ready" in acd.reasons else None)
        if reason not in acd.reasons:
            raise ValidationFailed({"reason": "one of " + ", ".join(acd.reasons)})
    return await _apply(app, actor, ext, fields["state"], reason, forced=False)


async def wrap_up(app: Any, actor: Actor, body: Any) -> dict[str, Any]:
    """After a call: end the wrap-up now (Ready, or the Not ready asked during the call),
    or extend it once."""
    fields = parse(AgentWrapUp, body)
    acd = _acd(app)
    ext = _operator(acd, actor)
    st = acd.agent_state(ext)
    if st is None or st[0] != "wrap_up":
        raise RequestRefused(409, f"{ext} is not in wrap-up")
    if fields["action"] == "end":
        acd.end_wrap_up(ext)  # a Not ready asked for during the call applies now
        after = acd.agent_state(ext)
        # Ready (perhaps already offered the next call), or the pending Not ready
        state = "not_ready" if after is not None and after[0] == "not_ready" else "ready"
        reason = acd.reason_name(after[1]) if after is not None and state == "not_ready" else None
        async with _pool(app).connection() as conn:
            await _record(conn, ext, state, reason, actor.user_id)
        _publish(app, "agent.wrap_up_ended", ext, state=state, by=actor.login)
        return describe(acd, ext)
    try:
        left = acd.extend_wrap_up(ext)
    except Exception as e:  # the ACD refuses a second extension
        raise RequestRefused(409, f"{ext}: {e}") from None
    _publish(app, "agent.wrap_up_extended", ext, seconds_left=left, by=actor.login)
    return {**describe(acd, ext), "wrap_up_seconds_left": left}


async def logout(app: Any, actor: Actor, body: Any = None) -> dict[str, Any]:
    ext = _operator(_acd(app), actor)
    return await _apply(app, actor, ext, "logged_out", None, forced=False)


async def force(app: Any, actor: Actor, extension: str, body: Any) -> dict[str, Any]:
    fields = parse(AgentForce, body)
    if not actor.roles & set(SUPERVISORS):
        raise RequestRefused(403, "a supervisor's command")
    acd = _acd(app)
    if extension not in acd.agents:
        raise RequestRefused(404, f"no operator {extension}")
    if extension not in acd.logged_in:
        raise RequestRefused(409, f"{extension} is not logged in")
    return await _apply(app, actor, extension, fields["state"], None, forced=True)


async def _apply(
    app: Any, actor: Actor, ext: str, state: str, reason: str | None, *, forced: bool
) -> dict[str, Any]:
    acd = _acd(app)
    try:
        if state == "ready":
            acd.set_ready(ext)
        elif state == "not_ready":
            acd.set_not_ready(ext, int(Reason.SUPERVISOR) if forced else acd.reasons[reason or ""])
        else:
            acd.logout(ext)
    except Exception as e:  # the ACD refuses (e.g. log out while on a call): a conflict
        raise RequestRefused(409, f"{ext} cannot go {state} now: {e}") from None
    async with _pool(app).connection() as conn:
        await _record(conn, ext, state, "supervisor" if forced else reason, actor.user_id)
        if forced:
            async with conn.transaction():
                await store.audit(
                    conn, actor.user_id, "force", "agent", ext, None, {"state": state}
                )
    _publish(app, "agent.forced" if forced else "agent.set", ext, state=state, by=actor.login)
    return describe(acd, ext)


# --- REST --------------------------------------------------------------------------------


def _rest(
    op: Callable[[Any, Actor, Any], Awaitable[dict[str, Any]]],
) -> Callable[[Request], Coroutine[Any, Any, HTTPResponse]]:
    async def handler(request: Request) -> HTTPResponse:
        body = json_body(request) if request.body else None
        return json(await op(request.app, await actor_of(request), body))

    handler.__name__ = f"agent_{op.__name__}"
    return handler


async def force_rest(request: Request, extension: str) -> HTTPResponse:
    body = json_body(request) if request.body else None
    return json(await force(request.app, await actor_of(request), extension, body))


async def agents(request: Request) -> HTTPResponse:
    """Every operator (the supervisor's grid): state and reason since when, groups, phone,
    and the person's name."""
    acd = _acd(request.app)
    async with _pool(request.app).connection() as conn:
        cur = await conn.execute(
            "SELECT extension, full_name FROM users WHERE extension = ANY(%s)", (list(acd.agents),)
        )
        names = {str(ext): str(name) for ext, name in await cur.fetchall()}
    return json(
        {
            "items": [
                {
                    **describe(acd, ext),
                    "name": names.get(ext, ""),
                    "since": _since(request.app, ext),
                }
                for ext in sorted(acd.agents)
            ]
        }
    )


async def directory(request: Request) -> HTTPResponse:
    """Where a call can be transferred: the operators (name, extension, state now), the
    queues and the IVR flows. Every signed-in operator may read it (the desktop's transfer
    dialog); it holds no customer data."""
    acd = _acd(request.app)
    async with _pool(request.app).connection() as conn:
        cur = await conn.execute(
            "SELECT extension, full_name FROM users WHERE active AND extension IS NOT NULL"
            " ORDER BY extension"
        )
        people = {str(ext): str(name) for ext, name in await cur.fetchall()}
    operators = []
    for ext in sorted(set(acd.agents) | set(people)):
        state, reason = state_of(acd, ext)
        operators.append(
            {
                "extension": ext,
                "name": people.get(ext, ""),
                "state": state,
                "reason": reason,
                "queues": sorted(acd.working.get(ext, ())),
            }
        )
    flows = getattr(request.app.ctx, "flows", None)
    return json(
        {
            "operators": operators,
            "queues": sorted(acd.queue_ids),
            "flows": sorted(flows.by_name) if flows is not None else [],
        }
    )


async def queues(request: Request) -> HTTPResponse:
    """Every queue now (a supervisor); an operator: the queues it works in this shift."""
    acd = _acd(request.app)
    names = sorted(acd.queue_ids)
    if not request.ctx.user.roles & set(SUPERVISORS):
        ext = (await actor_of(request)).extension
        names = [q for q in names if ext is not None and q in acd.working.get(ext, ())]
    return json({"items": [acd.queue_snapshot(q) for q in names]})


# --- the WebSocket -----------------------------------------------------------------------

WS_COMMANDS: dict[str, Callable[[Any, Actor, Any], Awaitable[dict[str, Any]]]] = {
    "agent.me": me,
    "agent.login": login,
    "agent.state": set_state,
    "agent.wrap_up": wrap_up,
    "agent.logout": logout,
}


async def ws_command(app: Any, actor: Actor, frame: dict[str, Any]) -> dict[str, Any]:
    """One ``{"id", "command": "agent.…", ...}`` frame: its reply frame. ``agent.force``
    names the operator in ``agent``."""
    body = {k: v for k, v in frame.items() if k not in ("id", "command", "agent")}
    return await command_reply(frame.get("id"), "agent", _ws_run(app, actor, frame, body))


async def _ws_run(
    app: Any, actor: Actor, frame: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    name = frame.get("command")
    if name == "agent.force":
        target = frame.get("agent")
        if not isinstance(target, str):
            raise RequestRefused(400, "agent.force names the operator: agent (a string)")
        return await force(app, actor, target, body)
    if not isinstance(name, str) or name not in WS_COMMANDS:
        raise RequestRefused(400, f"no command {name!r}")
    if name != "agent.me" and not actor.roles & set(OPERATORS):
        raise RequestRefused(403, "an operator's command")
    return await WS_COMMANDS[name](app, actor, body or None)


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
            code = acd.reasons.get(reason or "")
            if code is None:  # "supervisor", or a reason the configuration no longer has
                code = int(Reason.SUPERVISOR) if reason == "supervisor" else int(Reason.LOGIN)
            acd.set_not_ready(ext, code)
        n += 1
    return n


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/agent",
        "The signed-in operator's state, groups and the Not ready reasons it may give",
        OPERATORS,
        _rest(me),
        responses={409: "no operator extension"},
    ),
    Route(
        "POST",
        "/api/agent/login",
        "Log in to this shift's groups (queues), Ready",
        OPERATORS,
        _rest(login),
        body=AgentLogin,
        responses={409: "no operator extension"},
    ),
    Route(
        "POST",
        "/api/agent/state",
        "Ready, or Not ready with a reason (after the call in progress, if any)",
        OPERATORS,
        _rest(set_state),
        body=AgentState,
        responses={409: "not logged in, or not allowed now"},
    ),
    Route(
        "POST",
        "/api/agent/wrap_up",
        "After a call: end the wrap-up now or extend it (once per call)",
        OPERATORS,
        _rest(wrap_up),
        body=AgentWrapUp,
        responses={409: "not in wrap-up, or extended already"},
    ),
    Route(
        "POST",
        "/api/agent/logout",
        "Log out",
        OPERATORS,
        _rest(logout),
        responses={409: "not logged in, or on a call"},
    ),
    Route("GET", "/api/agents", "Every operator's state, reason and groups", SUPERVISORS, agents),
    Route(
        "GET",
        "/api/directory",
        "Transfer targets: operators (name, extension, state), queues and IVR flows",
        OPERATORS,
        directory,
    ),
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
        force_rest,
        body=AgentForce,
        responses={404: "no such operator", 409: "not logged in"},
    ),
)
