"""The inbound path end to end: trunk → IVR → ACD queue → the operator's phone, with real
parts: SIPp as trunk signaling and as operators' phones (echoing RTP back), the test's own
RTP endpoint as the caller's ear and mouth, the media engine, PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.sync.client import ClientConnection, connect

from ccorch._core import g711_decode, g711_encode
from ccorch.calls.journal import Journal
from ccorch.demo import caller_command
from ccorch.ivr import tts
from ccorch.media.music import default_music
from tests.conftest import Node, _with_dbname, start_node
from tests.sipp import (
    DEMO_FLOWS,
    Uas,
    free_udp_port,
    metrics,
    register_phone,
    run,
    scenario,
    wait_for,
)
from tests.test_ivr import Phone

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

QUEUES = """
[[queue]]
name = "tech"
skills = "tech"
wrap_up_seconds = 1
ring_seconds = 5
expected_handle_seconds = 15   # the tests' calls last seconds

[[queue]]
name = "general"
skills = "general"
wrap_up_seconds = 1
ring_seconds = 5
expected_handle_seconds = 15

[[queue]]
name = "sales"           # nobody serves it: callers wait and may leave a message instead
skills = "sales"

[[agent]]
extension = "7001"
skills = { tech = 5 }
queues = ["tech"]

[[agent]]
extension = "7003"
skills = { general = 5 }
queues = ["general"]

[[agent]]
extension = "7004"
skills = { general = 3 }
queues = ["general"]
"""


@dataclass
class Center:
    node: Node
    sip_port: int
    trunk_port: int
    cwd: Path
    db: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def m(self) -> dict[str, float]:
        return metrics(self.node.base)

    def register(self, ext: str) -> int:
        return register_phone(self.target, self.cwd, ext)

    def caller(
        self,
        scenario_name: str = "trunk_ivr_call.xml",
        extra: list[str] | None = None,
        ani: str = "0671234567",  # Ivan Petrenko, the demo customer
        dnis: str = "100",
    ) -> tuple[Phone, subprocess.Popen[bytes]]:
        phone = Phone()
        p = subprocess.Popen(
            caller_command(
                "sipp",
                self.target,
                dnis,
                ani,
                phone.port,
                port=free_udp_port(),
                scenario=scenario(scenario_name),
                timeout_seconds=90,
                extra=tuple(extra or ()),
            ),
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return phone, p


@contextlib.contextmanager
def _center(
    pg_admin_url: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    queues: str = QUEUES,
    trunks: str = "",
) -> Iterator[Center]:
    """A node with the demo's flows, the test queues, a carrier trunk (and ``trunks``, more
    [[trunk]] tables) and its own database."""
    name = f"ccorch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    flows = cwd / "flows"
    flows.mkdir()
    for f in DEMO_FLOWS.glob("*.yaml"):
        shutil.copy(f, flows / f.name)
    (flows / "queues.toml").write_text(queues)
    sip_port, trunk_port = free_udp_port(), free_udp_port()
    (cwd / "trunks.toml").write_text(
        '[[trunk]]\nname = "carrier"\nhost = "127.0.0.1"\noptions_interval = 0\n'
        # where calls to outside numbers go (the IVR's transfer to an external number)
        f'[[trunk]]\nname = "out"\nhost = "127.0.0.2"\nport = {trunk_port}\n'
        "outbound = true\noptions_interval = 0\n" + trunks
    )
    rtp = 20000 + (sip_port % 200) * 100
    (cwd / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\nt1_ms = 50\ntrunks_file = "{cwd / "trunks.toml"}"\n'
        'auth_algorithms = "MD5,SHA-256"\n'
        f"[media]\nport_min = {rtp}\nport_max = {rtp + 99}\n"
        f'[ivr]\nflows_dir = "{flows}"\ntts_cache_dir = "{cwd / "tts"}"\n'
    )
    db = _with_dbname(pg_admin_url, name)
    node = start_node(cwd, NODE_ENV | (env or {}) | {"DATABASE_URL": db})
    center = Center(node, sip_port, trunk_port, cwd, db)
    try:
        yield center
    finally:
        center.node.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


NODE_ENV = {"CCORCH_CRM_ADMIN_PASSWORD": "x" * 12}


@pytest.fixture(scope="module")
def center(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path_factory.mktemp("center")) as c:
        yield c


def _mulaw_roundtrip(pcm: bytes) -> bytes:
    out = g711_decode(g711_encode(pcm, "PCMU"), "PCMU")
    return out[: len(out) - len(out) % 320]


def test_press_1_reaches_a_ready_operator_with_audio_both_ways(center: Center) -> None:
    phone_port = center.register("7001")
    assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) >= 1, 5)
    # the operator's phone answers after 0.3 s, echoes every RTP packet back, hangs up at 4 s
    agent = Uas(
        "agent_hangup.xml", port=phone_port, cwd=center.cwd, extra=["-d", "4000", "-rtp_echo"]
    )
    phone, sipp = center.caller()
    try:
        phone.listen(1.5)
        phone.press("1")
        # the recording notice, then the queue rings the operator at once (no "all busy")
        deadline = time.monotonic() + 15
        while center.m().get('cc_agents{state="busy"}', 0) < 1 and time.monotonic() < deadline:
            phone.listen(0.2)
        assert center.m().get('cc_agents{state="busy"}', 0) == 1
        heard_before = len(phone.heard)
        sent = phone.talk(2.0)  # the caller speaks; the operator's phone echoes it back
        echoed = bytes(phone.heard[heard_before:])
        back = sum(1 for p in sent if p in echoed)
        assert back >= len(sent) // 2, f"{back} of {len(sent)} frames came back through the bridge"
        assert sipp.wait(20) == 0  # the operator hung up: the caller got BYE
        assert agent.wait().ok
    finally:
        phone.sock.close()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
    # after-call work (1 s in this test's queues), then Ready again
    assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 5), center.m()
    m = center.m()
    assert m['cc_queue_calls_total{outcome="answered",queue="tech"}'] == 1
    # both legs' received audio was measured when they ended: no loss, a G.711-grade MOS
    assert wait_for(lambda: center.m().get("cc_media_leg_mos_count", 0) >= 2, 5)
    m = center.m()
    for side in ("caller", "operator"):
        got = m[f'cc_media_packets_received_total{{side="{side}"}}']
        assert got > 100 and m[f'cc_media_packets_lost_total{{side="{side}"}}'] <= 0.01 * got
    assert m["cc_media_leg_mos_sum"] / m["cc_media_leg_mos_count"] >= 4.0, m
    # the CDR and the caller's history: Ivan Petrenko's number, identified before the IVR
    with psycopg.connect(center.db) as conn:

        def written() -> bool:
            got = conn.execute("SELECT count(*) FROM cdrs").fetchone()
            return got is not None and got[0] == 1

        assert wait_for(written, 5)
        row = conn.execute(
            """SELECT ani, dnis, flow, queue, agent, outcome, status, customer_id, waited_ms,
                      arrived_at < ivr_ended_at AND ivr_ended_at <= queued_at
                      AND queued_at <= offered_at AND offered_at <= answered_at
                      AND answered_at < ended_at, talk_seconds
               FROM cdrs"""
        ).fetchone()
        assert row is not None
        ani, dnis, flow, queue, agent, outcome, status, customer_id, waited, ordered, talk = row
        assert (ani, dnis, flow, queue, agent, outcome, status) == (
            "380671234567",
            "100",
            "abc-internet-ru",
            "tech",
            "7001",
            "agent-hangup",
            200,
        )
        assert ordered, "the CDR's timestamps are out of order"
        assert waited is not None and waited >= 0 and 3 <= talk <= 6
        name = conn.execute("SELECT name FROM customers WHERE id = %s", (customer_id,)).fetchone()
        assert name == ("Ivan Petrenko",)
        # the customer's history names the operator who answered (a CRM user by extension)
        hist = conn.execute(
            """SELECT i.channel, i.direction, i.queue, i.disposition, u.extension
               FROM interactions i JOIN users u ON u.id = i.agent_id WHERE i.customer_id = %s""",
            (customer_id,),
        ).fetchall()
        assert hist == [("call", "in", "tech", "agent-hangup", "7001")]
        rec = conn.execute("SELECT recording_path FROM cdrs").fetchone()
        ref = conn.execute(
            """SELECT r.path, r.kind FROM interactions i JOIN recordings r ON r.id = i.recording_id
               WHERE i.customer_id = %s""",
            (customer_id,),
        ).fetchone()
    # the recording: the caller on the left, the operator (echoing the caller) on the right
    assert rec is not None and rec[0] and ref == (rec[0], "call")
    with wave.open(rec[0]) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / 8000
    import array

    samples = array.array("h", frames)
    left, right = samples[0::2], samples[1::2]
    loud = [sum(1 for x in ch if abs(x) > 2000) for ch in (left, right)]
    assert 3 <= seconds <= 6, seconds
    assert loud[0] > 8000 and loud[1] > 8000, loud  # a second and more of tone on each side


def test_all_busy_callers_hear_the_wait_then_connect_and_an_abandon_is_counted(
    center: Center,
) -> None:
    phone_port = center.register("7003")
    assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) >= 1, 5)
    # one operator for the general queue, two calls of 12 s each in a row (the "all busy"
    # announcement alone takes 7 s: the waiting caller must hear it and then the music)
    agent = Uas("agent_hangup.xml", port=phone_port, cwd=center.cwd, m=2, extra=["-d", "12000"])
    sup = _supervisor_stream(center)  # the live stream shows who waits, where, for how long
    first, first_sipp = center.caller()
    second, second_sipp = center.caller()
    third, third_sipp = center.caller("trunk_ivr_hangup.xml", ["-d", "5000"])
    threads: list[threading.Thread] = []
    try:
        first.listen(1.5)
        first.press("2")
        assert wait_for(lambda: center.m().get('cc_agents{state="busy"}', 0) == 1, 10)

        def waiting_caller(p: Phone, seconds: float) -> None:
            p.listen(1.0)
            p.press("2")
            p.listen(seconds)

        threads = [
            threading.Thread(target=waiting_caller, args=(second, 25.0)),
            threading.Thread(target=waiting_caller, args=(third, 3.0)),
        ]
        for t in threads:
            t.start()
        first.listen(1.0)
        for t in threads:
            t.join(45)
        assert first_sipp.wait(20) == 0
        assert third_sipp.wait(20) == 0  # hung up while waiting
        assert second_sipp.wait(40) == 0  # connected when the operator was free, then BYE
        assert agent.wait().ok  # both calls reached the operator's phone
    finally:
        for p in (first, second, third):
            p.sock.close()
        for s in (first_sipp, second_sipp, third_sipp):
            if s.poll() is None:
                s.kill()
                s.wait(10)
    frames = _read_frames(sup, 1.0)
    sup.close()
    queued = [f for f in frames if f["type"] == "call.queued"]
    assert sorted(f["position"] for f in queued) == [1, 2], queued
    assert {f["queue"] for f in queued} == {"general"}
    assert all(f["estimated_wait_seconds"] is None or f["estimated_wait_seconds"] > 0
               for f in queued)  # fmt: skip
    heard = g711_decode(bytes(second.heard), "PCMU")
    # the music on hold, as the caller got it
    tune = _mulaw_roundtrip(default_music()[: 8000 * 2])
    assert tune in heard, "the waiting caller did not hear the music"
    # and the "all operators are busy" announcement was rendered and played before it
    rendered = sorted((center.cwd / "tts" / "ru").glob("*.wav"), key=lambda f: f.stat().st_mtime)
    busy = [f for f in rendered if _pcm_in(f, heard)]
    assert busy, "no TTS prompt found in the waiting caller's audio"
    m = center.m()
    assert m['cc_queue_calls_total{outcome="answered",queue="general"}'] == 2
    # the third hung up after about 3 s of waiting: a short abandon at the default 5 s
    abandoned = m['cc_queue_calls_total{outcome="abandoned",queue="general"}']
    assert abandoned + m['cc_queue_calls_total{outcome="abandoned_short",queue="general"}'] == 1
    assert m['cc_queue_wait_seconds_sum{outcome="answered",queue="general"}'] > 2  # the second


def _supervisor_stream(center: Center) -> ClientConnection:
    req = urllib.request.Request(
        center.node.base + "/api/auth/login",
        data=json.dumps(
            {"login": "admin", "password": NODE_ENV["CCORCH_CRM_ADMIN_PASSWORD"]}
        ).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        token = json.loads(r.read())["token"]
    return connect(f"ws://127.0.0.1:{center.node.port}/api/events?token={token}", open_timeout=10)


def _read_frames(ws: ClientConnection, quiet: float) -> list[dict[str, Any]]:
    """Every frame received so far, until none came for ``quiet`` seconds."""
    frames: list[dict[str, Any]] = []
    while True:
        try:
            frames.append(json.loads(ws.recv(timeout=quiet)))
        except TimeoutError:
            return frames


def _pcm_in(path: Path, heard: bytes) -> bool:
    with wave.open(str(path)) as w:
        pcm = w.readframes(w.getnframes())
    return _mulaw_roundtrip(pcm)[:16000] in heard


def test_busy_text_is_the_seeds(center: Center) -> None:
    """The seed's words with the estimate filled in, in the form the voice speaks."""
    from ccorch.ivr.flow import load_flow
    from ccorch.ivr.interpreter import Session

    flow = load_flow(center.cwd / "flows" / "abc-internet-ru.yaml")
    for seconds, said in ((20, "меньше минуты"), (170, "около трёх минут")):
        s = Session(flow, {"ewt": tts.wait(seconds, "ru")})
        text = s.fill(flow.nodes["tech"].spec["busy_text"])
        assert text == (
            f"Все операторы на линии заняты. Приблизительное время ожидания для соединения {said}."
        )


def test_demo_call_helper_places_the_balance_call(center: Center, tmp_path: Path) -> None:
    """`ccorch demo-call` (what a newcomer runs): SIPp from the demo trunk presses 3, 1001#,
    1234# as RFC 4733 events from its own RTP end; the flow answers with the balance and hangs up."""
    import sys

    trunks = tmp_path / "trunks.toml"
    trunks.write_text(
        f'[[trunk]]\nname = "demo-carrier"\nhost = "127.0.0.1"\nport = {free_udp_port()}\n'
        'match = "host+port"\noptions_interval = 0\n'
    )
    cfg = tmp_path / "demo.toml"
    cfg.write_text(f'[sip]\nport = {center.sip_port}\ntrunks_file = "{trunks}"\n')
    before = center.m().get('cc_calls_ended_total{reason="ivr-flow"}', 0)
    with psycopg.connect(center.db) as conn:
        last = conn.execute("SELECT coalesce(max(id), 0) FROM cdrs").fetchone()
    r = subprocess.run(
        [sys.executable, "-m", "ccorch", "--config", str(cfg), "demo-call", "--option", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert "the call ended normally" in r.stderr
    ended = {k: v for k, v in center.m().items() if k.startswith("cc_calls_ended")}
    assert ended.get('cc_calls_ended_total{reason="ivr-flow"}', 0) == before + 1, ended

    def cdr() -> tuple[object, ...] | None:
        with psycopg.connect(center.db) as conn:
            return conn.execute(
                "SELECT outcome, queue, agent FROM cdrs WHERE dnis = '100' AND id > %s"
                " ORDER BY id DESC LIMIT 1",
                (last[0] if last else 0,),
            ).fetchone()

    # (the CDR is written just after the call ends: wait for this call's, not an older one)
    assert wait_for(lambda: cdr() is not None, 10)
    assert cdr() == ("ivr-flow", None, None)


def test_blacklisted_caller_is_refused_before_the_first_prompt(center: Center) -> None:
    before = center.m().get('cc_calls_ended_total{reason="blacklisted"}', 0)
    r = run(
        "trunk_blacklisted.xml",
        center.target,
        port=free_udp_port(),
        cwd=center.cwd,
        extra=["-s", "100"],
    )
    assert r.ok, r  # 603, never a 200: nothing was played
    m = center.m()
    assert m['cc_calls_ended_total{reason="blacklisted"}'] == before + 1

    def cdr() -> tuple[object, ...] | None:
        with psycopg.connect(center.db) as conn:
            return conn.execute(
                "SELECT outcome, status, ivr_ended_at, flow FROM cdrs WHERE ani = '380441112233'"
            ).fetchone()

    # (the CDR is written just after the call ends: a slow run read it before it landed)
    assert wait_for(lambda: cdr() is not None, 10)
    assert cdr() == ("blacklisted", 603, None, None)


def test_outside_business_hours_callers_hear_the_closed_message(center: Center) -> None:
    """A new flow dropped into the folder (hot reload) with opening hours that exclude now."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    now = dt.datetime.now(ZoneInfo("Europe/Kyiv"))
    other = (now + dt.timedelta(hours=12)).strftime("%H:%M")
    closes = (now + dt.timedelta(hours=12, minutes=1)).strftime("%H:%M")
    if closes <= other:  # the window must not wrap midnight
        other, closes = "00:00", "00:01"
    closed_text = "Контакт-центр сейчас закрыт. Мы работаем с девяти до восемнадцати."
    (center.cwd / "flows" / "after-hours.yaml").write_text(
        f"""flow: after-hours
dnis: ["199"]
language: ru
start: when
nodes:
  when:
    type: hours
    open: "mon-sun {other}-{closes}"
    timezone: Europe/Kyiv
    open_next: welcome
    closed_next: closed
  welcome:
    type: hangup
    text: "Добрый день."
  closed:
    type: hangup
    text: "{closed_text}"
"""
    )
    time.sleep(2.5)  # the node's flow scan runs every second
    heard = _call_and_listen(center, "199")  # the flow hangs up after the message
    expected = tts.render(closed_text, "ru", center.cwd / "tts")
    assert _pcm_in(expected, heard)


def test_a_vip_caller_rings_her_manager_first_with_priority(center: Center) -> None:
    """Olena Kovalenko (VIP, identified by ANI): her manager's phone rings although another
    operator has been free longer; the flow gave her call priority 10. The node has been up
    for well over the preference's 20 s: the preference's end is a deadline on the node's
    clock, and a young node once hid that it was passed as a duration."""
    while center.node.age < 45:
        time.sleep(1)
    with psycopg.connect(center.db, autocommit=True) as conn:
        conn.execute(
            """UPDATE customers SET manager_id = (SELECT id FROM users WHERE extension = '7004')
               WHERE name = 'Olena Kovalenko'"""
        )
    center.register("7003")  # Ready (longest idle of the two) but not her manager
    time.sleep(0.3)
    manager_port = center.register("7004")
    assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) >= 2, 5)
    manager = Uas("agent_hangup.xml", port=manager_port, cwd=center.cwd, extra=["-d", "1000"])
    phone, sipp = center.caller(ani="0507654321")
    try:
        phone.listen(1.5)
        phone.press("2")
        assert sipp.wait(30) == 0  # her manager answered, talked 1 s and hung up
        assert manager.wait().ok
    finally:
        phone.sock.close()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
    with psycopg.connect(center.db) as conn:

        def row() -> tuple[object, ...] | None:
            return conn.execute(
                """SELECT c.agent, c.queue, c.outcome, cu.name, cu.segment FROM cdrs c
                   JOIN customers cu ON cu.id = c.customer_id WHERE c.ani = '380507654321'"""
            ).fetchone()

        assert wait_for(lambda: row() is not None, 5)
        assert row() == ("7004", "general", "agent-hangup", "Olena Kovalenko", "VIP")


class _PlanService:
    """A real HTTP service on loopback for the lookup node: the caller's plan as JSON, or
    an answer later than the node's timeout."""

    def __init__(self) -> None:
        import http.server
        import json as json_

        self.asked: list[str] = []
        self.slow = False
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.asked.append(self.path)
                if service.slow:
                    time.sleep(3.0)
                body = json_.dumps({"plan": {"name": "Turbo 100"}, "due": "2026-12-01"})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _call_and_listen(
    center: Center, dnis: str, keys: Callable[[Phone], None] | None = None
) -> bytes:
    """Call ``dnis``, let ``keys`` act as the caller, listen until the flow hangs up
    (SIPp exits 0 on its BYE); what the caller heard, decoded."""
    phone, sipp = center.caller(dnis=dnis)
    try:
        if keys is not None:
            keys(phone)
        deadline = time.monotonic() + 40
        while sipp.poll() is None and time.monotonic() < deadline:
            phone.listen(0.5)
        assert sipp.wait(10) == 0  # the flow hung up after its prompts
    finally:
        phone.sock.close()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
    return g711_decode(bytes(phone.heard), "PCMU")


def test_lookup_nodes_speak_data_from_a_web_service_and_the_crm_or_fall_back(
    center: Center,
) -> None:
    plans = _PlanService()
    (center.cwd / "flows" / "lookup.yaml").write_text(
        f"""flow: lookup
dnis: ["198"]
language: en
start: plan
nodes:
  plan:
    type: lookup
    url: "http://127.0.0.1:{plans.port}/plan?ani={{ani}}&n={{customer_name}}"
    vars: {{plan: plan.name, due: due}}
    timeout: 1
    next: card
    on_fail: sorry
  card:
    type: lookup
    crm: customer
    vars: {{city: addresses.0.text}}
    next: told
    on_fail: sorry
  told:
    type: hangup
    text: "Your plan is {{plan}}, paid until {{due:date}}. We have {{city}} on file."
  sorry:
    type: hangup
    text: "Sorry, your plan cannot be looked up now."
"""
    )
    time.sleep(2.5)  # the node's flow scan runs every second
    heard = _call_and_listen(center, "198")
    said = "Your plan is Turbo 100, paid until December 1st, 2026. We have Kyiv, Khreshchatyk St 1, apt 10 on file."
    assert _pcm_in(tts.render(said, "en", center.cwd / "tts"), heard)
    # the caller's variables went into the URL, encoded
    assert plans.asked == ["/plan?ani=380671234567&n=Ivan%20Petrenko"]
    # the service answers after the node's 1 s timeout: the flow's fallback is said
    plans.slow = True
    heard = _call_and_listen(center, "198")
    sorry = "Sorry, your plan cannot be looked up now."
    assert _pcm_in(tts.render(sorry, "en", center.cwd / "tts"), heard)
    plans.server.shutdown()
    plans.server.server_close()


WAITING_FLOW = """flow: waiting
dnis: ["197"]
language: en
start: sales
nodes:
  sales:
    type: queue
    queue: sales
    busy_text: "All operators are busy. The wait is {ewt}."
    busy_unknown_text: "All operators are busy."   # nobody works sales: the wait is unknown
    options_text: "To leave a message, press 1. To be called back, press 2."
    options: {"1": message, "2": call_me}
    announce_every: 60
  message:
    type: voicemail
    prompt: "Please speak after the tone, then press the hash key."
    max_seconds: 20
    next: thanks
  call_me:
    type: callback
    next: thanks
  thanks:
    type: hangup
    text: "Thank you. We will call you back."
"""


def test_a_waiting_caller_leaves_a_voicemail_or_asks_for_a_callback(center: Center) -> None:
    (center.cwd / "flows" / "waiting.yaml").write_text(WAITING_FLOW)
    time.sleep(2.5)  # the node's flow scan runs every second
    options = "All operators are busy. To leave a message, press 1. To be called back, press 2."
    options_wav = tts.render(options, "en", center.cwd / "tts")
    thanks_wav = tts.render("Thank you. We will call you back.", "en", center.cwd / "tts")

    def call(keys: str, speak: float) -> bytes:
        def caller(phone: Phone) -> None:
            phone.listen(6.5)  # the announcement with the options (about 5.5 s)
            phone.press(keys)
            if speak:
                phone.listen(4.5)  # the voicemail prompt and the beep
                phone.talk(speak)  # the message: a 440 Hz tone
                phone.press("#")

        return _call_and_listen(center, "197", caller)  # "thank you", then the flow's BYE

    heard = call("1", 2.0)
    assert _pcm_in(options_wav, heard) and _pcm_in(thanks_wav, heard)
    heard = call("2", 0.0)
    assert _pcm_in(thanks_wav, heard)
    m = center.m()
    assert m['cc_queue_calls_total{outcome="withdrawn",queue="sales"}'] == 2
    assert m.get('cc_queue_calls_total{outcome="abandoned",queue="sales"}', 0) == 0
    with psycopg.connect(center.db) as conn:

        def rows() -> list[tuple[object, ...]]:
            return conn.execute(
                """SELECT i.channel, i.disposition, i.queue, r.path, c.subject,
                          c.callback_required, t.kind, t.status, cu.name
                   FROM interactions i JOIN cases c ON c.id = i.case_id
                   JOIN tasks t ON t.case_id = c.id JOIN customers cu ON cu.id = i.customer_id
                   LEFT JOIN recordings r ON r.id = i.recording_id
                   WHERE i.queue = 'sales' ORDER BY i.id"""
            ).fetchall()

        assert wait_for(lambda: len(rows()) == 2, 5), rows()
        got = rows()
    (vm, cb) = got
    assert vm[:3] == ("voicemail", "voicemail", "sales")
    assert vm[4:] == ("Voicemail from 380671234567", True, "callback", "open", "Ivan Petrenko")
    assert cb[:4] == ("call", "callback-request", "sales", None)
    assert cb[4:] == (
        "Callback requested by 380671234567",
        True,
        "callback",
        "open",
        "Ivan Petrenko",
    )
    # the message: what the caller said (the tone) on the left, about 2 s of it
    import array

    with wave.open(str(vm[3])) as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    loud = sum(1 for x in samples[0::2] if abs(x) > 2000)
    assert 8000 <= loud <= 20000, loud  # ~1.5-2 s of a 440 Hz tone at 8 kHz, not the beep

    # the supervisor's voicemail inbox: the message, its case open; given to an operator
    # and marked handled, it leaves the inbox of messages not handled yet
    from tests.test_agents import _call, _token  # (test_agents imports this module)

    boss = _token(center.node, "admin", NODE_ENV["CCORCH_CRM_ADMIN_PASSWORD"])
    status, inbox = _call(
        center.node, "GET", "/api/recordings?kind=voicemail&handled=false", None, boss
    )
    assert status == 200 and len(inbox["items"]) == 1, inbox
    message = inbox["items"][0]
    assert (message["ani"], message["case_status"], message["kind"]) == (
        "380671234567",
        "open",
        "voicemail",
    )
    with psycopg.connect(center.db) as conn:
        op = conn.execute("SELECT id FROM users WHERE login = 'op7003'").fetchone()
    assert op is not None
    case = message["case_id"]
    assign = {"assignee_id": op[0]}
    assert _call(center.node, "PUT", f"/api/cases/{case}/assignment", assign, boss)[0] == 200
    done = {"to": "resolved", "comment": "called back"}
    assert _call(center.node, "POST", f"/api/cases/{case}/transition", done, boss)[0] == 200
    status, inbox = _call(
        center.node, "GET", "/api/recordings?kind=voicemail&handled=false", None, boss
    )
    assert inbox["items"] == [], inbox
    status, handled = _call(
        center.node, "GET", "/api/recordings?kind=voicemail&handled=true", None, boss
    )
    assert [(h["case_id"], h["case_assignee_id"]) for h in handled["items"]] == [(case, op[0])]


def test_the_flow_transfers_the_caller_to_an_outside_number_through_the_trunk(
    center: Center,
) -> None:
    (center.cwd / "flows" / "outside.yaml").write_text(
        """flow: outside
dnis: ["196"]
language: en
start: out
nodes:
  out:
    type: transfer
    to: "0445550000"
    on_fail: sorry
  sorry:
    type: hangup
    text: "Sorry."
"""
    )
    time.sleep(2.5)  # the node's flow scan runs every second
    # the carrier's side of the outbound trunk: answers, talks 1 s, hangs up
    carrier = Uas(
        "agent_hangup.xml",
        port=center.trunk_port,
        cwd=center.cwd,
        extra=["-d", "1000", "-i", "127.0.0.2"],
    )
    before = center.m().get('cc_calls_ended_total{reason="agent-hangup"}', 0)
    phone, sipp = center.caller(dnis="196")
    try:
        phone.listen(1.0)
        assert sipp.wait(30) == 0  # the outside party hung up: the caller got BYE
        r = carrier.wait()
        assert r.ok, r
    finally:
        phone.sock.close()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
    assert wait_for(
        lambda: center.m().get('cc_calls_ended_total{reason="agent-hangup"}', 0) == before + 1, 5
    )


def test_calls_up_when_the_node_dies_are_closed_at_the_next_start(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Ivan is talking to operator 7001 (recorded) when the node is killed with SIGKILL.
    At the next start the call gets its CDR (node-failure, at the last sign of life), the
    recording is finalized and linked, the caller's carrier and the operator's phone are
    sent BYE, and 7001 is Ready again only once its phone is out of the call."""
    with _center(pg_admin_url, tmp_path) as center:
        time.sleep(1.5)  # the flows are scanned every second
        agent = Uas(
            "agent_answer.xml",  # answers, then waits for a BYE: only the node can end it
            port=center.register("7001"),
            cwd=center.cwd,
            extra=["-rtp_echo"],
            timeout=120,
        )
        phone, sipp = center.caller()
        try:
            phone.listen(1.5)
            phone.press("1")
            assert wait_for(lambda: center.m().get("cc_calls_answered_total", 0) >= 1, 20)
            phone.talk(3.0)  # the caller speaks: a tone on the recording
            center.node.proc.kill()  # SIGKILL: no goodbye, no CDR, nobody hangs up
            center.node.proc.wait(10)
            time.sleep(2)
            assert sipp.poll() is None and agent.proc.poll() is None  # both still in the call
            center.node = start_node(center.cwd, NODE_ENV | {"DATABASE_URL": center.db})
            assert sipp.wait(30) == 0  # the carrier got BYE
            assert agent.wait(30).ok  # and so did the operator's phone
        finally:
            phone.sock.close()
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait(10)
            agent.kill()
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10), center.m()
        with psycopg.connect(center.db) as conn:
            row = conn.execute(
                """SELECT c.outcome, c.agent, c.answered_at IS NOT NULL, c.talk_seconds,
                          c.ended_at >= c.answered_at, c.recording_path, r.kind, i.disposition
                   FROM cdrs c JOIN recordings r ON r.path = c.recording_path
                   JOIN interactions i ON i.recording_id = r.id"""
            ).fetchone()
        assert row is not None
        outcome, agent_ext, answered, talk, ordered, path, kind, disposition = row
        assert (outcome, agent_ext, answered, ordered, kind) == (
            "node-failure",
            "7001",
            True,
            True,
            "call",
        )
        assert disposition == "node-failure"
        # the talk until the last sign of life: the node died 3 s or more after the answer and
        # leaves a sign of life every second (plus the journal thread's delay on a busy box)
        assert 1.5 <= talk <= 15, talk
        audio = Path(path)
        with wave.open(str(audio)) as w:  # the header tells all the audio the file holds
            assert w.getnframes() * 4 + 44 == audio.stat().st_size
            assert w.getnframes() / 8000 >= 2.5
        # nothing left over for a next start, and the dead run's segment is gone
        assert Journal(center.cwd / "var" / "calls").left_over() == []
        assert len(list((center.cwd / "var" / "calls").glob("journal-*.log"))) == 1
