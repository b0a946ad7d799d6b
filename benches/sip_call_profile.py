"""One B2BUA call's CPU in-process, and where it goes: the whole SIP path without sockets.

    .venv/bin/python benches/sip_call_profile.py --calls 3000 [--profile]

Drives ccorch's real ``SipService`` and ``CallController`` (with a real media engine) by
feeding them the bytes a trunk and an agent's phone would send, and capturing what they
send back instead of writing it to a socket: INVITE → 100 → (agent INVITE → 180 → 200 →
ACK) → 180 → 200 → ACK → BYE → 200 (and BYE → 200 on the agent leg). Reports the CPU per
call, the parser's throughput on a realistic INVITE and its share of a call (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccorch.calls.controller import CallController
from ccorch.media import MediaEngine
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
    b"m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def invite(n: int) -> bytes:
    return (
        f"INVITE sip:7001@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bench-{n}-0\r\n"
        f'From: "Caller" <sip:0671234567@127.0.0.1:5070>;tag=trunk{n}\r\n'
        f"To: <sip:7001@127.0.0.1:5060>\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:trunk@127.0.0.1:5070>\r\n"
        f"Max-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def in_dialog(method: str, n: int, to_tag: str, cseq: int) -> bytes:
    return (
        f"{method} sip:ccorch@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bench-{n}-{cseq}{method}\r\n"
        f'From: "Caller" <sip:0671234567@127.0.0.1:5070>;tag=trunk{n}\r\n'
        f"To: <sip:7001@127.0.0.1:5060>;tag={to_tag}\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Addr]] = []

    def __call__(self, data: bytes, dest: Addr) -> None:
        self.sent.append((data, dest))

    def take(self) -> list[tuple[bytes, Addr]]:
        out, self.sent = self.sent, []
        return out


async def run_calls(n_calls: int, *, hold: bool = False) -> float:
    """Place ``n_calls`` calls; with ``hold`` leave them established (no BYE), let every
    transaction end (T1 = 10 ms, so 64*T1 = 0.64 s), and return the Python heap bytes each
    established call keeps (tracemalloc; the media engine's own memory is not in it)."""
    svc = SipService(
        host="127.0.0.1",
        port=5060,
        realm="ccorch",
        timers=Timers(t1=0.01, t2=0.04, t4=0.05) if hold else Timers(),
        trunks=[Trunk("t", "127.0.0.1", 5070, match_port=True, options_interval=0)],
        guard=Guard(),
        udp=False,
        tcp=False,
    )
    svc._loop = asyncio.get_running_loop()
    cap = Capture()
    svc.transports.send = cap  # type: ignore[method-assign]
    media = MediaEngine(bind_ip="127.0.0.1", port_min=20000, port_max=40000, shards=1)
    ctl = CallController(svc, media)
    svc.accounts["7001"] = Account("7001", "", "")
    svc.registrar.bindings["7001"] = {
        "sip:7001@127.0.0.1:5082": Binding("sip:7001@127.0.0.1:5082", 1e12, "r", 1, PHONE)
    }
    spent = 0.0
    if hold:
        import gc
        import tracemalloc

        tracemalloc.start()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]

    def feed(data: bytes, source: Addr) -> None:
        # only ccorch's own work is timed, not this harness building and reading messages
        nonlocal spent
        t = time.thread_time()
        svc.on_data(data, source)
        spent += time.thread_time() - t

    for n in range(n_calls):
        t = time.thread_time()
        svc.on_data(invite(n), TRUNK)
        await asyncio.sleep(0)  # the call's start task routes and rings the agent
        spent += time.thread_time() - t
        agent_invite = next(parse(d) for d, a in cap.take() if a == PHONE)
        assert isinstance(agent_invite, Request)
        ringing = make_response(agent_invite, 180, to_tag=f"agent{n}")
        feed(ringing.to_bytes(), PHONE)
        ok = make_response(agent_invite, 200, to_tag=f"agent{n}")
        ok.headers.append(("contact", "<sip:agent@127.0.0.1:5082>"))
        ok.headers.append(("content-type", "application/sdp"))
        ok.body = SDP.replace(b"6000", b"6002")
        feed(ok.to_bytes(), PHONE)
        to_trunk = [parse(d) for d, a in cap.take() if a == TRUNK]
        final = next(m for m in to_trunk if isinstance(m, Response) and m.status == 200)
        tag = final.to.tag or ""
        feed(in_dialog("ACK", n, tag, 1), TRUNK)
        if hold:
            cap.take()
            continue
        feed(in_dialog("BYE", n, tag, 2), TRUNK)
        agent_bye = next(parse(d) for d, a in cap.take() if a == PHONE)
        assert isinstance(agent_bye, Request) and agent_bye.method == "BYE"
        feed(make_response(agent_bye, 200).to_bytes(), PHONE)
        cap.take()
    if hold:
        await asyncio.sleep(1.0)  # every transaction's last timer has fired
        gc.collect()
        cap.take()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(ctl.calls) == n_calls and not svc.txn.server and not svc.txn.client
        media.shutdown()
        return (after - before) / n_calls
    assert not ctl.calls, "calls left over"
    media.shutdown()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--hold", type=int, default=0, help="measure memory per established call")
    a = ap.parse_args()
    if a.hold:
        per_call = asyncio.run(run_calls(a.hold, hold=True))
        print(
            f"{a.hold} established calls: {per_call / 1024:.1f} KiB of Python heap per call (both dialogs, transactions gone)"
        )
        return
    data = invite(1)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        parse(data)
    per = (time.perf_counter() - t0) / n
    print(f"parse realistic INVITE ({len(data)} bytes): {1 / per:,.0f} msg/s ({per * 1e6:.1f} µs)")
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        spent = asyncio.run(run_calls(a.calls))
        prof.disable()
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(25)
        # ccorch's own parsing: parse() as called by SipService.on_data, over on_data's total
        stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
        on_data = next(k for k in stats if k[2] == "on_data" and k[0].endswith("service.py"))
        line = parse.__code__.co_firstlineno
        parse_key = next(k for k in stats if k[2] == "parse" and k[1] == line)
        in_parse = stats[parse_key][4].get(on_data, (0, 0, 0, 0))[3]
        print(
            f"parse() share of ccorch's SIP work (cProfile, under on_data): {100 * in_parse / stats[on_data][3]:.1f}%"
        )
    else:
        spent = asyncio.run(run_calls(a.calls))
    print(
        f"{a.calls} calls in {spent:.2f} s CPU: {spent / a.calls * 1e6:.0f} µs per call, {a.calls / spent:,.0f} calls/s per core (SIP+call layer, no sockets)"
    )


if __name__ == "__main__":
    main()
