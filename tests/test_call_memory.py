"""An ended call leaves memory: its transactions, which live up to 32 s longer, do not keep
it, and the node collects the cyclic garbage calls leave while calls end (``ccorch.memory``).
Measured before: after a 15 s step at 300 calls/s every ended call was still in memory."""

from __future__ import annotations

import asyncio
import gc
import weakref

from ccorch.calls.controller import CallController
from ccorch.media import MediaEngine
from ccorch.memory import CyclePolicy
from ccorch.sip.guard import Guard
from ccorch.sip.message import Request, Response, make_response, parse
from ccorch.sip.registrar import Account, Binding
from ccorch.sip.service import SipService
from ccorch.sip.transaction import Addr, Timers
from ccorch.sip.trunks import Trunk

TRUNK = Addr("UDP", "127.0.0.1", 5070)
PHONE = Addr("UDP", "127.0.0.1", 5082)
SDP = (
    b"v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def _invite() -> bytes:
    return (
        "INVITE sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-mem-1\r\n"
        "From: <sip:0671234567@127.0.0.1:5070>;tag=trunk1\r\n"
        "To: <sip:7001@127.0.0.1:5060>\r\n"
        "Call-ID: mem-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:trunk@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def _in_dialog(method: str, to_tag: str, cseq: int) -> bytes:
    return (
        f"{method} sip:ccorch@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-mem-{cseq}{method}\r\n"
        "From: <sip:0671234567@127.0.0.1:5070>;tag=trunk1\r\n"
        f"To: <sip:7001@127.0.0.1:5060>;tag={to_tag}\r\n"
        f"Call-ID: mem-1@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_an_ended_call_is_not_kept_by_its_transactions() -> None:
    async def run() -> None:
        svc = SipService(
            host="127.0.0.1",
            port=5060,
            realm="ccorch",
            timers=Timers(),  # RFC 3261's: the transactions outlive the call by 32 s
            trunks=[Trunk("t", "127.0.0.1", 5070, match_port=True, options_interval=0)],
            guard=Guard(),
            udp=False,
            tcp=False,
        )
        svc._loop = asyncio.get_running_loop()
        sent: list[tuple[bytes, Addr]] = []
        svc.transports.send = lambda data, dest: sent.append((data, dest))  # type: ignore[method-assign]
        media = MediaEngine(bind_ip="127.0.0.1", port_min=30000, port_max=30100, shards=1)
        try:
            ctl = CallController(svc, media)
            svc.accounts["7001"] = Account("7001", "", "")
            contact = "sip:7001@127.0.0.1:5082"
            svc.registrar.bindings["7001"] = {contact: Binding(contact, 1e12, "r", 1, PHONE)}

            def take(dest: Addr) -> list[Request | Response]:
                out = [parse(d) for d, a in sent if a == dest]
                sent.clear()
                return out

            svc.on_data(_invite(), TRUNK)
            await asyncio.sleep(0)  # the call's start task rings the phone
            (call,) = ctl.calls.values()
            gone = weakref.ref(call)
            del call
            ring = next(m for m in take(PHONE) if isinstance(m, Request))
            ok = make_response(ring, 200, to_tag="agent1")
            ok.headers += [("contact", f"<{contact}>"), ("content-type", "application/sdp")]
            ok.body = SDP.replace(b"6000", b"6002")
            svc.on_data(ok.to_bytes(), PHONE)
            answer = next(m for m in take(TRUNK) if isinstance(m, Response) and m.status == 200)
            tag = answer.to.tag or ""
            svc.on_data(_in_dialog("ACK", tag, 1), TRUNK)
            svc.on_data(_in_dialog("BYE", tag, 2), TRUNK)
            bye = next(m for m in take(PHONE) if isinstance(m, Request) and m.method == "BYE")
            svc.on_data(make_response(bye, 200).to_bytes(), PHONE)
            for _ in range(20):  # the record's commit task (none here) and the release
                await asyncio.sleep(0)
            assert not ctl.calls
            # the INVITE and BYE transactions stay for their timers (RFC 3261 §17, RFC 6026)
            assert svc.txn.server and svc.txn.client
            gc.collect()
            assert gone() is None, gc.get_referrers(gone())
        finally:
            media.shutdown()

    asyncio.run(run())


def test_the_cycle_policy_collects_while_calls_end_and_for_a_while_after() -> None:
    p = CyclePolicy(every_calls=100, every_seconds=5.0, tail_seconds=40.0)
    assert not p.due(0.0, 0)  # no call has ended: nothing to collect
    assert not p.due(1.0, 3)  # a few ended, too soon after start-up's collection
    assert p.due(6.0, 3)
    p.collected(6.0, 3)
    assert not p.due(7.0, 50)
    assert p.due(8.0, 103)  # 100 ended since: at once, whatever the time
    p.collected(8.0, 103)
    # no more calls end: their transactions let them go over the next 32 s
    assert not p.due(12.0, 103)
    assert p.due(13.5, 103)
    p.collected(13.5, 103)
    assert p.due(45.0, 103)  # 40 s after the last end (seen at 8.0): still in the tail
    p.collected(45.0, 103)
    assert not p.due(60.0, 103)  # past the tail, idle: nothing to do
    assert p.due(70.0, 104)  # a call ended again
