"""SIP parser and serializer throughput on a realistic INVITE (a carrier's, with SDP).

Run: .venv/bin/python -m pytest benches/test_sip_bench.py --benchmark-only -p no:cacheprovider
(after `scripts/setup.sh release`).

Side by side in one run: ``parse`` with the header section cut in Rust (the default) and the
same parse on the pure-Python path (``fast=False``), and writing the message back; and an
INVITE refused under overload, in Rust from the datagram and as the Python path made it.
"""

from __future__ import annotations

from typing import Any

import pytest

from ccorch._core import sip_is_ack_of_refusal, sip_refuse_new_invite
from ccorch.sip.message import Request, make_response, parse

SDP = (
    b"v=0\r\no=carrier 2890844526 2890844526 IN IP4 203.0.113.10\r\ns=-\r\n"
    b"c=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:+380441234567@198.51.100.5:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9a3c2e;rport\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Ivan Petrenko" <sip:+380671234567@203.0.113.10;user=phone>;tag=9fxced76sl\r\n'
    b"To: <sip:+380441234567@198.51.100.5;user=phone>\r\n"
    b"Call-ID: 3848276298220188511@203.0.113.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:+380671234567@203.0.113.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, REFER, NOTIFY\r\n"
    b"Supported: timer, replaces, 100rel\r\n"
    b"Session-Expires: 1800\r\n"
    b"P-Asserted-Identity: <sip:+380671234567@203.0.113.10;user=phone>\r\n"
    b"User-Agent: Carrier SBC 5.2\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SDP)
) + SDP


def _full(fast: bool) -> Any:
    m = parse(INVITE, fast=fast)
    # what the call layer reads from every INVITE
    return (m.call_id, m.cseq, m.from_.tag, m.to.tag, m.top_via.branch, m.uri.user)  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["rust-split", "python"])
def test_parse_invite(benchmark: Any, path: str) -> None:
    out = benchmark(_full, path == "rust-split")
    assert out[0] == "3848276298220188511@203.0.113.10"


def test_serialize_invite(benchmark: Any) -> None:
    m = parse(INVITE)
    data = benchmark(m.to_bytes)
    assert data.endswith(SDP)


def _refuse_in_python() -> bytes:
    """What the node did for an INVITE it sheds before the refusal moved to Rust."""
    m = parse(INVITE)
    assert isinstance(m, Request)
    resp = make_response(m, 503, "Service Unavailable (overloaded)", to_tag="x")
    resp.headers.append(("retry-after", "5"))
    return resp.to_bytes()


def _refuse_in_rust() -> bytes:
    r = sip_refuse_new_invite(
        INVITE, "203.0.113.10", 5060, 503, "Service Unavailable (overloaded)", 5
    )
    assert r is not None
    return r[1]


@pytest.mark.parametrize("path", ["rust", "python"])
def test_refuse_invite_under_overload(benchmark: Any, path: str) -> None:
    """A new INVITE refused with 503 while shedding: parse, response, bytes."""
    out = benchmark(_refuse_in_rust if path == "rust" else _refuse_in_python)
    assert out.startswith(b"SIP/2.0 503 ")


ACK_OF_REFUSAL = (
    b"ACK sip:+380441234567@198.51.100.5:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9a3c2e;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Ivan Petrenko" <sip:+380671234567@203.0.113.10;user=phone>;tag=9fxced76sl\r\n'
    b"To: <sip:+380441234567@198.51.100.5;user=phone>;tag=ovl1a2b3c4d\r\n"
    b"Call-ID: 3848276298220188511@203.0.113.10\r\n"
    b"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("path", ["rust", "python"])
def test_ack_of_a_refusal(benchmark: Any, path: str) -> None:
    """The ACK a refused caller sends: recognised from the datagram, or parsed in full (the
    Python path then looked for its transaction and found none)."""

    def python() -> bool:
        m = parse(ACK_OF_REFUSAL)
        return m.to.tag is not None and m.to.tag.startswith("ovl")  # type: ignore[union-attr]

    assert (
        benchmark(lambda: sip_is_ack_of_refusal(ACK_OF_REFUSAL))
        if path == "rust"
        else benchmark(python)
    )
