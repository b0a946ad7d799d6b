"""A campaign's call: the node dials the customer through the outbound trunk (leg A, ours
as the caller); when they answer, answering-machine detection listens to the greeting
(predictive and broadcast modes), and a person is queued for the campaign's operators
(their phones are asked to answer by themselves) or, in a voice broadcast, hears the
campaign's flow. A machine hears the campaign's machine message, or nothing, and the call
ends.

The 2-second rule: a person who is not connected to an operator within 2 s of the end of
their greeting hears the abandon message at that moment, then the node hangs up; the
attempt is an abandon. Whatever happens is told to the campaign manager
(``ccorch.dialer.manager``) through ``CampaignDial.report``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccorch.calls import CallArrived, originate
from ccorch.crm import screen
from ccorch.media import AmdResult, PlaybackFinished
from ccorch.sip.service import Origin

if TYPE_CHECKING:
    from ccorch.calls.call import Call
    from ccorch.calls.controller import CallController
    from ccorch.calls.leg import Leg
    from ccorch.ivr.flow import Flow
    from ccorch.sip.trunks import Trunk

log = logging.getLogger(__name__)

# A person is connected within this long after the end of their greeting, or abandoned:
# the rule's 2 s, less what the message takes to reach their ear (the media engine's 20 ms
# tick, a packet, the network; measured 20-40 ms on loopback).
CONNECT_WITHIN = 2.0 - 0.1
# Detection says "human" this long after the greeting ended (AMD's after-greeting silence).
AFTER_GREETING = 0.8

_FAILURES = {486: "busy", 600: "busy", 603: "busy", 408: "no_answer", 480: "no_answer",
             487: "no_answer"}  # fmt: skip


@dataclass
class CampaignDial:
    """What a campaign call carries: its attempt, and where its answer goes."""

    attempt_id: int
    campaign_id: int
    queue: str | None  # the operators' queue (None: a broadcast)
    detect_machines: bool
    ring_seconds: float
    abandon_prompt: Path | None
    machine_prompt: Path | None
    report: Callable[[CampaignDial, str, dict[str, Any]], None]
    priority: int = 10
    campaign_name: str = ""
    survey_id: int | None = None  # the script the operator is shown
    case_id: int | None = None  # a callback's case: the call's interaction joins it
    agent: str | None = None  # preview: the operator who asked for the call (rung directly)
    personal: bool = False  # a personal callback (its operator is rung with a screen pop)
    contact: dict[str, Any] = field(default_factory=dict)  # name and the list's columns
    flow: Flow | None = None  # a voice broadcast's
    variables: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # busy, no_answer, failed, machine, abandoned (set once)
    connect_timer: asyncio.TimerHandle | None = None
    ending_play: int | None = None  # the abandon or machine message being played


def place(
    ctl: CallController,
    trunk: Trunk,
    number: str,
    dial: CampaignDial,
    *,
    caller_id: str,
    customer_id: int | None,
) -> Call | None:
    """Dial ``number``; None when no media could be had for the leg (nothing was sent)."""
    from ccorch.calls.call import Call

    call = Call(ctl, None, Origin(trunk=trunk), caller_id, number)
    call.direction, call.outbound_trunk, call.campaign = "out", trunk, dial
    call.customer_id = customer_id
    call.case_id = dial.case_id
    leg = call.ring_trunk(trunk, number, from_user=caller_id)
    if leg is None:
        call.a.state = "ended"
        call.end_placed("no-resources", 503)
        return None
    leg.side = "a"
    call.a = leg
    call.state = "dialing"
    ctl.calls[call.key] = call
    ctl.events.publish(CallArrived(call.id, caller_id, number, trunk.name, ctl.service.now()))
    ctl.service.spawn(_gather_screen(call, number, trunk, customer_id))
    call.ring_timer = asyncio.get_running_loop().call_later(
        dial.ring_seconds, lambda: _no_answer(call, leg)
    )
    return call


async def _gather_screen(call: Call, number: str, trunk: Trunk, customer_id: int | None) -> None:
    """What the operator's screen shows about the customer dialed (as for a caller)."""
    deps = call.ctl.ivr
    if deps is None or deps.pool is None:
        return
    try:
        async with deps.pool.connection() as conn:
            call.screen = await screen.about_caller(
                conn, number, trunk.country, dt.date.today(), customer_id
            )
    except Exception as e:  # the screen is poorer, the call goes on
        log.warning("screen pop not gathered", extra={"call": call.id, "error": str(e)})


def screen_pop(dial: CampaignDial) -> dict[str, Any]:
    """The campaign's part of the operator's screen pop: which campaign, the attempt the
    script's answers belong to, the script, and the contact as the list has them."""
    return {
        "id": dial.campaign_id,
        "name": dial.campaign_name,
        "attempt": dial.attempt_id,
        "survey": dial.survey_id,
        "case": dial.case_id,
        "contact": dial.contact,
    }


def _dial(call: Call) -> CampaignDial:
    assert call.campaign is not None
    return call.campaign


def _no_answer(call: Call, leg: Leg) -> None:
    call.ring_timer = None
    if leg.state == "early" and call.state == "dialing":
        leg.hangup()  # CANCEL
        failed(call, leg, 408)


def answered(call: Call, leg: Leg) -> None:
    """A leg answered: the customer (listen to the greeting, or queue them at once), or
    the operator the ACD offered them to (they talk)."""
    dial = _dial(call)
    if leg is call.a and call.state == "dialing":
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        call.state = "detecting"
        call.answered_at = call.ctl.service.now()
        call.journal()
        dial.report(dial, "answered", {})
        assert leg.media is not None
        if dial.detect_machines:
            call.ctl.media.start_amd(leg.media)
        else:
            _live(call, "not_run", CONNECT_WITHIN)
        return
    if leg is call.b and call.state == "ringing":
        if dial.connect_timer is not None:
            dial.connect_timer.cancel()
            dial.connect_timer = None
        call.answered(leg)
        dial.report(dial, "connected", {"agent": leg.target})


def failed(call: Call, leg: Leg, status: int) -> None:
    """The customer's number did not answer (busy, no answer, refused by the carrier)."""
    if call.ring_timer is not None:
        call.ring_timer.cancel()
        call.ring_timer = None
    if call.state == "ended":
        return
    dial = _dial(call)
    dial.outcome = dial.outcome or _FAILURES.get(status, "failed")
    call.end_placed(f"callee-{dial.outcome.replace('_', '-')}", status)


def on_media(call: Call, ev: object) -> None:
    """Detection's verdict on the greeting; the end of the abandon or machine message."""
    dial = _dial(call)
    if isinstance(ev, AmdResult) and call.state == "detecting":
        if ev.result == "machine":
            dial.outcome = "machine"
            dial.report(dial, "detected", {"detected": "machine"})
            _say_then_hang_up(call, dial.machine_prompt, "campaign-machine")
            return
        # a person, or silence (someone who says nothing is a person until shown otherwise)
        after = AFTER_GREETING if ev.reason == "after-greeting-silence" else 0.0
        _live(call, ev.result, max(0.0, CONNECT_WITHIN - after))
    elif isinstance(ev, PlaybackFinished) and ev.play_id == dial.ending_play:
        call.end("campaign-" + (dial.outcome or "ended"))


def _live(call: Call, detected: str, connect_within: float) -> None:
    """A person answered: to the campaign's operators (within ``connect_within`` seconds,
    else the abandon message), or the broadcast's flow."""
    dial = _dial(call)
    dial.report(dial, "live", {"detected": detected})
    if dial.agent is not None:  # preview: the operator who dialed takes it
        leg = call.ring(dial.agent, extra=originate.AUTO_ANSWER, from_user=call.dnis)
        if leg is None:
            _abandon(call)
            return
        call.b = leg
        call.state = "ringing"
        dial.connect_timer = asyncio.get_running_loop().call_later(
            connect_within, lambda: _abandon(call)
        )
        return
    if dial.queue is None:
        if dial.flow is not None:
            call.customer.update(dial.variables)  # the flow speaks the contact's variables
            call.start_ivr(dial.flow)
        else:
            call.end("campaign-no-flow")
        return
    call.state = "ivr"  # (the state a queue is entered from)
    if not call.enqueue(dial.queue, dial.priority):
        _abandon(call)
        return
    if call.state == "answered":
        return  # an operator took it at once
    dial.connect_timer = asyncio.get_running_loop().call_later(
        connect_within, lambda: _abandon(call)
    )


def _abandon(call: Call) -> None:
    """Nobody free within 2 s: the abandon message now, then the node hangs up."""
    dial = _dial(call)
    dial.connect_timer = None
    if call.state not in ("queued", "ringing", "ivr"):
        return
    dial.outcome = "abandoned"
    dial.report(dial, "abandoned", {})
    if call.state in ("queued", "ringing"):
        call.withdraw_from_queue()  # (left_queue below follows at once)
    if call.b is not None and call.b.state != "ended":  # a preview's operator, still ringing
        call.b.hangup()
    call.b = None
    _say_then_hang_up(call, dial.abandon_prompt, "campaign-abandoned")


def operator_failed(call: Call) -> None:
    """A preview's operator did not take the call they dialed: the person is abandoned."""
    call.b = None
    if call.state == "ringing":
        _abandon(call)


def left_queue(call: Call, outcome: str) -> None:
    """The campaign's queue let the customer go without an operator (withdrawn by the
    2-second rule, or the queue's own limits): the abandon message."""
    if call.b is not None and call.b.state != "ended":
        call.b.hangup()
    call.b = None
    call.state = "ivr"
    dial = _dial(call)
    if dial.outcome is None:
        _abandon(call)


def _say_then_hang_up(call: Call, prompt: Path | None, reason: str) -> None:
    dial = _dial(call)
    if dial.connect_timer is not None:
        dial.connect_timer.cancel()
        dial.connect_timer = None
    call.state = "ending"
    media = call.a.media
    if prompt is None or media is None:
        call.end(reason)
        return
    try:
        dial.ending_play = call.ctl.media.play_file(media, prompt)
    except Exception as e:  # the message is missing: the call still ends
        log.error("campaign message not played", extra={"call": call.id, "error": str(e)})
        call.end(reason)


def ended(call: Call) -> None:
    """The call is over: what became of the attempt."""
    dial = _dial(call)
    if dial.connect_timer is not None:
        dial.connect_timer.cancel()
        dial.connect_timer = None
    if dial.outcome is not None:
        outcome = dial.outcome
    elif call.agent_answered_at is not None:
        outcome = "connected"
    elif dial.queue is None and call.answered_at is not None:
        outcome = "completed"  # a broadcast heard to its end (or hung up in it)
    elif call.answered_at is not None:
        outcome = "hung_up"  # the person hung up before an operator took them
    else:
        outcome = "failed"
    dial.report(
        dial,
        "ended",
        {
            "outcome": outcome,
            "sip_call_id": call.sip_call_id,
            "keys": "".join(call.menu_keys),
            "disposition": call.disposition,
        },
    )


__all__ = ["CampaignDial", "answered", "ended", "failed", "left_queue", "on_media", "place"]
