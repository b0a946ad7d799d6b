"""A flow tried without a call: the flow editor's simulator.

The sans-IO interpreter walks the flow as a caller from ``ani`` who presses ``keys`` (in
order, each as soon as the flow listens; ``t`` lets the flow's timeout pass instead of a
key; at a ``recognize`` node the keys are typed, and ``t`` is speech not understood).
Prompts are reported as the text they would say, filled with the variables; lookups
read the real CRM and URLs; a PIN is checked without counting a failure; a voicemail, a
callback request, a transfer or a queue is reported as what would happen, and the walk
ends there; a meter reading is checked, not stored. Nothing is written and no call is
placed. The walk stops where the flow waits
for a key that was not given, so the editor sends the keys so far and shows where the
caller is now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ccorch.crm import store
from ccorch.ivr import utility_io
from ccorch.ivr.flow import Flow
from ccorch.ivr.interpreter import (
    Action,
    Authorize,
    CheckOutage,
    Enqueue,
    Hangup,
    LeaveQueue,
    Listen,
    Lookup,
    Play,
    RecordVoicemail,
    RequestCallback,
    Session,
    StopListening,
    StopPrompts,
    StopVoicemail,
    SubmitReading,
    Transfer,
    Visited,
)
from ccorch.ivr.runner import authorize, fetch

MAX_STEPS = 500  # actions in one walk (a flow looping on itself)
TIMEOUT_KEY = "t"


@dataclass
class Walk:
    steps: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    keys_used: int = 0


async def walk(
    flow: Flow,
    *,
    ani: str,
    dnis: str,
    keys: str,
    pool: AsyncConnectionPool[Any] | None,
    clock: Callable[[], dt.datetime],
    country: str = "380",
) -> dict[str, Any]:
    """Walk ``flow`` as the caller ``ani`` pressing ``keys``; the path, what was said, the
    variables and where it ended (or waits). The caller is identified by ANI as a call
    is (one match: customer_id, customer_name and segment are set)."""
    variables: dict[str, Any] = {"ani": ani, "dnis": dnis}
    if pool is not None and ani:
        async with pool.connection() as conn:
            matches = await store.identify_by_ani(conn, ani, country)
        if len(matches) == 1:
            m = matches[0]
            variables |= {"customer_id": m.customer_id, "customer_name": m.name,
                          "segment": m.segment or ""}  # fmt: skip
    session = Session(flow, vars=variables, clock=clock)
    w = Walk()
    now = 0.0
    pending = list(session.start(now))
    while len(w.steps) < MAX_STEPS and not w.outcome:
        if pending:
            more = await _do(session, pending.pop(0), w, pool, now, clock)
            pending.extend(more or ())
            continue
        # the flow listens now: the next key, or its timeout, or the walk rests here
        if session.phase == "prompting":
            pending.extend(session.on_prompts_done(now))
        elif session.phase in ("waiting", "listening"):
            if w.keys_used >= len(keys):
                w.outcome = {"kind": "waiting", "node": _node(session)}
                break
            key = keys[w.keys_used]
            w.keys_used += 1
            if key == TIMEOUT_KEY and session.phase == "listening":
                pending.extend(session.on_recognized(now, "", 0.0))  # nothing understood
            elif key == TIMEOUT_KEY:
                now = session.next_timeout or now
                pending.extend(session.on_timeout(now))
            else:
                w.steps.append({"kind": "key", "key": key, "node": _node(session)})
                pending.extend(session.on_digit(now, key))
        else:
            break
        if not pending and session.phase not in ("prompting", "waiting", "listening"):
            break
    if not w.outcome:
        w.outcome = (
            {"kind": "loop", "node": _node(session)}
            if len(w.steps) >= MAX_STEPS
            else {"kind": "ended", "node": _node(session)}
        )
    return {
        "steps": w.steps,
        "outcome": w.outcome,
        "keys_used": w.keys_used,
        "variables": {k: _plain(v) for k, v in session.vars.items()},
        "path": [s["node"] for s in w.steps if s["kind"] == "node"],
    }


async def _do(
    session: Session,
    a: Action,
    w: Walk,
    pool: AsyncConnectionPool[Any] | None,
    now: float,
    clock: Callable[[], dt.datetime],
) -> list[Action] | None:
    """Carry out one action as a dry run; the interpreter's answer to it, if any."""
    if isinstance(a, Visited):
        w.steps.append({"kind": "node", "node": a.node, "type": a.type})
    elif isinstance(a, Play):
        for p in a.prompts:
            said = {"text": p.text} if p.text is not None else {"file": p.file}
            w.steps.append({"kind": "say", "node": _node(session), **said})
    elif isinstance(a, StopPrompts | StopVoicemail | LeaveQueue | StopListening):
        pass
    elif isinstance(a, Listen):  # the editor types for the caller; t: nothing understood
        w.steps.append({"kind": "listen", "node": _node(session)})
    elif isinstance(a, Authorize):
        outcome, values = await authorize(pool, a, dry_run=True)
        w.steps.append({"kind": "authorize", "node": _node(session), "outcome": outcome})
        return session.on_authorized(now, outcome, values)
    elif isinstance(a, Lookup):
        found: dict[str, Any] | None
        try:
            found = await fetch(pool, a)
            w.steps.append({"kind": "lookup", "node": _node(session), "found": True})
        except (TimeoutError, LookupError, OSError, ValueError) as e:
            found = None
            w.steps.append(
                {"kind": "lookup", "node": _node(session), "found": False, "error": str(e)}
            )
        return session.on_lookup(now, found)
    elif isinstance(a, SubmitReading):
        outcome, values = await utility_io.reading(pool, a, clock(), store=False)
        w.steps.append({"kind": "reading", "node": _node(session), "outcome": outcome,
                        "error": values.get("reading_error", "")})  # fmt: skip
        return session.on_reading(now, outcome, values)
    elif isinstance(a, CheckOutage):
        outcome, values = await utility_io.outage(pool, a, clock())
        w.steps.append({"kind": "outage", "node": _node(session), "outcome": outcome})
        return session.on_outage(now, outcome, values)
    elif isinstance(a, Enqueue):
        w.outcome = {"kind": "queue", "node": _node(session), "queue": a.queue,
                     "priority": a.priority}  # fmt: skip
    elif isinstance(a, Transfer):
        w.outcome = {"kind": "transfer", "node": _node(session), "to": a.to}
    elif isinstance(a, RecordVoicemail):
        w.outcome = {"kind": "voicemail", "node": _node(session)}
    elif isinstance(a, RequestCallback):
        w.outcome = {"kind": "callback", "node": _node(session), "number": a.number}
    elif isinstance(a, Hangup):
        w.outcome = {"kind": "hangup", "node": _node(session), "reason": a.reason}
    return None


def _node(session: Session) -> str | None:
    return session.node.name if session.node is not None else None


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)
