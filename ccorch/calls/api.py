"""Call control over REST and the WebSocket: the calls up now, and commands on one of them.

- ``GET /api/calls``: the calls in progress (a supervisor or admin sees all, an operator
  the calls ringing or connected to its extension);
- ``POST /api/calls/{id}/<command>``: ``hangup``, ``hold``, ``resume``, ``mute``
  (``{"on": true|false}``), ``dtmf`` (``{"digits": "12#"}``), ``transfer``
  (``{"kind": "extension"|"queue"|"flow"|"number", "to": "..."}``), ``consult``
  (``{"kind": "extension"|"number", "to": "..."}``), ``consult/complete``,
  ``consult/conference``, ``consult/cancel``, ``recording`` (``{"paused": true|false}``),
  ``monitor`` (supervisors: ``{"mode": "listen"|"whisper"|"barge"}``), ``monitor/stop``,
  ``disposition`` (``{"code": "...", "note": "..."}``, also after the call, in wrap-up).
- ``POST /api/calls/{id}/answer``: 409; our SIP phones are answered on the phone (they
  ring; auto-answer is the browser phone's).

Every command is also a WebSocket frame on ``/api/events``:
``{"id": 1, "command": "hold", "call": 12, ...the body's fields}``, answered by
``{"type": "reply", "id": 1, "status": 200, ...}``.

Commands act on the call itself (found by the node's number for it), never on a SIP or
media reference a client could name. An operator may act only on its own calls (403);
a call that has ended is 404; a call not in a state that allows the command, 409.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import Actor, actor_of, command_reply, json_body
from ccorch.api.http import error as _error
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Id, OneOf, ValidationFailed, parse
from ccorch.calls import cdr, commands
from ccorch.calls.commands import Refused
from ccorch.crm import store as crm_store
from ccorch.dialer import callbacks

OPERATORS = ("operator", "supervisor", "admin")
SEE_ALL = frozenset({"supervisor", "admin"})


def _agent_of(call: Any) -> str | None:
    """The operator a call is with: answered, or its phone ringing."""
    if call.agent:
        return str(call.agent)
    b = getattr(call, "b", None)
    return str(b.target) if b is not None and b.target else None


def _parties(call: Any) -> set[str]:
    """The operators in a call: its operator, a consulted or conferenced colleague."""
    out = {p for p in (_agent_of(call),) if p}
    for leg in (call.consult, call.third):
        if leg is not None and leg.target:
            out.add(str(leg.target))
    return out


@dataclass(frozen=True)
class CallRef:
    """A call in progress or recently ended, as far as records about it need: its number,
    the CDR's keys (Call-ID and arrival), and the numbers."""

    id: int
    sip_call_id: str
    arrived_at: dt.datetime
    ani: str
    dnis: str


def call_for(app: Any, actor: Actor, call_id: int) -> CallRef:
    """The call ``call_id`` if the actor may act on it (its own, or any for supervisors),
    in progress or among the recently ended; raises Refused (403, 404)."""
    ctl = app.ctx.calls
    call = _find(ctl, call_id)
    if call is not None and call.state != "ended":
        _check(call, actor)
        return CallRef(call.id, call.sip_call_id, call.arrived_at, call.ani, call.dnis)
    ended = ctl.ended.get(call_id)
    if ended is None:
        raise Refused(404, "not_found", f"no call {call_id} in progress or recently ended")
    if not actor.roles & SEE_ALL and actor.extension not in ended.agents:
        raise Refused(403, "forbidden", "an operator may act only on its own calls")
    return CallRef(call_id, ended.sip_call_id, ended.arrived_at, "", "")


def describe(call: Any) -> dict[str, Any]:
    return {
        "id": call.id,
        "ani": call.ani,
        "dnis": call.dnis,
        "state": call.state,
        "direction": call.direction,
        "agent": _agent_of(call),
        "queue": call.queue,
        "flow": call.flow,
        "customer_id": call.customer_id,
        "arrived_at": call.arrived_at.isoformat(),
        "on_hold": call.on_hold,
        "muted": call.muted,
        "recording": call.recording is not None,
        "recording_paused": bool(call.recording_gaps) and call.recording_gaps[-1][1] < 0,
        "consult": call.consult.target if call.consult is not None else None,
        "consult_answered": call.consult_room is not None,
        "conference": call.third.target if call.third is not None else None,
        "monitor": call.monitor.target if call.monitor is not None else None,
        "monitor_mode": call.monitor_mode if call.monitor is not None else None,
        "monitor_answered": call.monitor is not None and call.monitor.state == "confirmed",
        "disposition": call.disposition,
    }


def _find(ctl: Any, call_id: int) -> Any:
    return ctl.find(call_id)


def _check(call: Any, actor: Actor) -> None:
    if not actor.roles & SEE_ALL and (
        actor.extension is None or actor.extension not in _parties(call)
    ):
        raise Refused(403, "forbidden", "an operator may act only on its own calls")


# --- the commands (shared by REST and the WebSocket) -----------------------------------


class Mute(Body):
    on: bool


class Dtmf(Body):
    digits: Annotated[str, Field(min_length=1, max_length=32)]


class Transfer(Body):
    kind: Annotated[str, OneOf(commands.TRANSFER_KINDS)]
    to: Annotated[str, Field(min_length=1, max_length=100)]


class Consult(Body):
    kind: Literal["extension", "number"]
    to: Annotated[str, Field(min_length=1, max_length=100)]


class Monitor(Body):
    mode: Literal["listen", "whisper", "barge"]


class RecordingPause(Body):
    paused: bool


class Disposition(Body):
    code: Annotated[str, Field(min_length=1, max_length=40)]
    note: Annotated[str, Field(max_length=4000)] | None = None
    # "call back at": when the customer asked to be called (ISO 8601 with its offset), and
    # whether this operator makes the call (else anyone of the queue)
    callback_at: Annotated[dt.datetime, Field(strict=False)] | None = None
    personal: bool = False

    @model_validator(mode="after")
    def _callback(self) -> Disposition:
        at = self.callback_at
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("callback_at: give the offset (e.g. 2026-12-08T10:00:00+02:00)")
            now = dt.datetime.now(dt.UTC)
            # (a minute's field given as "now" is a callback due at once)
            if at < now - dt.timedelta(minutes=5):
                raise ValueError("callback_at: in the past")
            if at > now + CALLBACK_HORIZON:
                raise ValueError("callback_at: at most 90 days ahead")
        elif self.personal:
            raise ValueError("personal: only with callback_at")
        return self


CALLBACK_HORIZON = dt.timedelta(days=90)


class CallerIs(Body):
    customer_id: Id


Act = Callable[[Any, dict[str, Any], Actor], None]
Check = Callable[[Any, Actor, dict[str, Any]], Awaitable[None]]


async def _supervisors_only(app: Any, actor: Actor, fields: dict[str, Any]) -> None:
    if not actor.roles & SEE_ALL:
        raise Refused(403, "forbidden", "listening, whispering and barging are for supervisors")


async def _may_see_customer(app: Any, actor: Actor, fields: dict[str, Any]) -> None:
    """The customer a call is said to be about must be one the operator may see."""
    async with app.ctx.pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM customers WHERE id = %s", (fields["customer_id"],))
        user = crm_store.User(actor.user_id, actor.login, "", frozenset(actor.roles))
        if await cur.fetchone() is None or not await crm_store.can_see_customer(
            conn, user, fields["customer_id"]
        ):
            raise Refused(404, "not_found", f"no customer {fields['customer_id']}")


def _disposition(app: Any) -> Act:
    def act(call: Any, body: dict[str, Any], actor: Actor) -> None:
        commands.disposition(
            call, body["code"], body.get("note"), app.ctx.config.calls.dispositions
        )

    return act


@dataclass(frozen=True)
class Command:
    name: str  # the path after /api/calls/{id}/ and the WebSocket's "command"
    summary: str
    act: Callable[[Any], Act]  # the app -> what to do to the call
    body: type[Body] | None = None
    check: Check | None = None  # what must hold first (reads the database)


COMMANDS: tuple[Command, ...] = (
    Command(
        "hangup", "End the call for every party", lambda app: lambda c, b, a: c.end("api-hangup")
    ),
    Command(
        "hold",
        "Put the customer on hold: music on hold (re-INVITE sendonly towards the customer)",
        lambda app: lambda c, b, a: commands.hold(c, a.login),
    ),
    Command(
        "resume",
        "Take the customer off hold",
        lambda app: lambda c, b, a: commands.resume(c, a.login),
    ),
    Command(
        "mute",
        "Mute (or unmute) the operator's voice towards the customer",
        lambda app: lambda c, b, a: commands.mute(c, b["on"], a.login),
        Mute,
    ),
    Command(
        "dtmf",
        "Send DTMF tones towards the customer",
        lambda app: lambda c, b, a: commands.send_dtmf(c, b["digits"], a.login),
        Dtmf,
    ),
    Command(
        "transfer",
        "Blind transfer to an extension, a queue (keeping priority and wait), an IVR flow "
        "or an outside number; the operator is freed at once",
        lambda app: lambda c, b, a: commands.transfer(c, b["kind"], b["to"], a.login),
        Transfer,
    ),
    Command(
        "consult",
        "Hold the customer and call a colleague or an outside number",
        lambda app: lambda c, b, a: commands.consult(c, b["kind"], b["to"], a.login),
        Consult,
    ),
    Command(
        "consult/complete",
        "Hand the customer to the consulted party (attended transfer)",
        lambda app: lambda c, b, a: commands.complete_transfer(c, a.login),
    ),
    Command(
        "consult/conference",
        "Customer, operator and the consulted party in a three-way conference",
        lambda app: lambda c, b, a: commands.conference(c, a.login),
    ),
    Command(
        "consult/cancel",
        "Hang up the consulted party and return to the customer",
        lambda app: lambda c, b, a: commands.cancel_consult(c, a.login),
    ),
    Command(
        "monitor",
        "A supervisor joins on its own phone (it rings): listen (hears both, heard by"
        " nobody), whisper (heard by the operator only) or barge (heard by both); again with"
        " another mode to switch at once",
        lambda app: lambda c, b, a: commands.monitor(c, b["mode"], a.extension, a.login),
        Monitor,
        _supervisors_only,
    ),
    Command(
        "monitor/stop",
        "The supervisor's phone leaves the call",
        lambda app: lambda c, b, a: commands.monitor_stop(c, a.login),
        None,
        _supervisors_only,
    ),
    Command(
        "recording",
        "Pause or resume the recording (the gap is kept in the recording's index)",
        lambda app: lambda c, b, a: commands.pause_recording(c, b["paused"], a.login),
        RecordingPause,
    ),
    Command(
        "disposition",
        "The wrap-up code (calls.dispositions) and a note: on the CDR and the interaction",
        _disposition,
        Disposition,
    ),
    Command(
        "customer",
        "Say which customer the caller is (found or just registered): the call's record and"
        " interaction name them (event call.identified, by operator)",
        lambda app: lambda c, b, a: c.identified_by_operator(b["customer_id"]),
        CallerIs,
        _may_see_customer,
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}


async def run(app: Any, actor: Actor, name: str, call_id: int, body: Any) -> dict[str, Any]:
    """Carry out command ``name`` on call ``call_id``: the call as it is afterwards. Raises
    ``Refused`` (403, 404, 409) or ``ValidationFailed`` (422)."""
    command = BY_NAME.get(name)
    if command is None:
        raise Refused(404, "not_found", f"no command {name!r}")
    fields = parse(command.body, body if body is not None else {}) if command.body else {}
    ctl = app.ctx.calls
    call = _find(ctl, call_id)
    if name == "disposition" and (call is None or call.state == "ended"):
        return await _late_disposition(app, actor, call_id, fields)
    if call is None or call.state == "ended":
        raise Refused(404, "not_found", f"no call {call_id} in progress")
    if name == "disposition" and actor.extension in call.previous_agents:
        pass  # an operator who handed the call on gives its wrap-up code
    else:
        _check(call, actor)
    if command.check is not None:
        await command.check(app, actor, fields)
    command.act(app)(call, fields, actor)
    scheduled = None
    if name == "disposition" and fields.get("callback_at") is not None:
        scheduled = await callbacks.schedule(
            app.ctx.pool,
            getattr(app.ctx, "campaigns", None),
            _asked(fields, actor),
            sip_call_id=call.sip_call_id,
            attempt_id=call.campaign.attempt_id if call.campaign is not None else None,
            facts=callbacks.CallFacts(call.ani, call.queue, call.customer_id, call.case_id),
        )
    if name in AUDITED:  # a supervisor in someone's call: who, which call, how
        async with app.ctx.pool.connection() as conn:
            await crm_store.audit(
                conn,
                actor.user_id,
                name.replace("/", "_"),
                "call",
                call_id,
                None,
                {"mode": fields.get("mode"), "operator": call.agent, "queue": call.queue},
            )
    if name == "hangup":
        return {"id": call_id, "ended": True}
    return describe(call) | ({"callback": scheduled} if scheduled else {})


def _asked(fields: dict[str, Any], actor: Actor) -> callbacks.CallbackAsked:
    if fields.get("personal") and actor.extension is None:
        raise Refused(409, "conflict", "a personal callback needs an operator's extension")
    return callbacks.CallbackAsked(
        fields["callback_at"], actor.extension if fields.get("personal") else None
    )


AUDITED = ("monitor", "monitor/stop")


async def _late_disposition(
    app: Any, actor: Actor, call_id: int, fields: dict[str, Any]
) -> dict[str, Any]:
    """A disposition in wrap-up, after the call ended: onto its CDR and interaction."""
    ended = app.ctx.calls.ended.get(call_id)
    if ended is None:
        raise Refused(404, "not_found", f"no call {call_id} in progress or recently ended")
    if not actor.roles & SEE_ALL and (actor.extension not in ended.agents):
        raise Refused(403, "forbidden", "an operator may act only on its own calls")
    allowed = app.ctx.config.calls.dispositions
    if fields["code"] not in allowed:
        raise Refused(400, "bad_request", f"disposition: one of {', '.join(allowed)}")
    note = fields.get("note")
    for _ in range(30):  # the CDR is committed within moments of the end (3 s at most)
        if await cdr.set_disposition(
            app.ctx.pool, ended.sip_call_id, ended.arrived_at, fields["code"], note
        ):
            async with app.ctx.pool.connection() as conn:  # a campaign's attempt keeps it too
                await conn.execute(
                    "UPDATE campaign_attempts SET disposition = %s WHERE sip_call_id = %s",
                    (fields["code"], ended.sip_call_id),
                )
            manager = getattr(app.ctx, "campaigns", None)
            if manager is not None:
                manager.disposition(ended.sip_call_id, fields["code"])
            reply = {"id": call_id, "state": "ended", "disposition": fields["code"]}
            if fields.get("callback_at") is not None:
                reply["callback"] = await callbacks.schedule(
                    app.ctx.pool, manager, _asked(fields, actor), sip_call_id=ended.sip_call_id
                )
            return reply
        await asyncio.sleep(0.1)
    raise Refused(409, "conflict", "the call's record is not written yet: try again")


# --- REST --------------------------------------------------------------------------------


async def list_calls(request: Request) -> HTTPResponse:
    ctl = request.app.ctx.calls
    calls = [c for c in list(ctl.calls.values()) if c.state != "ended"]
    actor = await actor_of(request)
    if not actor.roles & SEE_ALL:
        calls = [c for c in calls if actor.extension is not None and actor.extension in _parties(c)]
    return json({"items": [describe(c) for c in sorted(calls, key=lambda c: c.id)]})


def _rest(name: str) -> Callable[..., Coroutine[Any, Any, HTTPResponse]]:
    async def handler(request: Request, call_id: int) -> HTTPResponse:
        body = json_body(request) if request.body else None
        try:
            return json(await run(request.app, await actor_of(request), name, call_id, body))
        except Refused as e:
            return _error(e.status, e.code, e.message)

    handler.__name__ = f"call_{name.replace('/', '_')}"
    return handler


class Originate(Body):
    number: Annotated[str, Field(min_length=3, max_length=21)]
    extension: (
        Annotated[
            str, Field(max_length=20, description="the operator to connect (a supervisor's choice)")
        ]
        | None
    ) = None


async def originate(request: Request) -> HTTPResponse:
    """Click-to-dial: ring the operator's phone, then call the number (outgoing)."""
    body = parse(Originate, json_body(request))
    actor = await actor_of(request)
    number = body["number"].replace(" ", "")
    if not number.lstrip("+").isdigit():
        raise ValidationFailed({"number": "digits, + allowed in front"})
    extension = body.get("extension") or actor.extension
    if extension is None:
        return _error(409, "conflict", "this user has no operator extension")
    if extension != actor.extension and not actor.roles & SEE_ALL:
        return _error(403, "forbidden", "an operator dials from its own extension")
    ctl = request.app.ctx.calls
    svc = ctl.service
    if extension not in svc.accounts:
        return _error(404, "not_found", f"no extension {extension}")
    if not svc.registrar.lookup(svc.now(), extension):
        return _error(409, "conflict", f"extension {extension}'s phone is not registered")
    trunk = next((t for t in svc.trunks if t.outbound and t.up is not False), None)
    if trunk is None:
        return _error(409, "conflict", "no outbound trunk is up")
    if svc.call_limits.room(svc.now(), trunk.limit_key, trunk.limit) == 0:
        return _error(409, "conflict", f"trunk {trunk.name} is at its call limit; try again")
    call = ctl.originate(extension, number, trunk)
    return json(describe(call), status=201)


async def answer(request: Request, call_id: int) -> HTTPResponse:
    call = _find(request.app.ctx.calls, call_id)
    if call is None or call.state == "ended":
        return _error(404, "not_found", f"no call {call_id} in progress")
    try:
        _check(call, await actor_of(request))
    except Refused as e:
        return _error(e.status, e.code, e.message)
    return _error(
        409, "conflict", "a SIP phone is answered on the phone (auto-answer: the browser phone)"
    )


_RESPONSES = {
    403: "another operator's call",
    404: "no such call in progress",
    409: "not allowed in the call's state",
}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/calls", "Calls in progress (an operator: its own)", OPERATORS, list_calls),
    Route(
        "POST",
        "/api/calls",
        "Click-to-dial: ring the operator's phone, then call the number through the trunk",
        OPERATORS,
        originate,
        body=Originate,
        responses={403: "another operator's extension", 409: "phone or trunk unavailable"},
    ),
    Route(
        "POST",
        "/api/calls/<call_id:int>/answer",
        "Answer a ringing call from the desktop (409 for SIP phones)",
        OPERATORS,
        answer,
        responses=_RESPONSES,
    ),
    *(
        Route(
            "POST",
            f"/api/calls/<call_id:int>/{c.name}",
            c.summary,
            OPERATORS,
            _rest(c.name),
            body=c.body,
            responses=_RESPONSES,
        )
        for c in COMMANDS
    ),
)


# --- the WebSocket's command frames -----------------------------------------------------


async def ws_command(app: Any, actor: Actor, frame: dict[str, Any]) -> dict[str, Any]:
    """One ``{"id", "command", "call", ...}`` frame: its reply frame."""
    ref = frame.get("id")
    name = frame.get("command")
    call_id = frame.get("call")
    if not isinstance(name, str) or not isinstance(call_id, int):
        return {"type": "reply", "id": ref, "status": 400, "error": "bad_request",
                "message": "a command frame has command (string) and call (integer)"}  # fmt: skip
    body = {k: v for k, v in frame.items() if k not in ("id", "command", "call")}
    return await command_reply(ref, "call", run(app, actor, name, call_id, body))
