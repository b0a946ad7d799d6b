"""What feeds the live event stream (``ccorch.events``): the call controller's events and
the ACD's decisions, translated into stream events with the operators and queues each
concerns (which decides who may see it)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from ccorch.acd import AgentChanged, CallLeft, Moved, Offer, RevokeOffer
from ccorch.acd.service import AcdService
from ccorch.calls import (
    CallAnswered,
    CallArrived,
    CallControlled,
    CallEnded,
    CallEvent,
    CallHeld,
    CallIdentified,
    CallInIvr,
    CallQueued,
    CallRecorded,
    CallRinging,
    CallTransferred,
)
from ccorch.events import EventStream

_CALL_TYPES: dict[type, str] = {
    CallArrived: "call.arrived",
    CallIdentified: "call.identified",
    CallInIvr: "call.ivr",
    CallQueued: "call.queued",
    CallRecorded: "call.recorded",
    CallRinging: "call.ringing",
    CallAnswered: "call.answered",
    CallHeld: "call.held",
    CallTransferred: "call.transferred",
    CallEnded: "call.ended",
}


_NEW_PARTY = {"consult_answered", "conference", "transfer_completed"}


class Offers:
    """The operators the ACD offered each call (its ``call.offered`` carried the screen
    pop). An operator rung any other way, by a transfer or a consultation, gets the same
    screen pop when its phone rings, so its desktop opens the caller's card too."""

    def __init__(self) -> None:
        self.by_call: dict[int, set[str]] = {}

    def add(self, call: int, agent: str) -> bool:
        """Remember an offer; False when that operator had it already."""
        got = self.by_call.setdefault(call, set())
        if agent in got:
            return False
        got.add(agent)
        return True


async def publish_calls(
    stream: EventStream,
    queue: asyncio.Queue[CallEvent],
    find_call: Callable[[int], Any] | None = None,
    offers: Offers | None = None,
) -> None:
    """Forever: each call event onto the stream. A call's operator (the extension rung or
    answering) and queue are remembered so that its later events reach that operator.
    ``find_call`` (a call by id: it has the screen pop) and ``offers`` (shared with
    :func:`acd_listener`): an operator rung outside the ACD gets a ``call.offered`` too."""
    agents: dict[int, set[str]] = {}
    while True:
        ev = await queue.get()
        data: dict[str, Any] = dataclasses.asdict(ev)
        if isinstance(ev, CallRinging | CallAnswered | CallTransferred):
            agents.setdefault(ev.call, set()).add(ev.target)
        if isinstance(ev, CallRinging) and find_call is not None and offers is not None:
            call = find_call(ev.call)
            # an outgoing call rings its own operator first: that is no offer of a caller,
            # unless a personal callback rings its operator (the card was not open)
            if (
                call is not None
                and (call.direction != "out" or _personal_callback(call))
                and offers.add(ev.call, ev.target)
            ):
                pop = call.screen_pop(call.queue or "")
                stream.publish("call.offered", {**pop, "agent": ev.target}, agents={ev.target})
        if isinstance(ev, CallControlled):
            if ev.action in _NEW_PARTY:  # a colleague joins the call: it sees it from now
                agents.setdefault(ev.call, set()).add(ev.target)
            kind = f"call.{ev.action}"
        else:
            kind = _CALL_TYPES[type(ev)]
        stream.publish(kind, data, agents=agents.get(ev.call, ()))
        if isinstance(ev, CallRecorded):  # the last event of a call (after call.ended)
            agents.pop(ev.call, None)
            if offers is not None:
                offers.by_call.pop(ev.call, None)


def _personal_callback(call: Any) -> bool:
    return call.campaign is not None and call.campaign.personal


def acd_listener(
    stream: EventStream, acd: AcdService, offers: Offers | None = None
) -> Callable[[Any], None]:
    """An ``AcdService`` listener: offers (with the screen pop of the ACD's call), queue
    exits and agents' states (with the reason's name) onto the stream."""
    queue_names = acd.queue_names
    calls: dict[int, Any] = acd.calls  # the controller's calls (they have a screen_pop)

    def on_event(ev: Any) -> None:
        if isinstance(ev, Offer):
            q = queue_names.get(ev.queue, "")
            call = calls.get(ev.call)
            pop = call.screen_pop(q) if call is not None else {"call": ev.call, "queue": q}
            if offers is not None:
                offers.add(ev.call, str(ev.agent))
            # the caller's details go to the operator offered and supervisors only, not to
            # every operator of the queue (they see the queue's counts in queue.snapshot)
            stream.publish("call.offered", {**pop, "agent": str(ev.agent)}, agents={str(ev.agent)})
        elif isinstance(ev, RevokeOffer):
            stream.publish(
                "acd.offer_revoked",
                {"call": ev.call, "agent": str(ev.agent)},
                agents={str(ev.agent)},
            )
        elif isinstance(ev, CallLeft):
            q = queue_names.get(ev.queue, "")
            stream.publish(
                "queue.left",
                {"call": ev.call, "queue": q, "outcome": ev.outcome, "waited_ms": ev.waited_ms},
                agents={str(ev.detail)} if ev.outcome == "answered" else (),
                queues={q},
            )
        elif isinstance(ev, Moved):
            names = {queue_names.get(ev.from_queue, ""), queue_names.get(ev.to_queue, "")}
            stream.publish(
                "queue.moved",
                {
                    "call": ev.call,
                    "from": queue_names.get(ev.from_queue, ""),
                    "to": queue_names.get(ev.to_queue, ""),
                },
                queues=names,
            )
        elif isinstance(ev, AgentChanged):
            stream.publish(
                "agent.state",
                {
                    "agent": str(ev.agent),
                    "state": ev.state,
                    "detail": ev.detail,
                    "reason": acd.reason_name(ev.detail) if ev.state == "not_ready" else None,
                    # wrap-up: the seconds until Ready (detail is the ACD clock's end)
                    **(
                        {"ends_in_seconds": max(0, (ev.detail or 0) - acd.now_ms()) / 1000}
                        if ev.state == "wrap_up"
                        else {}
                    ),
                },
                agents={str(ev.agent)},
            )

    return on_event


# Fields that change by themselves with time: a snapshot differing only in these is not
# news (it goes out anyway every QUEUE_EVERY_SECONDS).
_TIME_FIELDS = {"oldest_wait_ms", "estimated_wait_seconds", "service_level", "asa_seconds",
                "abandon_rate", "aht_seconds", "offered_15m", "answered_15m", "abandoned_15m",
                "service_level_15m", "abandon_rate_15m", "asa_seconds_15m"}  # fmt: skip
QUEUE_CHECK_SECONDS = 1.0
QUEUE_EVERY_SECONDS = 5.0


async def publish_queues(stream: EventStream, acd: Any, clock: Callable[[], float]) -> None:
    """Forever: each queue's ``queue.snapshot`` when its calls or agents change (checked every
    second), and every five seconds regardless (the oldest wait grows)."""
    last: dict[str, tuple[dict[str, Any], float]] = {}
    while True:
        now = clock()
        for name in list(acd.queue_ids):
            snap = acd.queue_snapshot(name)
            key = {k: v for k, v in snap.items() if k not in _TIME_FIELDS}
            seen = last.get(name)
            if seen is None or seen[0] != key or now - seen[1] >= QUEUE_EVERY_SECONDS:
                stream.publish("queue.snapshot", snap, queues={name})
                last[name] = (key, now)
        await asyncio.sleep(QUEUE_CHECK_SECONDS)
