"""The B2BUA end to end against real peers: SIPp as the carrier's trunk and as agents' phones,
a real ccorch node (its SIP stack, media engine and PostgreSQL), fast timers (T1 = 50 ms)."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Node, _with_dbname, start_node
from tests.sipp import Uas, free_udp_port, metrics, register_phone, run, wait_for

pytestmark = pytest.mark.slow

T1_MS = 50


@dataclass
class SipNode:
    node: Node
    sip_port: int
    trunk_port: int
    cwd: Path
    phones: dict[str, int]  # extension -> port its SIPp phone listens on
    probe_port: int  # the "probed" trunk, which gets OPTIONS every 0.3 s

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def m(self) -> dict[str, float]:
        return metrics(self.node.base)

    def register(
        self, ext: str, *, source_ip: str = "127.0.0.1", expires: int = 300, tcp: bool = False
    ) -> int:
        phone_port = register_phone(
            self.target, self.cwd, ext, source_ip=source_ip, expires=expires, tcp=tcp
        )
        self.phones[ext] = phone_port
        return phone_port

    def trunk(self, scenario: str, ext: str = "7001", **kw: object) -> object:
        extra = ["-s", ext, *kw.pop("extra", [])]  # type: ignore[misc]
        return run(scenario, self.target, port=self.trunk_port, cwd=self.cwd, extra=extra, **kw)  # type: ignore[arg-type]

    def phone(self, scenario: str, ext: str = "7001", **kw: object) -> Uas:
        return Uas(scenario, port=self.phones[ext], cwd=self.cwd, **kw)  # type: ignore[arg-type]

    def settled(self) -> bool:
        """No call, dialog or media leg left over."""
        m = self.m()
        return (
            m.get("cc_calls_active", -1) == 0
            and m.get("cc_sip_dialogs", -1) == 0
            and m.get("cc_media_legs", -1) == 0
        )


def _write_config(
    cwd: Path,
    sip_port: int,
    trunk_port: int,
    probe_port: int,
    min_se: int = 1,
    carrier_extra: str = "",
) -> None:
    (cwd / "trunks.toml").write_text(
        f"""
[[trunk]]
name = "carrier"
host = "127.0.0.1"
port = {trunk_port}
match = "host+port"
options_interval = 0
outbound = true
username = "trunkuser"
password = "trunkpass"
{carrier_extra}

[[trunk]]
name = "probed"
host = "127.0.0.1"
port = {probe_port}
match = "host+port"
options_interval = 0.3

[[trunk]]
name = "carrier-tcp"
host = "127.0.0.2"
transport = "tcp"
options_interval = 0
"""
    )
    rtp = 20000 + (sip_port % 200) * 100
    (cwd / "ccorch.toml").write_text(
        f"""
[sip]
port = {sip_port}
t1_ms = {T1_MS}
trunks_file = "{cwd / "trunks.toml"}"
auth_algorithms = "MD5,SHA-256"
ring_timeout_seconds = 3
min_se = {min_se}
auth_failures = 5
[media]
port_min = {rtp}
port_max = {rtp + 99}
"""
    )


@contextlib.contextmanager
def own_sip_node(
    pg_admin_url: str, cwd: Path, env: dict[str, str], carrier_extra: str = ""
) -> Iterator[tuple[SipNode, str]]:
    """A node of its own (database, ports, the test trunks) for one test: (node, its DB)."""
    name = f"ccorch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    sip_port, trunk_port, probe_port = free_udp_port(), free_udp_port(), free_udp_port()
    _write_config(cwd, sip_port, trunk_port, probe_port, carrier_extra=carrier_extra)
    db = _with_dbname(pg_admin_url, name)
    sn = SipNode(
        start_node(cwd, {"DATABASE_URL": db, **env}), sip_port, trunk_port, cwd, {}, probe_port
    )
    try:
        yield sn, db
    finally:
        sn.node.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def sip_node(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipNode]:
    name = f"ccorch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cwd = tmp_path_factory.mktemp("sipnode")
    sip_port, trunk_port, probe_port = free_udp_port(), free_udp_port(), free_udp_port()
    _write_config(cwd, sip_port, trunk_port, probe_port)
    node = start_node(
        cwd,
        {"DATABASE_URL": _with_dbname(pg_admin_url, name), "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12},
    )
    try:
        sn = SipNode(node, sip_port, trunk_port, cwd, {}, probe_port)
        sn.register("7001")
        sn.register("7002")
        yield sn
    finally:
        node.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_trunk_call_reaches_the_agent_and_the_caller_hangs_up(sip_node: SipNode) -> None:
    before = sip_node.m()
    phone = sip_node.phone("agent_answer.xml", m=3, extra=["-d", "100"])
    r = sip_node.trunk("trunk_call.xml", m=3, extra=["-d", "300", "-l", "3"])
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok
    after = sip_node.m()
    assert after["cc_calls_answered_total"] - before.get("cc_calls_answered_total", 0) == 3
    assert after.get("cc_sip_ack_timeouts_total", 0) == before.get("cc_sip_ack_timeouts_total", 0)
    assert wait_for(sip_node.settled), sip_node.m()


def test_agent_hangs_up_and_the_caller_gets_bye(sip_node: SipNode) -> None:
    phone = sip_node.phone("agent_hangup.xml", m=2, extra=["-d", "300"])
    r = sip_node.trunk("trunk_call_wait_bye.xml", m=2)
    assert r.ok, r  # type: ignore[attr-defined]
    p = phone.wait()
    assert p.ok, p
    assert wait_for(sip_node.settled), sip_node.m()


def test_cancel_while_the_agent_rings(sip_node: SipNode) -> None:
    before = sip_node.m().get('cc_calls_ended_total{reason="cancelled"}', 0)
    phone = sip_node.phone("agent_ring_cancelled.xml")
    r = sip_node.trunk("trunk_cancel.xml", extra=["-d", "300"])
    assert r.ok, r  # type: ignore[attr-defined]
    p = phone.wait()
    assert p.ok, p
    assert sip_node.m()['cc_calls_ended_total{reason="cancelled"}'] == before + 1
    assert wait_for(sip_node.settled), sip_node.m()


def test_busy_agent_gives_the_caller_486(sip_node: SipNode) -> None:
    phone = sip_node.phone("agent_busy.xml")
    r = sip_node.trunk("trunk_busy.xml")
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok
    assert wait_for(sip_node.settled), sip_node.m()


def test_no_answer_cancels_the_phone_and_gives_the_caller_480(sip_node: SipNode) -> None:
    phone = sip_node.phone("agent_ring_cancelled.xml")
    t0 = time.monotonic()
    r = sip_node.trunk("trunk_unavailable.xml")
    waited = time.monotonic() - t0
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok
    assert waited >= 2.5  # ring_timeout_seconds = 3: not refused before it ran out
    assert wait_for(sip_node.settled), sip_node.m()


def test_unregistered_extension_and_unknown_number(sip_node: SipNode) -> None:
    r = sip_node.trunk("trunk_unavailable.xml", ext="7004")  # exists, not registered
    assert r.ok, r  # type: ignore[attr-defined]
    assert wait_for(sip_node.settled), sip_node.m()


def test_duplicate_invite_makes_one_call(sip_node: SipNode) -> None:
    before = sip_node.m().get("cc_calls_started_total", 0)
    phone = sip_node.phone("agent_answer.xml", extra=["-d", "100"])
    r = sip_node.trunk("trunk_duplicate_invite.xml", extra=["-d", "300"])
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok  # -m 1: a second INVITE would have failed the phone's run
    assert sip_node.m()["cc_calls_started_total"] == before + 1
    assert wait_for(sip_node.settled), sip_node.m()


def test_lost_ack_resends_200_then_hangs_up_after_timer_h(sip_node: SipNode) -> None:
    before = sip_node.m().get("cc_sip_ack_timeouts_total", 0)
    phone = sip_node.phone("agent_answer.xml", extra=["-d", "50"])
    t0 = time.monotonic()
    r = sip_node.trunk("trunk_no_ack.xml", timeout=30)
    waited = time.monotonic() - t0
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok  # the agent's leg got its BYE too
    assert waited >= 64 * T1_MS / 1000 * 0.9
    assert True  # SIPp absorbs our 200's retransmissions
    assert sip_node.m()["cc_sip_ack_timeouts_total"] == before + 1
    assert wait_for(sip_node.settled), sip_node.m()


def test_hold_and_resume_by_reinvite(sip_node: SipNode) -> None:
    phone = sip_node.phone("agent_answer.xml", extra=["-d", "50"])
    r = sip_node.trunk("trunk_hold.xml", extra=["-d", "200"])
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok
    assert wait_for(sip_node.settled), sip_node.m()


def test_session_timer_without_refresh_ends_the_call(sip_node: SipNode) -> None:
    phone = sip_node.phone("agent_answer.xml", extra=["-d", "50"])
    t0 = time.monotonic()
    r = sip_node.trunk("trunk_session_timer.xml", extra=["-key", "se", "3"], timeout=30)
    waited = time.monotonic() - t0
    assert r.ok, r  # type: ignore[attr-defined]
    assert phone.wait().ok
    assert 1.5 <= waited < 10  # 3 s interval minus min(32, 3/3)
    assert sip_node.m()['cc_calls_ended_total{reason="session-expired"}'] >= 1


def test_options_keepalive_and_stranger_invite(sip_node: SipNode) -> None:
    r = run("options.xml", sip_node.target, port=free_udp_port(), cwd=sip_node.cwd, m=3)
    assert r.ok, r
    r = run(
        "trunk_forbidden.xml",
        sip_node.target,
        port=free_udp_port("127.0.0.3"),
        cwd=sip_node.cwd,
        extra=["-s", "7001", "-i", "127.0.0.3"],
    )
    assert r.ok, r
    assert sip_node.m()["cc_sip_forbidden_invites_total"] >= 1


def test_malformed_messages_get_400_or_are_dropped_and_service_goes_on(sip_node: SipNode) -> None:
    before = sip_node.m()["cc_sip_malformed_total"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.bind(("127.0.0.1", 0))
        dest = ("127.0.0.1", sip_node.sip_port)
        s.sendto(b"\x00\xff garbage \r\n\r\n\x01\x02", dest)
        s.sendto(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnocid\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\n\r\n",
            dest,
        )
        with pytest.raises(TimeoutError):  # neither gets an answer: nothing to address it with
            s.recvfrom(2000)
    r = run("bad_content_length.xml", sip_node.target, port=free_udp_port(), cwd=sip_node.cwd)
    assert r.ok, r  # got 400 naming Content-Length
    assert sip_node.m()["cc_sip_malformed_total"] == before + 3
    phone = sip_node.phone("agent_answer.xml", extra=["-d", "50"])
    r2 = sip_node.trunk("trunk_call.xml", extra=["-d", "100"])
    assert r2.ok, r2  # type: ignore[attr-defined]
    assert phone.wait().ok


def test_register_brute_force_is_banned(sip_node: SipNode) -> None:
    ip = "127.0.0.5"
    r = run(
        "agent_register_wrong.xml",
        sip_node.target,
        port=free_udp_port(ip),
        cwd=sip_node.cwd,
        m=5,
        extra=[
            "-s",
            "7003",
            "-au",
            "7003",
            "-ap",
            "wrong",
            "-i",
            ip,
            "-l",
            "1",
            "-key",
            "contact_port",
            "5999",
            "-key",
            "expires",
            "300",
        ],
    )
    assert r.ok, r  # five 401s, each after a wrong password
    m = sip_node.m()
    assert m["cc_sip_bans_total"] >= 1
    # now even the right password gets no answer from this address...
    r = run(
        "agent_register.xml",
        sip_node.target,
        port=free_udp_port(ip),
        cwd=sip_node.cwd,
        extra=[
            "-s",
            "7003",
            "-au",
            "7003",
            "-ap",
            "agent7003",
            "-i",
            ip,
            "-key",
            "contact_port",
            "5999",
            "-key",
            "expires",
            "300",
            "-recv_timeout",
            "2000",
        ],
        timeout=8,
    )
    assert not r.ok
    assert sip_node.m()["cc_sip_dropped_banned_total"] > m.get("cc_sip_dropped_banned_total", 0)
    # ...while other sources are served
    sip_node.register("7003")


def test_blind_transfer_by_refer(sip_node: SipNode) -> None:
    before = sip_node.m().get("cc_calls_answered_total", 0)
    first = sip_node.phone(
        "agent_refer.xml", "7001", extra=["-d", "300", "-key", "transfer_to", "7002"]
    )
    second = sip_node.phone("agent_answer.xml", "7002", extra=["-d", "100"])
    r = sip_node.trunk("trunk_call.xml", extra=["-d", "2500"])
    assert r.ok, r  # type: ignore[attr-defined]
    f = first.wait()
    assert f.ok, f  # 202, NOTIFY 100, NOTIFY 200, then our BYE
    s = second.wait()
    assert s.ok, s  # answered, then the caller's BYE reached it
    assert sip_node.m()["cc_calls_answered_total"] == before + 1
    assert wait_for(sip_node.settled), sip_node.m()


def test_attended_transfer_with_replaces(sip_node: SipNode) -> None:
    """7001 answers the caller, consults 7002 on a second line, then REFERs the caller to
    that consultation with Replaces: the caller ends up talking to 7002; 7001's two legs end."""
    cwd = sip_node.cwd
    master_port, slave_port = sip_node.phones["7001"], free_udp_port()
    cfg = cwd / "slaves.cfg"
    cfg.write_text(f"m;127.0.0.1:{free_udp_port()}\ns1;127.0.0.1:{free_udp_port()}\n")
    before = sip_node.m().get('cc_calls_ended_total{reason="transferred"}', 0)
    target = sip_node.phone("agent_answer.xml", "7002", extra=["-d", "100"])
    consult = Uas(
        "agent_consult.xml",
        port=slave_port,
        cwd=cwd,
        extra=[
            "-s",
            "7002",
            "-au",
            "7001",
            "-ap",
            "agent7001",
            "-slave",
            "s1",
            "-slave_cfg",
            str(cfg),
            sip_node.target,
        ],
    )
    first = Uas(
        "agent_attended.xml",
        port=master_port,
        cwd=cwd,
        extra=["-key", "transfer_to", "7002", "-master", "m", "-slave_cfg", str(cfg)],
    )
    r = sip_node.trunk("trunk_call.xml", extra=["-d", "3000"])
    assert r.ok, r  # type: ignore[attr-defined]
    for p in (first, consult, target):
        res = p.wait()
        assert res.ok, res
    m = sip_node.m()
    assert m['cc_calls_ended_total{reason="transferred"}'] == before + 1
    assert wait_for(sip_node.settled), sip_node.m()


def test_tcp_phone_and_tcp_trunk(sip_node: SipNode) -> None:
    """A phone registered over TCP is called over TCP (a new connection to its Contact once
    the registering one has closed); a trunk sending over TCP is answered on its connection."""
    sip_node.register("7004", tcp=True)
    phone = sip_node.phone("agent_answer.xml", "7004", extra=["-d", "50", "-t", "t1"], m=2)
    r = sip_node.trunk("trunk_call.xml", ext="7004", extra=["-d", "100"])
    assert r.ok, r  # type: ignore[attr-defined]
    r = run(
        "trunk_call.xml",
        sip_node.target,
        port=free_udp_port("127.0.0.2"),
        cwd=sip_node.cwd,
        extra=["-s", "7004", "-d", "100", "-t", "t1", "-i", "127.0.0.2"],
    )
    assert r.ok, r
    assert phone.wait().ok
    assert wait_for(sip_node.settled), sip_node.m()


def test_agent_calls_out_through_a_trunk_that_challenges(sip_node: SipNode) -> None:
    """An agent dials a national number: ccorch authenticates the agent (407), sends the call
    to the outbound trunk as E.164, answers the carrier's 407 with the trunk's credentials."""
    carrier = Uas("carrier_challenge.xml", port=sip_node.trunk_port, cwd=sip_node.cwd)
    r = run(
        "agent_dial.xml",
        sip_node.target,
        port=free_udp_port(),
        cwd=sip_node.cwd,
        extra=["-s", "0501234567", "-au", "7001", "-ap", "agent7001", "-d", "200"],
    )
    assert r.ok, r
    c = carrier.wait()
    assert c.ok, c  # its verifyauth accepted our Proxy-Authorization
    assert wait_for(sip_node.settled), sip_node.m()


def test_trunk_options_probing_marks_it_up_and_down(sip_node: SipNode) -> None:
    up = 'cc_sip_trunk_up{trunk="probed"}'
    carrier = Uas("options_uas.xml", port=sip_node.probe_port, cwd=sip_node.cwd, m=10_000)
    try:
        # a probe sent before the carrier was up times out first (64*T1 = 3.2 s)
        assert wait_for(lambda: sip_node.m().get(up) == 1, 10), sip_node.m().get(up)
    finally:
        carrier.kill()
    # no answer: down after the OPTIONS transaction times out (64*T1 = 3.2 s)
    assert wait_for(lambda: sip_node.m().get(up) == 0, 10), sip_node.m().get(up)


def test_unknown_dialog_gets_481_and_an_options_flood_is_banned(sip_node: SipNode) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.sendto(
            f"BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKnodlg\r\n"
            "From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>;tag=nosuch\r\nCall-ID: nosuch@x\r\n"
            "CSeq: 5 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode(),
            ("127.0.0.1", sip_node.sip_port),
        )
        data, _ = s.recvfrom(4000)
    assert data.startswith(b"SIP/2.0 481 ")
    # 300 OPTIONS at 300/s from one address that is not a trunk: over 20/s (burst 60)
    before = sip_node.m().get("cc_sip_dropped_rate_total", 0)
    r = run(
        "options.xml",
        sip_node.target,
        port=free_udp_port("127.0.0.7"),
        cwd=sip_node.cwd,
        m=300,
        extra=["-i", "127.0.0.7", "-r", "300", "-recv_timeout", "1000"],
        timeout=20,
    )
    assert not r.ok  # most got no answer
    m = sip_node.m()
    assert m["cc_sip_dropped_rate_total"] - before >= 1
    assert m["cc_sip_dropped_banned_total"] > 0  # the rest fell on the ban
