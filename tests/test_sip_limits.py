"""A node under descriptor pressure: a flood of silent TCP connections from one address, and
no RTP port left for a new call. The node keeps serving HTTP, UDP and other sources, closes
what is over its limits, and answers a call it cannot carry with 503, never silence."""

from __future__ import annotations

import errno
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.sipp import register_phone, wait_for
from tests.test_sip_calls import SipNode, own_sip_node

pytestmark = pytest.mark.slow


@pytest.fixture
def limited_node(pg_admin_url: str, tmp_path: Path) -> Iterator[SipNode]:
    env = {"CCORCH_CRM_ADMIN_PASSWORD": "x" * 12, "CCORCH_SIP_TCP_FIRST_MESSAGE_SECONDS": "1"}
    with own_sip_node(pg_admin_url, tmp_path, env) as (sn, _):
        yield sn


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_flood_of_silent_tcp_connections_leaves_the_node_serving(
    limited_node: SipNode,
) -> None:
    sn = limited_node
    sn.register("7001")
    flood: list[socket.socket] = []
    try:
        for _ in range(1050):  # what once made /healthz hang and a trunk INVITE go silent
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", sn.sip_port))
            except OSError as e:  # the accept queue may push back: that is the kernel's limit
                assert e.errno in (errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EAGAIN), e
                s.close()
                continue
            flood.append(s)
        with urllib.request.urlopen(sn.node.base + "/healthz", timeout=5) as r:
            assert r.status == 200
        # a trunk call over UDP meanwhile reaches the operator
        phone = sn.phone("agent_answer.xml", extra=["-d", "100"])
        r = sn.trunk("trunk_call.xml", extra=["-d", "200"])
        assert r.ok, r  # type: ignore[attr-defined]
        assert phone.wait().ok
        # a phone on another address registers over TCP: the limit is per source
        register_phone(sn.target, sn.cwd, "7002", source_ip="127.0.0.3", tcp=True)
        assert wait_for(lambda: sum(map(_closed_by_peer, flood)) == len(flood), 10)
        m = sn.m()
        refused = m['cc_sip_tcp_refused_total{limit="per_source"}']
        silent = m['cc_sip_tcp_timed_out_total{reason="silent"}']
        # each was closed at accept (over 32 from the address) or after its silent second
        assert refused + silent >= len(flood) and silent >= 32 and refused > 0, (refused, silent)
        assert m["cc_sip_tcp_connections"] <= 1  # the TCP phone's, at most
    finally:
        for s in flood:
            s.close()


def test_an_invite_the_node_has_no_media_for_gets_503(limited_node: SipNode) -> None:
    sn = limited_node
    rtp = 20000 + (sn.sip_port % 200) * 100  # the node's RTP range (see _write_config)
    held: list[socket.socket] = []
    for port in range(rtp, rtp + 100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
            held.append(s)
        except OSError:
            s.close()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk:
            trunk.bind(("127.0.0.1", sn.trunk_port))
            trunk.settimeout(0.5)
            body = (
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            )
            invite = (
                f"INVITE sip:7001@127.0.0.1:{sn.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{sn.trunk_port};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:0441234567@carrier>;tag=t1\r\n"
                f"To: <sip:7001@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}@carrier\r\n"
                "CSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1>\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            )
            deadline = time.monotonic() + 5
            final, heard = "", False
            while time.monotonic() < deadline and not final:
                if not heard:  # a UAC retransmits its INVITE until it hears back (Timer A)
                    trunk.sendto(invite.encode(), ("127.0.0.1", sn.sip_port))
                try:
                    data = trunk.recv(65535).decode()
                except TimeoutError:
                    continue
                heard = True
                if int(data.split(" ", 2)[1]) >= 200:
                    final = data
        assert final.startswith("SIP/2.0 503"), final
        assert "retry-after: 5" in final.lower()
    finally:
        for s in held:
            s.close()


def _invite(sip_port: int, trunk_port: int, call_id: str, user: str = "7001") -> bytes:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:{user}@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{trunk_port};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:0441234567@carrier>;tag=t1\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _first_answer(trunk: socket.socket, call_id: str, *, final: bool) -> str:
    """The node's first response (``final``: its first final one) to the call's INVITE."""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        try:
            data = trunk.recv(65535).decode()
        except TimeoutError:
            continue
        if not data.startswith("SIP/2.0") or f"call-id: {call_id}" not in data.lower():
            continue
        if not final or int(data.split(" ", 2)[1]) >= 200:
            return data
    raise AssertionError("no answer from the node")


@contextmanager
def _ringing_phone_and_trunk(sn: SipNode, cwd: Path) -> Iterator[socket.socket]:
    """7001 registered at a socket that never answers (its calls ring), and the carrier's
    socket at the trunk's port (0.5 s reads): the trunk's socket."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk,
    ):
        phone.bind(("127.0.0.1", 0))
        register_phone(f"127.0.0.1:{sn.sip_port}", cwd, "7001", contact_port=phone.getsockname()[1])
        trunk.bind(("127.0.0.1", sn.trunk_port))
        trunk.settimeout(0.5)
        yield trunk


def test_a_trunk_past_its_call_limit_gets_503_and_a_call_that_ends_makes_room(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """The carrier's trunk allows 2 calls up at once: a third gets 503 with the reason and
    Retry-After while two ring; when they end (the phone never answers: 3 s ring), the
    next call is taken again."""
    env = {"CCORCH_CRM_ADMIN_PASSWORD": "x" * 12}
    with (
        own_sip_node(pg_admin_url, tmp_path, env, carrier_extra="max_calls = 2") as (sn, _),
        _ringing_phone_and_trunk(sn, tmp_path) as trunk,
    ):
        node = ("127.0.0.1", sn.sip_port)
        ringing = [f"{uuid.uuid4().hex}@carrier" for _ in range(2)]
        for call_id in ringing:
            trunk.sendto(_invite(sn.sip_port, sn.trunk_port, call_id), node)
            assert _first_answer(trunk, call_id, final=False).startswith("SIP/2.0 100")
        third = f"{uuid.uuid4().hex}@carrier"
        trunk.sendto(_invite(sn.sip_port, sn.trunk_port, third), node)
        refused = _first_answer(trunk, third, final=True)
        assert refused.startswith(
            "SIP/2.0 503 Service Unavailable (trunk carrier: its limit of 2 calls up at once)"
        ), refused
        assert "retry-after: 5" in refused.lower()
        assert wait_for(lambda: sn.m().get("cc_sip_limit_rejects_total") == 1, 5)
        # the two ringing calls end unanswered (480 each); then a call is taken again
        ended = [_first_answer(trunk, call_id, final=True) for call_id in ringing]
        assert all(e.split("\r\n", 1)[0].startswith("SIP/2.0 480") for e in ended), ended
        fourth = f"{uuid.uuid4().hex}@carrier"
        trunk.sendto(_invite(sn.sip_port, sn.trunk_port, fourth), node)
        assert _first_answer(trunk, fourth, final=False).startswith("SIP/2.0 100")
        assert sn.m().get("cc_sip_limit_rejects_total") == 1


def test_invites_that_waited_in_the_queue_get_503_and_an_accepted_ones_retransmission_does_not(
    limited_node: SipNode, tmp_path: Path
) -> None:
    """The node stops reading for 0.6 s (SIGSTOP: every datagram waits in the kernel): the
    two new INVITEs that waited are refused with 503 and Retry-After by their measured queue
    delay, while the retransmission of an INVITE accepted before is absorbed by its
    transaction (a provisional answer again, never a 503). Once the queue has drained, a new
    call is taken."""
    sn = limited_node
    node = ("127.0.0.1", sn.sip_port)
    with _ringing_phone_and_trunk(sn, tmp_path) as trunk:
        accepted = f"{uuid.uuid4().hex}@carrier"
        invite = _invite(sn.sip_port, sn.trunk_port, accepted)
        trunk.sendto(invite, node)
        assert _first_answer(trunk, accepted, final=False).startswith("SIP/2.0 100")
        late = [f"{uuid.uuid4().hex}@carrier" for _ in range(2)]
        sn.node.proc.send_signal(signal.SIGSTOP)
        try:
            for call_id in late:
                trunk.sendto(_invite(sn.sip_port, sn.trunk_port, call_id), node)
            trunk.sendto(invite, node)  # the accepted call's INVITE, retransmitted
            time.sleep(0.6)
        finally:
            sn.node.proc.send_signal(signal.SIGCONT)
        for call_id in late:
            refused = _first_answer(trunk, call_id, final=True)
            assert refused.startswith("SIP/2.0 503 Service Unavailable (overloaded)"), refused
            assert "retry-after: 5" in refused.lower()
        again = _first_answer(trunk, accepted, final=False)
        assert int(again.split(" ", 2)[1]) < 200, again  # absorbed: 100/180 again
        m = sn.m()
        assert m["cc_sip_overload_rejects_total"] == 2
        assert m["cc_sip_queue_delay_seconds"] >= 0.5  # measured from the kernel's time
        time.sleep(0.5)
        fresh = f"{uuid.uuid4().hex}@carrier"
        trunk.sendto(_invite(sn.sip_port, sn.trunk_port, fresh), node)
        assert _first_answer(trunk, fresh, final=False).startswith("SIP/2.0 100")
