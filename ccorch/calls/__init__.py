"""The call controller: one call's life, tying SIP signaling and the media engine together.

Calls publish typed events (``CallEvent``) on one stream; metrics, CDR writing, the desktop
and the audit subscribe to it (``CallEvents.subscribe``). No part polls another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallArrived:
    call: int
    ani: str
    dnis: str
    origin: str  # trunk name, or "agent:<user>"
    at: float


@dataclass(frozen=True, slots=True)
class CallRinging:
    call: int
    target: str
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call: int
    target: str
    at: float


@dataclass(frozen=True, slots=True)
class CallHeld:
    call: int
    side: str  # "caller" or "agent"
    held: bool
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferred:
    call: int
    target: str
    attended: bool
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    call: int
    reason: str  # caller-hangup, agent-hangup, cancelled, busy, no-answer, rejected, failed...
    status: int  # SIP status the caller got (200 when the call was answered)
    at: float
    talk_seconds: float


@dataclass(frozen=True, slots=True)
class CallControlled:
    """A command acted on the call (``ccorch.calls.commands``): hold, resume, mute, unmute,
    dtmf, transfer, consult, consult_answered, consult_failed, consult_cancelled,
    conference, recording_paused, recording_resumed, disposition, transfer_failed,
    party_left."""

    call: int
    action: str
    target: str  # the extension, queue, flow or number it concerns ("" if none)
    by: str  # who asked: a user's login, or "" (the node)
    at: float


@dataclass(frozen=True, slots=True)
class CallIdentified:
    """The caller is known as a CRM customer: by the number (one match) or by a PIN."""

    call: int
    customer_id: int
    by: str  # "ani", "pin", "account" (given in the IVR) or "operator"
    authorized: bool  # a PIN (or questions) checked, not only the number
    at: float


@dataclass(frozen=True, slots=True)
class CallInIvr:
    """The caller entered a node of the flow. ``keys``: the keys pressed at menus so far
    (what is typed at a PIN or number entry is never here)."""

    call: int
    flow: str
    node: str
    type: str
    path: list[str]
    keys: list[str]
    at: float


@dataclass(frozen=True, slots=True)
class CallQueued:
    """The caller waits in a queue: its place (1 = next) and the wait it can expect."""

    call: int
    queue: str
    priority: int
    position: int | None
    estimated_wait_seconds: float | None
    waited_ms: int  # waited already (a transfer back into a queue keeps its wait)
    at: float


@dataclass(frozen=True, slots=True)
class CallRecorded:
    """The ended call's record is durable: ``cdr_id`` in the database, or None when it was
    spooled to disk (the database was away) and goes in at the next start."""

    call: int
    cdr_id: int | None
    at: float


CallEvent = (
    CallArrived
    | CallIdentified
    | CallInIvr
    | CallQueued
    | CallRinging
    | CallAnswered
    | CallHeld
    | CallTransferred
    | CallEnded
    | CallRecorded
    | CallControlled
)


class CallEvents:
    """Fan-out of call events to subscribers' queues (bounded: a stuck subscriber loses
    its oldest events rather than stalling calls)."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._subs: list[asyncio.Queue[CallEvent]] = []
        self.maxsize = maxsize
        self.dropped = 0

    def subscribe(self) -> asyncio.Queue[CallEvent]:
        q: asyncio.Queue[CallEvent] = asyncio.Queue(self.maxsize)
        self._subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[CallEvent]) -> None:
        if q in self._subs:
            self._subs.remove(q)

    def publish(self, ev: CallEvent) -> None:
        for q in self._subs:
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(ev)


# Upper bounds of the call legs' MOS histogram (cc_media_leg_mos): 4.4 is about the best the
# E-model gives G.711; below 3.5 callers notice.
MOS_BUCKETS = (2.0, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5)
