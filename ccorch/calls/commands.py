"""Commands from outside a call (the operator's desktop, a supervisor, a CRM through the
API): hold and resume with music, mute, DTMF, blind transfer (to an extension, a queue, an
IVR flow or an outside number), consultation (then complete, conference or return),
recording pause, and the operator's disposition.

Each command checks the call's state first and raises :class:`Refused` (409 over the API)
when the call is not in a state that allows it; nothing is changed then. The customer is
always leg A; the operator is leg B; a consultation's target is ``call.consult`` and a
conference's third party ``call.third``. Every change is published as a
``CallControlled`` event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from typing import TYPE_CHECKING

from ccorch.calls import CallControlled, CallTransferred
from ccorch.errors import RequestRefused
from ccorch.media.music import default_music

if TYPE_CHECKING:
    from ccorch.calls.call import Call
    from ccorch.calls.leg import Leg

log = logging.getLogger(__name__)

DTMF = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
MONITOR_MODES = ("listen", "whisper", "barge")
TRANSFER_KINDS = ("extension", "queue", "flow", "number")


class Refused(RequestRefused):
    """The call is not in a state that allows the command (or the target does not exist)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message, code)


def _conflict(message: str) -> Refused:
    return Refused(409, "conflict", message)


def _publish(call: Call, action: str, target: str = "", by: str = "") -> None:
    svc = call.ctl.service
    call.ctl.events.publish(CallControlled(call.id, action, target, by, svc.now()))


def _talking(call: Call) -> tuple[Leg, Leg]:
    """The customer's and the operator's legs of a connected two-party call."""
    if call.state != "answered" or call.b is None or call.b.state != "confirmed":
        raise _conflict(f"call {call.id} is not connected to an operator (it is {call.state})")
    if call.a.media is None or call.b.media is None:
        raise _conflict(f"call {call.id} has no media")
    return call.a, call.b


# --- hold ---------------------------------------------------------------------------------


def _reoffer(leg: Leg, direction: str) -> None:
    """A re-INVITE to the leg's peer with our SDP and ``direction`` (sendonly: on hold, the
    peer hears what we send: the music). Its answer is applied in ``Leg.on_response``."""
    if leg.dialog is None or leg.state != "confirmed":
        return
    leg.sdp_session = (leg.sdp_session[0], leg.sdp_session[1] + 1)
    codecs = (leg.agreed.law,) if leg.agreed is not None else ("PCMU", "PCMA")
    leg.send_in_dialog("INVITE", leg.our_sdp(direction=direction, codecs=codecs))


def _music_to_customer(call: Call) -> None:
    if call.moh is None and call.a.media is not None:
        call.moh = call.ctl.media.play_pcm(call.a.media, default_music(), loop_=True)


def _stop_music(call: Call) -> None:
    if call.moh is not None:
        call.moh = None
        if call.a.media is not None:
            call.ctl.media.stop_playback(call.a.media)


def _unbridge(call: Call) -> None:
    if call.room is not None:
        call.ctl.media.destroy_room(call.room)
        call.room = None


def hold(call: Call, by: str = "") -> None:
    """The customer hears music on hold; the operator hears nothing of the customer."""
    a, _ = _talking(call)
    if call.on_hold:
        raise _conflict(f"call {call.id} is on hold already")
    if call.third is not None:
        raise _conflict("a conference is not put on hold (leave it or end it)")
    _unbridge(call)
    _music_to_customer(call)
    _reoffer(a, "sendonly")
    call.on_hold = True
    _publish(call, "hold", by=by)


def resume(call: Call, by: str = "") -> None:
    a, b = _talking(call)
    if not call.on_hold:
        raise _conflict(f"call {call.id} is not on hold")
    if call.consult is not None:
        raise _conflict("a consultation is in progress: complete it, conference or return")
    assert a.media is not None and b.media is not None
    _stop_music(call)
    _reoffer(a, "sendrecv")
    call.room = call.ctl.media.bridge(a.media, b.media)
    _join_monitor(call)
    call.on_hold = False
    _publish(call, "resume", by=by)


def mute(call: Call, on: bool, by: str = "") -> None:
    """The operator's voice stops (or starts again) reaching the customer; the operator
    still hears the call."""
    _, b = _talking(call)
    if call.room is None:
        raise _conflict(f"call {call.id} is on hold: nothing to mute")
    if call.muted == on:
        raise _conflict(f"the operator is {'muted' if on else 'not muted'} already")
    assert b.media is not None
    media = call.ctl.media
    media.leave_room(call.room, b.media)
    media.join_room(call.room, b.media, "listen" if on else "full")
    call.muted = on
    _publish(call, "mute" if on else "unmute", by=by)


def send_dtmf(call: Call, digits: str, by: str = "") -> None:
    """Tones into the call towards the customer (an outside IVR the operator is in)."""
    a, _ = _talking(call)
    if not DTMF.match(digits):
        raise Refused(400, "bad_request", "digits: 1 to 32 of 0-9, *, #, A-D")
    assert a.media is not None
    call.ctl.media.send_dtmf(a.media, digits.upper())
    _publish(call, "dtmf", digits, by)


# --- recording ---------------------------------------------------------------------------


def pause_recording(call: Call, paused: bool, by: str = "") -> None:
    """Stop (or restart) writing the call's audio: the gap stays in the file as silence
    and its place is kept in the recording's index (``recordings.gaps``)."""
    if call.recording is None or call.state == "ended":
        raise _conflict(f"call {call.id} is not being recorded")
    open_gap = bool(call.recording_gaps) and call.recording_gaps[-1][1] < 0
    if paused == open_gap:
        raise _conflict(f"the recording is {'paused' if paused else 'running'} already")
    call.ctl.media.pause_recording(call.recording, paused)
    at = call.recording_ms()
    if paused:
        call.recording_gaps.append([at, -1])
    else:
        call.recording_gaps[-1][1] = at
    _publish(call, "recording_paused" if paused else "recording_resumed", by=by)


# --- blind transfer ----------------------------------------------------------------------


def transfer(call: Call, kind: str, to: str, by: str = "") -> None:
    """Send the customer elsewhere and free the operator at once (wrap-up starts): to an
    extension or an outside number (the customer hears music while it rings; if nobody
    answers, the call goes back to the queue it came from, or ends), to a queue (keeping
    the caller's priority and the time waited so far), or to an IVR flow (with the
    operator preferred if the flow queues the caller again)."""
    _talking(call)
    if call.consult is not None or call.transfer is not None or call.third is not None:
        raise _conflict("a consultation, conference or transfer is in progress")
    ctl = call.ctl
    if kind == "queue":
        acd = ctl.acd
        if acd is None or to not in acd.queue_ids:
            raise Refused(404, "not_found", f"no queue {to!r}")
        operator = _release_operator(call)
        _music_to_customer(call)
        call.state = "queued"
        call.queue, call.served = to, False
        call.queued_at = dt.datetime.now(dt.UTC)
        if not acd.enqueue(call, to, call.priority, waited_ms=call.waited_ms or 0):
            call.end("transfer-failed")
        _publish(call, "transfer", f"queue:{to}", by)
        log.info("transferred to a queue", extra={"call": call.id, "queue": to, "from": operator})
        return
    if kind == "flow":
        flows = ctl.flows
        flow = flows.by_name.get(to) if flows is not None else None
        if flow is None:
            raise Refused(404, "not_found", f"no flow {to!r}")
        operator = _release_operator(call)
        if operator:  # back from the flow to the same operator, if it queues the caller
            call.preferred = [operator, *[p for p in call.preferred if p != operator]]
            call.return_to = operator
        call.start_ivr(flow)
        _publish(call, "transfer", f"flow:{to}", by)
        return
    leg = _ring_target(call, kind, to)
    leg.purpose = "transfer"
    call.transfer = leg
    _release_operator(call)
    _music_to_customer(call)
    call.state = "transferring"
    _arm_ring_timer(call, leg)
    _publish(call, "transfer", f"{kind}:{to}", by)


def _ring_target(call: Call, kind: str, to: str) -> Leg:
    svc = call.ctl.service
    if kind == "extension":
        if to not in svc.accounts:
            raise Refused(404, "not_found", f"no extension {to!r}")
        leg = call.ring(to)
        if leg is None:
            raise _conflict(f"extension {to} is not registered")
        return leg
    if kind == "number":
        digits = to.lstrip("+")
        if not digits.isdigit() or not 3 <= len(digits) <= 20:
            raise Refused(400, "bad_request", "number: 3 to 20 digits, + allowed in front")
        trunk = next((t for t in svc.trunks if t.outbound and t.up is not False), None)
        if trunk is None:
            raise _conflict("no outbound trunk is up")
        if svc.call_limits.room(svc.now(), trunk.limit_key, trunk.limit) == 0:
            raise _conflict(f"trunk {trunk.name} is at its call limit; try again")
        leg = call.ring_trunk(trunk, to)
        if leg is None:
            raise _conflict("no media for the outside leg")
        return leg
    raise Refused(400, "bad_request", f"kind: one of {', '.join(TRANSFER_KINDS)}")


def _release_operator(call: Call) -> str | None:
    """The operator leaves the call (BYE to its phone); its ACD call ends (wrap-up)."""
    b = call.b
    operator = call.agent
    _unbridge(call)
    call.muted = False
    if b is not None:
        b.hangup()
    call.b = None
    if call.queue is not None and call.ctl.acd is not None and call.served:
        call.ctl.acd.call_ended(call)
    call.agent_answered_at = None
    call.served = False
    if operator:  # off the call, but its wrap-up (disposition) may still come
        call.previous_agents.append(operator)
    call.agent = None
    return operator


def _arm_ring_timer(call: Call, leg: Leg) -> None:
    def no_answer() -> None:
        if leg.state == "early":
            log.info("transfer target did not answer", extra={"call": call.id})
            leg.hangup()
            target_failed(call, leg, 480)

    leg.ring_timer = asyncio.get_running_loop().call_later(call.ctl.ring_timeout, no_answer)


def target_answered(call: Call, leg: Leg) -> None:
    """A transfer or consultation target picked up (from ``Call.b_response``)."""
    if leg.ring_timer is not None:
        leg.ring_timer.cancel()
        leg.ring_timer = None
    media = call.ctl.media
    assert leg.media is not None and call.a.media is not None
    if leg.purpose == "monitor":
        _join_monitor(call)
        call.journal()
        _publish(call, "monitor_answered", f"{call.monitor_mode}:{leg.target}")
        return
    if leg.purpose == "transfer":
        _stop_music(call)
        call.room = media.bridge(call.a.media, leg.media)
        _join_monitor(call)
        call.b, call.transfer = leg, None
        call.agent = leg.target
        call.agent_answered_at = dt.datetime.now(dt.UTC)
        call.state = "answered"
        call.journal()
        call.ctl.events.publish(CallTransferred(call.id, leg.target, False, call.ctl.service.now()))
        return
    # a consultation: the operator and the target talk; the customer keeps the music
    b = call.b
    if b is None or b.media is None:
        leg.hangup()
        call.consult = None
        return
    call.consult_room = media.bridge(b.media, leg.media)
    call.journal()
    _publish(call, "consult_answered", leg.target)


def target_failed(call: Call, leg: Leg, status: int) -> None:
    """A transfer or consultation target did not answer (busy, declined, no answer)."""
    if leg.ring_timer is not None:
        leg.ring_timer.cancel()
        leg.ring_timer = None
    if leg.purpose == "consult":
        call.consult = None
        _publish(call, "consult_failed", f"{leg.target}:{status}")
        return
    if leg.purpose == "monitor":
        call.monitor = None
        _publish(call, "monitor_failed", f"{leg.target}:{status}")
        return
    call.transfer = None
    _publish(call, "transfer_failed", f"{leg.target}:{status}")
    acd = call.ctl.acd
    if call.queue is not None and acd is not None and call.state != "ended":
        # nobody took it: back to the queue it came from, keeping its wait and priority
        call.state, call.served = "queued", False
        if acd.enqueue(call, call.queue, call.priority, waited_ms=call.waited_ms or 0):
            return
    call.end("transfer-failed")


# --- consultation and conference -----------------------------------------------------------


def consult(call: Call, kind: str, to: str, by: str = "") -> None:
    """The customer is put on hold (music) and the operator's phone is connected to the
    target when it answers; then ``complete``, ``conference`` or ``cancel_consult``."""
    _talking(call)
    if call.consult is not None or call.transfer is not None or call.third is not None:
        raise _conflict("a consultation, conference or transfer is in progress")
    if kind not in ("extension", "number"):
        raise Refused(400, "bad_request", "kind: extension or number")
    if to == call.agent:
        raise _conflict("the operator cannot consult itself")
    leg = _ring_target(call, kind, to)
    leg.purpose = "consult"
    call.consult = leg
    if not call.on_hold:
        _unbridge(call)
        _music_to_customer(call)
        _reoffer(call.a, "sendonly")
        call.on_hold = True
    _arm_ring_timer(call, leg)
    _publish(call, "consult", f"{kind}:{to}", by)


def _answered_consult(call: Call) -> Leg:
    _talking(call)
    c = call.consult
    if c is None or c.state != "confirmed" or call.consult_room is None:
        raise _conflict("no answered consultation")
    return c


def complete_transfer(call: Call, by: str = "") -> None:
    """The consulted party takes the customer; the operator leaves (wrap-up)."""
    c = _answered_consult(call)
    media = call.ctl.media
    assert call.consult_room is not None and c.media is not None and call.a.media is not None
    media.destroy_room(call.consult_room)
    call.consult_room, call.consult = None, None
    _release_operator(call)
    _stop_music(call)
    _reoffer(call.a, "sendrecv")
    call.on_hold = False
    call.room = media.bridge(call.a.media, c.media)
    _join_monitor(call)
    call.b = c
    call.agent = c.target
    call.agent_answered_at = dt.datetime.now(dt.UTC)
    call.journal()
    call.ctl.events.publish(CallTransferred(call.id, c.target, True, call.ctl.service.now()))
    _publish(call, "transfer_completed", c.target, by)


def conference(call: Call, by: str = "") -> None:
    """Customer, operator and the consulted party in one room, each hearing the other two."""
    c = _answered_consult(call)
    media = call.ctl.media
    a, b = call.a, call.b
    assert call.consult_room is not None and b is not None
    assert a.media is not None and b.media is not None and c.media is not None
    media.destroy_room(call.consult_room)
    call.consult_room, call.consult = None, None
    _stop_music(call)
    _reoffer(a, "sendrecv")
    call.on_hold = False
    room = media.create_room(call.id)
    for leg in (a, b, c):
        assert leg.media is not None
        media.join_room(room, leg.media, "full")
    call.room = room
    _join_monitor(call)
    call.third = c
    call.muted = False
    call.journal()
    _publish(call, "conference", c.target, by)


def cancel_consult(call: Call, by: str = "") -> None:
    """Back to the customer: the consulted party is hung up (or stops ringing)."""
    _talking(call)
    c = call.consult
    if c is None:
        raise _conflict("no consultation in progress")
    if c.ring_timer is not None:
        c.ring_timer.cancel()
        c.ring_timer = None
    if call.consult_room is not None:
        call.ctl.media.destroy_room(call.consult_room)
        call.consult_room = None
    call.consult = None
    c.hangup()
    _publish(call, "consult_cancelled", c.target, by)
    resume(call, by)


def party_left(call: Call, leg: Leg) -> bool:
    """A party of a conference hung up: the other two go on talking. True when handled
    (the call goes on); False when the call must end (the customer left)."""
    third, b = call.third, call.b
    if third is None or leg is call.a:
        return False
    media = call.ctl.media
    _unbridge(call)
    if leg is third:
        call.third = None
    elif leg is b:
        if call.queue is not None and call.ctl.acd is not None and call.served:
            call.ctl.acd.call_ended(call)  # the operator goes to wrap-up
        call.b, call.third = third, None
        call.agent = third.target
    else:
        return False
    assert call.a.media is not None and call.b is not None and call.b.media is not None
    call.room = media.bridge(call.a.media, call.b.media)
    _join_monitor(call)
    call.journal()
    _publish(call, "party_left", leg.target)
    return True


def consult_party_left(call: Call, leg: Leg) -> None:
    """The consulted party hung up before completing: the operator is back with the music
    still on the customer (the desktop resumes)."""
    if call.consult_room is not None:
        call.ctl.media.destroy_room(call.consult_room)
        call.consult_room = None
    call.consult = None
    _publish(call, "consult_cancelled", leg.target)


# --- supervision: listen, whisper, barge ------------------------------------------------------


def monitor(call: Call, mode: str, extension: str | None, by: str = "") -> None:
    """A supervisor joins the call on its own phone (a desk phone or the browser's): it
    rings, and once answered the supervisor hears customer and operator; ``listen``: heard
    by nobody; ``whisper``: heard by the operator only; ``barge``: heard by both. Asked
    again while connected, the mode changes at once (no new ring)."""
    _talking(call)
    if mode not in MONITOR_MODES:
        raise Refused(400, "bad_request", f"mode: one of {', '.join(MONITOR_MODES)}")
    if not extension:
        raise _conflict("you have no extension to listen on: an administrator gives you one")
    if extension == call.agent:
        raise _conflict("an operator cannot monitor its own call")
    m = call.monitor
    if m is not None:
        if m.target != extension:
            raise _conflict(f"{m.target} is already monitoring this call")
        call.monitor_mode = mode
        if m.state == "confirmed":
            _join_monitor(call)
        _publish(call, f"monitor_{mode}", extension, by)
        return
    svc = call.ctl.service
    if extension not in svc.accounts:
        raise Refused(404, "not_found", f"no phone for extension {extension!r}")
    # "answer-after=0": the supervisor asked for this call, its browser phone takes it
    leg = call.ring(extension, extra=(("call-info", f"<sip:{svc.host}>;answer-after=0"),))
    if leg is None:
        raise _conflict(f"your phone ({extension}) is not registered")
    leg.purpose = "monitor"
    call.monitor, call.monitor_mode = leg, mode
    _arm_ring_timer(call, leg)
    _publish(call, "monitor", f"{mode}:{extension}", by)


def monitor_stop(call: Call, by: str = "") -> None:
    m = call.monitor
    if m is None:
        raise _conflict("nobody is monitoring this call")
    if m.ring_timer is not None:
        m.ring_timer.cancel()
        m.ring_timer = None
    m.hangup()
    monitor_left(call, m, by)


def monitor_left(call: Call, leg: Leg, by: str = "") -> None:
    """The supervisor's leg is gone (hung up or stopped): out of the room, the call goes on."""
    if call.room is not None and leg.media is not None:
        try:
            call.ctl.media.leave_room(call.room, leg.media)
        except Exception as e:  # the leg's media is already released
            log.debug("monitor leave", extra={"call": call.id, "error": str(e)})
    call.monitor = None
    call.journal()
    _publish(call, "monitor_ended", leg.target, by)


def _join_monitor(call: Call) -> None:
    """Put the supervisor's answered leg in the call's room with its mode (after every
    change of the room: a new bridge after hold, a transfer, a conference)."""
    m, b = call.monitor, call.b
    if m is None or m.state != "confirmed" or m.media is None or call.room is None:
        return
    media = call.ctl.media
    if call.monitor_mode == "whisper" and b is not None and b.media is not None:
        media.join_room(call.room, m.media, "whisper", b.media)
    else:
        media.join_room(call.room, m.media, "full" if call.monitor_mode == "barge" else "listen")


# --- disposition ---------------------------------------------------------------------------


def disposition(call: Call, code: str, note: str | None, allowed: tuple[str, ...]) -> None:
    """The operator's wrap-up code (from ``calls.dispositions``) and note, kept for the CDR."""
    if code not in allowed:
        raise Refused(400, "bad_request", f"disposition: one of {', '.join(allowed)}")
    call.disposition, call.note = code, note
    _publish(call, "disposition", code)
