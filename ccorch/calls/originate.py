"""Click-to-dial: the node calls the operator's phone first (``Call-Info: answer-after=0``
asks phones that allow it to answer by themselves), and when the operator answers, calls
the customer's number through the outbound trunk; when the customer answers, the two are
bridged and recorded. The call is outgoing on its CDR and on the customer's interaction.

The customer is leg A (as in every call: hold, music and recording's left channel are the
customer's), the operator leg B; here both legs are ours as the caller (UAC).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ccorch.calls import CallArrived
from ccorch.crm import store as crm_store

if TYPE_CHECKING:
    from ccorch.calls.call import Call
    from ccorch.calls.leg import Leg
    from ccorch.sip.trunks import Trunk

log = logging.getLogger(__name__)

AUTO_ANSWER = (
    ("call-info", "<sip:127.0.0.1>;answer-after=0"),
    ("alert-info", "info=alert-autoanswer"),
)

_REASONS = {486: "busy", 600: "busy", 603: "declined", 408: "no-answer", 480: "no-answer",
            487: "no-answer"}  # fmt: skip


async def start(call: Call, extension: str, number: str, trunk: Trunk) -> None:
    """Ring the operator's phone (then, from ``answered``, the customer)."""
    ctl = call.ctl
    svc = ctl.service
    ctl.events.publish(CallArrived(call.id, call.ani, call.dnis, f"agent:{extension}", svc.now()))
    deps = ctl.ivr
    if deps is not None and deps.pool is not None:  # whom the operator calls, for the CRM
        try:
            async with deps.pool.connection() as conn:
                matches = await crm_store.identify_by_ani(conn, number, trunk.country)
            if len(matches) == 1:
                call.customer_id = matches[0].customer_id
        except Exception as e:
            log.warning("callee not identified", extra={"call": call.id, "error": str(e)})
    if call.state == "ended":
        return
    leg = call.ring(extension, extra=AUTO_ANSWER, from_user=number)  # its display: whom
    if leg is None:
        call.a.state = "ended"
        call.end_placed("operator-not-registered", 480)
        return
    call.b = leg
    call.state = "ringing"
    call.ring_timer = asyncio.get_running_loop().call_later(
        ctl.ring_timeout, lambda: _no_answer(call, leg)
    )


def _no_answer(call: Call, leg: Leg) -> None:
    call.ring_timer = None
    if leg.state == "early":
        leg.hangup()
        failed(call, leg, 408)


def answered(call: Call, leg: Leg) -> None:
    """A leg of a click-to-dial answered: the operator (now ring the customer), or the
    customer (now they talk)."""
    if call.ring_timer is not None:
        call.ring_timer.cancel()
        call.ring_timer = None
    if leg is call.b and call.state == "ringing":
        trunk = call.outbound_trunk
        assert trunk is not None
        customer = call.ring_trunk(trunk, call.dnis, from_user=trunk.username or call.ani)
        if customer is None:
            call.end("no-resources")
            return
        customer.side = "a"
        call.a = customer
        call.state = "dialing"
        call.ring_timer = asyncio.get_running_loop().call_later(
            call.ctl.ring_timeout * 2, lambda: _no_answer(call, customer)
        )
        return
    if leg is call.a and call.state == "dialing" and call.b is not None:
        call.answered(call.b)


def failed(call: Call, leg: Leg, status: int) -> None:
    """The operator's phone or the customer did not answer: the call ends (the operator's
    phone gets BYE if it had answered)."""
    if call.ring_timer is not None:
        call.ring_timer.cancel()
        call.ring_timer = None
    if call.state == "ended":
        return
    who = "operator" if leg is call.b else "callee"
    reason = f"{who}-{_REASONS.get(status, 'failed')}"
    if leg is call.a and call.b is not None:
        call.b.hangup()
    call.end_placed(reason, status)
