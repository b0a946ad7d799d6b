"""Transfers the phones ask for with REFER (RFC 3515): blind, to a new leg; attended, onto
another call's leg (Replaces, RFC 3891)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote as url_unquote

from ccorch.calls import CallTransferred
from ccorch.calls.leg import Leg
from ccorch.sip.message import NameAddr, Request, parse_params
from ccorch.sip.transaction import ServerTxn

if TYPE_CHECKING:
    from ccorch.calls.call import Call


def refer(call: Call, referrer: Leg, req: Request, txn: ServerTxn) -> None:
    svc = call.ctl.service
    refer_to = req.get("refer-to")
    if refer_to is None or call.state != "answered":
        svc.reply(
            txn,
            400 if refer_to is None else 491,
            "Bad Request (no Refer-To)" if refer_to is None else None,
        )
        return
    try:
        target = NameAddr.parse(refer_to).uri
    except ValueError as e:
        svc.reply(txn, 400, f"Bad Request (Refer-To: {e})"[:100])
        return
    other = call.b if referrer is call.a else call.a
    if other is None or other.media is None:
        svc.reply(txn, 481)
        return
    replaces = _header_param(target.headers, "replaces")
    if replaces is not None:
        _attended(call, referrer, other, replaces, txn)
        return
    user = target.user or ""
    if user not in svc.accounts:
        svc.reply(txn, 404, "Not Found (no such transfer target)")
        return
    svc.reply(txn, 202, to_tag=None)
    referrer_notify(referrer, 100, "Trying", active=True)
    leg = call.ring(user)
    if leg is None:
        referrer_notify(referrer, 480, "Temporarily Unavailable", active=False)
        return
    leg.refer_from = referrer
    call.transfer = leg


def transfer_answered(call: Call, leg: Leg) -> None:
    """The blind-transfer target answered: the far party now talks to it."""
    referrer = leg.refer_from
    assert referrer is not None
    other = call.a if referrer is call.b else call.b
    assert other is not None and other.media is not None and leg.media is not None
    if call.room is not None:
        call.ctl.media.destroy_room(call.room)
    call.room = call.ctl.media.bridge(other.media, leg.media)
    referrer_notify(referrer, 200, "OK", active=False)
    referrer.hangup()
    if referrer is call.b:
        call.b = leg
    else:
        call.a = leg
    leg.refer_from = None
    call.transfer = None
    call.journal()
    call.ctl.events.publish(CallTransferred(call.id, leg.target, False, call.ctl.service.now()))


def transfer_failed(call: Call, leg: Leg, status: int) -> None:
    referrer = leg.refer_from
    leg.refer_from = None
    call.transfer = None
    if referrer is not None and referrer.state == "confirmed":
        referrer_notify(referrer, status, None, active=False)


def _attended(call: Call, referrer: Leg, other: Leg, replaces: str, txn: ServerTxn) -> None:
    """Refer-To carries Replaces: connect ``other`` to the far leg of the replaced dialog."""
    svc = call.ctl.service
    call_id, _, params = replaces.strip().partition(";")
    call_id = call_id.strip()
    p = parse_params(params)
    tags = [p.get("to-tag") or "", p.get("from-tag") or ""]
    replaced: Leg | None = None
    for tag in tags:
        d = svc.dialogs.get((call_id, tag))
        if isinstance(d, Leg):
            replaced = d
            break
    if replaced is None or replaced.call.state != "answered":
        svc.reply(txn, 481, "Call/Transaction Does Not Exist (Replaces)")
        return
    call2 = replaced.call
    far = call2.b if replaced is call2.a else call2.a
    if far is None or far.media is None or other.media is None:
        svc.reply(txn, 481)
        return
    svc.reply(txn, 202)
    referrer_notify(referrer, 100, "Trying", active=True)
    # move the far leg of the consultation call into this call
    if call2.room is not None:
        call.ctl.media.destroy_room(call2.room)
        call2.room = None
    if call.room is not None:
        call.ctl.media.destroy_room(call.room)
    call.room = call.ctl.media.bridge(other.media, far.media)
    far.call = call
    if far.media is not None:
        call.ctl.media_legs[far.media] = far
    if call2.a is far:
        call2.a = Leg(call2, "a")
        call2.a.state = "ended"
    else:
        call2.b = None
    referrer_notify(referrer, 200, "OK", active=False)
    referrer.hangup()
    replaced.hangup()
    call2._finish("transferred", 200)
    if referrer is call.b:
        call.b = far
    else:
        call.a = far
    call.ctl.events.publish(CallTransferred(call.id, far.target, True, svc.now()))


def referrer_notify(leg: Leg, status: int, reason: str | None, *, active: bool) -> None:
    """The implicit REFER subscription's NOTIFY with a sipfrag of the transfer's progress."""
    from ccorch.sip.message import REASONS

    frag = f"SIP/2.0 {status} {reason or REASONS.get(status, '')}\r\n".encode()
    state = "active;expires=60" if active else "terminated;reason=noresource"
    leg.send_in_dialog(
        "NOTIFY",
        frag,
        [
            ("event", "refer"),
            ("subscription-state", state),
            ("content-type", "message/sipfrag;version=2.0"),
        ],
    )


def _header_param(headers: str, name: str) -> str | None:
    """A header carried in a URI's ?headers part (Refer-To: <...?Replaces=...>)."""
    for part in headers.split("&"):
        k, _, v = part.partition("=")
        if k.strip().lower() == name:
            return url_unquote(v)
    return None
