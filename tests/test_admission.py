"""Admission of new calls by queue delay and database backlog (sans-IO): a burst passes, a
standing queue sheds, a retransmission of a taken INVITE is never refused."""

from __future__ import annotations

import asyncio

from ccorch.sip.admission import Admission
from ccorch.sip.guard import Guard
from ccorch.sip.message import Request, Response, parse
from ccorch.sip.service import SipService
from ccorch.sip.transaction import Addr, Timers
from ccorch.sip.trunks import Trunk


def test_a_burst_that_drains_within_the_interval_refuses_nothing() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    t = 0.0
    for queued in (0.06, 0.08, 0.09, 0.07, 0.01):  # over the target for 40 ms, then drained
        t += 0.01
        adm.observe(t, queued)
        assert adm.admit(queued)
    assert not adm.standing and adm.refused == 0


def test_a_queue_standing_over_the_target_for_an_interval_sheds_until_it_drains() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    t, admitted = 0.0, []
    for _ in range(30):  # 150 ms of datagrams that all waited 60-80 ms
        t += 0.005
        adm.observe(t, 0.07)
        admitted.append(adm.admit(0.07))
    assert admitted[:19] == [True] * 19  # the first interval: maybe a burst
    assert not any(admitted[21:])  # then a standing queue: new calls refused
    assert adm.standing and adm.refused in (9, 10)
    adm.observe(t + 0.005, 0.01)  # the first datagram read quickly: the queue has drained
    assert not adm.standing and adm.admit(0.01)


def test_an_invite_that_waited_past_stale_is_refused_on_its_own() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    adm.observe(1.0, 0.3)
    assert not adm.standing
    assert not adm.admit(0.3)  # its caller has retransmitted it by now
    assert adm.admit(0.04)


def _service() -> tuple[SipService, list[bytes]]:
    svc = SipService(
        host="127.0.0.1",
        port=5060,
        realm="ccorch",
        timers=Timers(),
        trunks=[Trunk("carrier", "127.0.0.1", 5070, match_port=True, options_interval=0)],
        guard=Guard(),
        udp=False,
        tcp=False,
    )
    sent: list[bytes] = []
    svc.transports.send = lambda data, dest: sent.append(data)  # type: ignore[method-assign]
    return svc, sent


def _invite(branch: str, call_id: str) -> bytes:
    return (
        "INVITE sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:0441234567@carrier>;tag=t1\r\n"
        f"To: <sip:7001@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:carrier@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


CARRIER = Addr("UDP", "127.0.0.1", 5070)


def test_the_service_sheds_new_invites_on_queue_delay_or_database_backlog_only() -> None:
    """New INVITEs get 503 with Retry-After when they waited too long or too much database
    work waits; an INVITE already taken (its retransmission) never does, whatever the load."""

    async def go() -> None:
        svc, sent = _service()
        svc._loop = asyncio.get_running_loop()
        taken = _invite("a1", "taken@carrier")
        svc.on_data(taken, CARRIER, 0.001)  # taken: a transaction (no call layer: 503 by it)
        assert svc.stats["overload_rejects"] == 0
        sent.clear()
        svc.on_data(_invite("b1", "late@carrier"), CARRIER, 0.4)  # waited past stale
        assert svc.stats["overload_rejects"] == 1
        assert sent[-1].startswith(b"SIP/2.0 503 Service Unavailable (overloaded)")
        assert b"retry-after: 5" in sent[-1].lower()
        svc.backlog = lambda: 21  # the database is behind
        svc.on_data(_invite("c1", "busy@carrier"), CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == 2
        svc.on_data(taken, CARRIER, 0.4)  # the taken INVITE again: absorbed, not refused
        assert svc.stats["overload_rejects"] == 2
        svc.backlog = lambda: 20  # at the bound, not past it
        svc.on_data(_invite("d1", "ok@carrier"), CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == 2

    asyncio.run(go())


def _shedding_service() -> tuple[SipService, list[tuple[bytes, Addr]]]:
    svc, _ = _service()
    sent: list[tuple[bytes, Addr]] = []
    svc.transports.send = lambda data, dest: sent.append((data, dest))  # type: ignore[method-assign]
    svc.backlog = lambda: 99  # the database is behind: every new INVITE is refused
    return svc, sent


def test_a_refusal_made_from_the_datagram_answers_as_the_full_parser_would() -> None:
    """Under overload a new INVITE is refused in Rust before it is parsed; the 503 carries
    what §8.2.6 asks (every Via in order, From, To with a tag, Call-ID, CSeq), the top Via
    stamped (§18.2.1, RFC 3581), and goes where the full path would send it."""

    async def go() -> None:
        svc, sent = _shedding_service()
        svc._loop = asyncio.get_running_loop()
        invite = (
            b"INVITE sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
            b"v: SIP/2.0/UDP 10.0.0.9:5072;rport;branch=z9hG4bK-x1, SIP/2.0/UDP 10.0.0.8\r\n"
            b"Via: SIP/2.0/TCP proxy.example;branch=z9hG4bK-up\r\n"
            b'Max-Forwards: 70\r\nf: "Ann" <sip:0441234567@carrier>;tag=t1\r\n'
            b"t: Support <sip:7001@127.0.0.1>\r\ni: fast@carrier\r\nCSeq: 7 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        svc.on_data(invite, CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == 1
        ((data, dest),) = sent
        assert dest == CARRIER  # rport: the source address
        resp = parse(data)
        req = parse(invite)
        assert isinstance(resp, Response) and isinstance(req, Request)
        assert (resp.status, resp.reason) == (503, "Service Unavailable (overloaded)")
        vias = resp.get_all("via")
        assert (
            vias[0] == "SIP/2.0/UDP 10.0.0.9:5072;rport=5070;branch=z9hG4bK-x1;received=127.0.0.1"
        )
        assert vias[1:] == req.get_all("via")[1:]
        assert resp.get("from") == req.get("from")
        assert resp.get("call-id") == "fast@carrier" and resp.get("cseq") == "7 INVITE"
        assert resp.to.tag and (resp.get("to") or "").startswith(
            "Support <sip:7001@127.0.0.1>;tag="
        )
        assert resp.get("retry-after") == "5"
        # Its retransmission gets the same answer (the same To-tag), and its ACK is
        # dropped before parsing: there is no transaction to match it.
        svc.on_data(invite, CARRIER, 0.0)
        assert sent[1][0] == data
        ack = (
            "ACK sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.9:5072;rport;branch=z9hG4bK-x1\r\n"
            f"From: {req.get('from')}\r\nTo: {resp.get('to')}\r\nCall-ID: fast@carrier\r\n"
            "CSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        svc.on_data(ack, CARRIER, 0.0)
        assert svc.stats["overload_acks"] == 1 and len(sent) == 2
        assert not svc.txn.server  # nothing was kept for any of it

    asyncio.run(go())


def test_what_the_fast_refusal_declines_the_full_path_refuses_or_lets_through() -> None:
    async def go() -> None:
        svc, sent = _shedding_service()
        svc._loop = asyncio.get_running_loop()
        # No rport: the response goes to the Via's port, as the full path sends it.
        svc.on_data(_invite("p1", "via-port@carrier"), Addr("UDP", "127.0.0.1", 40000), 0.0)
        assert sent[-1][1] == Addr("UDP", "127.0.0.1", 5070)
        # A quoted Via parameter: declined by the Rust cut, refused by the Python path.
        quoted = _invite("q1", "quoted@carrier").replace(
            b";branch=z9hG4bK-q1", b';branch=z9hG4bK-q1;x="a;b"'
        )
        svc.on_data(quoted, CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == 2
        refusal = parse(sent[-1][0])
        assert isinstance(refusal, Response) and refusal.get("call-id") == "quoted@carrier"
        # with a To-tag (§8.2.6.2), the same for a retransmission, which the ACK is known by
        tag = refusal.to.tag
        assert tag is not None and tag.startswith("ovl")
        svc.on_data(quoted, CARRIER, 0.0)
        again = parse(sent[-1][0])
        assert isinstance(again, Response) and again.to.tag == tag
        ack = (
            "ACK sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
            'Via: SIP/2.0/UDP 10.0.0.9:5072;rport;branch=z9hG4bK-q1;x="a;b"\r\n'
            f"From: {refusal.get('from')}\r\nTo: {refusal.get('to')}\r\n"
            "Call-ID: quoted@carrier\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        acks, sent_before = svc.stats["overload_acks"], len(sent)
        svc.on_data(ack, CARRIER, 0.0)
        assert svc.stats["overload_acks"] == acks + 1 and len(sent) == sent_before
        # An in-dialog re-INVITE (To-tag) is never refused, whatever the load.
        reinvite = _invite("r1", "dialog@carrier").replace(
            b"To: <sip:7001@127.0.0.1>", b"To: <sip:7001@127.0.0.1>;tag=abc"
        )
        svc.on_data(reinvite, CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == 3  # (the quoted one's retransmission too)
        # A retransmission of an INVITE taken before the overload: absorbed by its
        # transaction, not refused.
        svc.backlog = lambda: 0
        taken = _invite("t1", "taken@carrier")
        svc.on_data(taken, CARRIER, 0.0)
        svc.backlog = lambda: 99
        before = svc.stats["overload_rejects"]
        svc.on_data(taken, CARRIER, 0.0)
        assert svc.stats["overload_rejects"] == before

    asyncio.run(go())


def test_a_late_loop_refuses_new_calls_on_streams_but_udp_goes_by_its_queue_delay() -> None:
    """A busy machine wakes the loop late while SIP keeps up: over UDP the datagram's own
    queue delay decides (it is in the kernel's arrival time), so a short stall refuses
    nobody; over TCP, which has no arrival time, the loop-lag guard still refuses."""

    async def go() -> None:
        svc, sent = _service()
        svc._loop = asyncio.get_running_loop()
        svc.overloaded_until = svc.now() + 60  # the loop woke up late just now
        svc.on_data(_invite("u1", "udp@carrier"), CARRIER, 0.01)
        assert svc.stats["overload_rejects"] == 0
        svc.on_data(_invite("u2", "udp-stale@carrier"), CARRIER, 0.4)  # waited past stale
        assert svc.stats["overload_rejects"] == 1
        tcp = Addr("TCP", "127.0.0.1", 40001)
        svc.on_data(_invite("t1", "tcp@carrier"), tcp, 0.0)
        assert svc.stats["overload_rejects"] == 2
        assert sent[-1].startswith(b"SIP/2.0 503 Service Unavailable (overloaded)")

    asyncio.run(go())
