"""Call control over REST: the calls up now, and commands on one of them.

- ``GET /api/calls``: the calls in progress (a supervisor or admin sees all, an operator
  the calls ringing or connected to its extension);
- ``POST /api/calls/{id}/hangup``: end the call for every party (the caller gets BYE, or
  487 if not yet answered; the operator's phone BYE or CANCEL); its CDR says
  ``api-hangup``. An operator may end only its own calls (403 otherwise); a call that has
  ended already is 404.

Commands act on the call itself (found by the node's number for it), never on a SIP or
media reference a client could name.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.crm import store
from ccorch.crm.api import Route
from ccorch.crm.http import error as _error
from ccorch.crm.http import pool as _pool

OPERATORS = ("operator", "supervisor", "admin")
SEE_ALL = {"supervisor", "admin"}


def _controller(request: Request) -> Any:
    return request.app.ctx.calls


def _agent_of(call: Any) -> str | None:
    """The operator a call is with: answered, or its phone ringing."""
    if call.agent:
        return str(call.agent)
    b = getattr(call, "b", None)
    return str(b.target) if b is not None and b.target else None


def _describe(call: Any) -> dict[str, Any]:
    return {
        "id": call.id,
        "ani": call.ani,
        "dnis": call.dnis,
        "state": call.state,
        "agent": _agent_of(call),
        "queue": call.queue,
        "flow": call.flow,
        "customer_id": call.customer_id,
        "arrived_at": call.arrived_at.isoformat(),
    }


async def _extension(request: Request) -> str | None:
    async with _pool(request).connection() as conn:
        return await store.user_extension(conn, request.ctx.user.id)


async def list_calls(request: Request) -> HTTPResponse:
    ctl = _controller(request)
    calls = [c for c in list(ctl.calls.values()) if c.state != "ended"]
    if not request.ctx.user.roles & SEE_ALL:
        ext = await _extension(request)
        calls = [c for c in calls if ext is not None and _agent_of(c) == ext]
    return json({"items": [_describe(c) for c in sorted(calls, key=lambda c: c.id)]})


async def hangup(request: Request, call_id: int) -> HTTPResponse:
    ctl = _controller(request)
    call = next((c for c in list(ctl.calls.values()) if c.id == call_id), None)
    if call is None or call.state == "ended":
        return _error(404, "not_found", f"no call {call_id} in progress")
    if not request.ctx.user.roles & SEE_ALL:
        ext = await _extension(request)
        if ext is None or _agent_of(call) != ext:
            return _error(403, "forbidden", "an operator may end only its own calls")
    call.end("api-hangup")
    return json({"id": call_id, "ended": True})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/calls", "Calls in progress (an operator: its own)", OPERATORS, list_calls),
    Route(
        "POST",
        "/api/calls/<call_id:int>/hangup",
        "End the call for every party (an operator: its own calls)",
        OPERATORS,
        hangup,
        responses={403: "another operator's call", 404: "no such call in progress"},
    ),
)
