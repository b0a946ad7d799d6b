"""Call control end to end (issue 15): an operator steers a real call from outside it, over
REST and the WebSocket, and every party's ears are checked in the RTP it received.

Real parts: SIPp as the carrier (answering the node's re-INVITEs) and as the operators'
phones, whose SDP points their audio at the test's own RTP endpoints, so each party can
speak a tone of its own and we can tell, in what each one heard, who reached whom:
customer 440 Hz, operator 7001 1000 Hz, colleague 7002 1500 Hz; the music on hold is
compared sample for sample."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from websockets.sync.client import connect

from ccorch._core import g711_decode, g711_encode
from ccorch.media.music import default_music
from tests.sipp import Uas, register_phone, wait_for
from tests.test_agents import _call, _token
from tests.test_inbound import Center, _center, _mulaw_roundtrip
from tests.test_ivr import Phone

pytestmark = pytest.mark.slow

CUSTOMER_HZ, OPERATOR_HZ, COLLEAGUE_HZ = 440, 1000, 1500


@pytest.fixture(scope="module")
def center(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path_factory.mktemp("control")) as c:
        yield c


def speak(phone: Phone, hz: int, seconds: float) -> None:
    """Send a tone (PCMU, paced at 20 ms) while listening."""
    start = time.monotonic()
    for f in range(int(seconds * 50)):
        pcm = b"".join(
            struct.pack("<h", int(6000 * math.sin(2 * math.pi * hz * (f * 160 + i) / 8000)))
            for i in range(160)
        )
        phone.seq += 1
        phone.ts += 160
        if phone.peer is not None:
            phone.send(0, g711_encode(pcm, "PCMU"))
        phone.listen(max(0.0, start + (f + 1) * 0.02 - time.monotonic()))


def level(pcmu: bytes, hz: int) -> float:
    """The tone's amplitude in the audio (Goertzel over the last 1.5 s), 0 if silent."""
    pcm = g711_decode(pcmu[-12000:], "PCMU")
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    if not samples:
        return 0.0
    k = 2 * math.cos(2 * math.pi * hz / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return math.sqrt(max(power, 0.0)) / len(samples) * 2


def talk_together(parties: list[tuple[Phone, int]], seconds: float = 2.0) -> list[bytes]:
    """Everyone speaks their tone at once; what each heard meanwhile."""
    for p, _ in parties:
        p.heard.clear()
    threads = [threading.Thread(target=speak, args=(p, hz, seconds)) for p, hz in parties]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 5)
    return [bytes(p.heard) for p, _ in parties]


HEARD = 300.0  # a 6000-amplitude tone through the mixer measures ~3000; noise < 50


def hears(audio: bytes, *tones: int) -> bool:
    return all(level(audio, hz) > HEARD for hz in tones)


def deaf_to(audio: bytes, *tones: int) -> bool:
    return all(level(audio, hz) < HEARD / 3 for hz in tones)


def heard_music(pcmu: bytes) -> bool:
    """Some quarter second of the music on hold, sample for sample (the loop's notes begin
    every half second, on a packet's boundary)."""
    tune, heard = _mulaw_roundtrip(default_music()), g711_decode(pcmu, "PCMU")
    return any(tune[at : at + 4000] in heard for at in range(0, len(tune) - 4000, 8000))


class Desk:
    """An operator's screen, as far as the API goes: REST calls and its event stream."""

    def __init__(self, center: Center, login: str, password: str) -> None:
        self.node = center.node
        self.token = _token(center.node, login, password)
        self.ws = connect(
            f"ws://127.0.0.1:{self.node.port}/api/events?token={self.token}", legacy=True
        )
        self.frames: list[dict[str, Any]] = []

    def __enter__(self) -> Desk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return _call(self.node, "POST", path, body, token=self.token)

    def calls(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = _call(self.node, "GET", "/api/calls", token=self.token)[1][
            "items"
        ]
        return items

    def command(self, ref: int, **frame: Any) -> dict[str, Any]:
        """A WebSocket command; its reply (events that came first are kept in frames)."""
        self.ws.send(json.dumps({"id": ref, **frame}))
        end = time.monotonic() + 10
        while time.monotonic() < end:
            f = json.loads(self.ws.recv(timeout=10))
            if f.get("type") == "reply" and f.get("id") == ref:
                return dict(f)
            self.frames.append(f)
        raise AssertionError("no reply")

    def events(self, seconds: float = 0.5) -> list[str]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.frames.append(json.loads(self.ws.recv(timeout=0.1)))
            except TimeoutError:
                continue
        return [str(f["type"]) for f in self.frames]


_registered: dict[tuple[str, str], int] = {}


def phone_of(center: Center, ext: str, ear: Phone, calls: int = 1) -> Uas:
    """``ext``'s SIPp phone (registered once per node), answering ``calls`` calls after
    300 ms of ringing, its audio at ``ear``."""
    key = (str(center.cwd), ext)
    if key not in _registered:
        _registered[key] = register_phone(center.target, center.cwd, ext)
    return Uas(
        "agent_answer_media.xml",
        port=_registered[key],
        cwd=center.cwd,
        extra=["-key", "rtp_port", str(ear.port), "-d", "300"],
        m=calls,
        timeout=120,
    )


@contextlib.contextmanager
def answered_call(
    center: Center, operator: Phone, calls: int = 1
) -> Iterator[tuple[Phone, Any, Uas]]:
    """A customer (Ivan Petrenko) presses 1 and reaches 7001, whose audio is ``operator``."""
    phone = phone_of(center, "7001", operator, calls)
    customer, carrier = center.caller("trunk_ivr_call_reinvites.xml")
    try:
        customer.listen(1.5)
        customer.press("1")
        assert wait_for(lambda: operator.peer is not None or operator.listen(0.1), 20)
        yield customer, carrier, phone
    finally:
        customer.sock.close()
        if carrier.poll() is None:
            carrier.kill()
        phone.kill()


@pytest.fixture
def ends() -> Iterator[tuple[Phone, Phone]]:
    """The operator's and the colleague's RTP ends."""
    operator, colleague = Phone(), Phone()
    yield operator, colleague
    operator.sock.close()
    colleague.sock.close()


def test_hold_mute_consult_conference_recording_pause_and_disposition(
    center: Center, ends: tuple[Phone, Phone]
) -> None:
    operator, colleague = ends
    desk = Desk(center, "op7001", "agent7001")
    other = Desk(center, "op7003", "agent7003")
    with answered_call(center, operator) as (customer, carrier, _), desk, other:
        (call,) = desk.calls()
        cid, caller = call["id"], call["ani"].lstrip("+")
        assert call["state"] == "answered" and call["agent"] == "7001" and call["recording"]
        assert other.calls() == []
        assert other.post(f"/api/calls/{cid}/hold")[0] == 403

        heard = talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)])
        assert hears(heard[0], OPERATOR_HZ) and hears(heard[1], CUSTOMER_HZ)

        # hold: the customer hears the music and nothing of the operator
        status, held = desk.post(f"/api/calls/{cid}/hold")
        assert status == 200 and held["on_hold"], held
        assert desk.post(f"/api/calls/{cid}/hold")[0] == 409  # twice: a conflict
        heard = talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)], 3.0)
        assert heard_music(heard[0]), "the customer on hold did not hear the music"
        assert deaf_to(heard[0], OPERATOR_HZ) and deaf_to(heard[1], CUSTOMER_HZ)
        # resume over the WebSocket
        reply = desk.command(1, command="resume", call=cid)
        assert reply["status"] == 200 and not reply["call"]["on_hold"], reply
        assert desk.command(2, command="resume", call=cid)["status"] == 409
        assert desk.command(3, command="mute", call=cid, on="yes")["status"] == 422
        heard = talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)])
        assert hears(heard[0], OPERATOR_HZ) and hears(heard[1], CUSTOMER_HZ)

        # mute: the operator still hears the customer, the customer no longer the operator
        assert desk.post(f"/api/calls/{cid}/mute", {"on": True})[0] == 200
        heard = talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)])
        assert deaf_to(heard[0], OPERATOR_HZ) and hears(heard[1], CUSTOMER_HZ)
        assert desk.post(f"/api/calls/{cid}/mute", {"on": False})[0] == 200

        # the card number is not recorded: a paused stretch, marked in the index
        assert desk.post(f"/api/calls/{cid}/recording", {"paused": True})[0] == 200
        talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)], 1.0)
        assert desk.post(f"/api/calls/{cid}/recording", {"paused": False})[0] == 200

        # consult 7002: the customer waits with music, operator and colleague talk
        phone2 = phone_of(center, "7002", colleague)
        try:
            status, consulting = desk.post(
                f"/api/calls/{cid}/consult", {"kind": "extension", "to": "7002"}
            )
            assert status == 200 and consulting["consult"] == "7002", consulting
            assert desk.post(f"/api/calls/{cid}/consult/complete")[0] == 409  # not answered
            assert wait_for(lambda: desk.calls()[0]["consult_answered"], 10)
            speak(operator, OPERATOR_HZ, 0.5)  # the colleague's end learns where to send
            colleague.listen(0.5)
            heard = talk_together(
                [(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ), (colleague, COLLEAGUE_HZ)]
            )
            assert deaf_to(heard[0], OPERATOR_HZ, COLLEAGUE_HZ), "the customer overheard"
            assert hears(heard[1], COLLEAGUE_HZ) and hears(heard[2], OPERATOR_HZ)

            # conference: each party hears the other two
            status, conf = desk.post(f"/api/calls/{cid}/consult/conference")
            assert status == 200 and conf["conference"] == "7002", conf
            heard = talk_together(
                [(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ), (colleague, COLLEAGUE_HZ)]
            )
            assert hears(heard[0], OPERATOR_HZ, COLLEAGUE_HZ), "customer"
            assert hears(heard[1], CUSTOMER_HZ, COLLEAGUE_HZ), "operator"
            assert hears(heard[2], CUSTOMER_HZ, OPERATOR_HZ), "colleague"

            status, disp = desk.post(
                f"/api/calls/{cid}/disposition", {"code": "resolved", "note": "router replaced"}
            )
            assert status == 200 and disp["disposition"] == "resolved"
            assert desk.post(f"/api/calls/{cid}/disposition", {"code": "nonsense"})[0] == 400
            assert desk.post(f"/api/calls/{cid}/hangup")[0] == 200
            assert phone2.wait(20).ok
        finally:
            phone2.kill()
        assert carrier.wait(20) == 0
        types = desk.events(0.5)
        for kind in ("call.hold", "call.resume", "call.mute", "call.recording_paused",
                     "call.consult", "call.consult_answered", "call.conference",
                     "call.disposition", "call.ended"):  # fmt: skip
            assert kind in types, (kind, types)
        assert "call.hold" not in other.events(0.2)  # another operator's call
        # the queues each works in, every few seconds or on change
        snaps = [f for f in desk.frames if f["type"] == "queue.snapshot"]
        assert snaps and {f["queue"] for f in snaps} == {"tech"}, snaps
        assert {"waiting", "oldest_wait_ms", "agents", "estimated_wait_seconds"} <= set(snaps[0])
        assert {f["queue"] for f in other.frames if f["type"] == "queue.snapshot"} <= {"general"}
        status, listed = _call(center.node, "GET", "/api/queues", token=desk.token)
        assert status == 200 and [q["queue"] for q in listed["items"]] == ["tech"]

    # after the call, in wrap-up: the disposition changes on the CDR and the interaction
    assert desk.post(f"/api/calls/{cid}/disposition", {"code": "escalated"})[0] == 200
    assert other.post(f"/api/calls/{cid}/disposition", {"code": "sale"})[0] == 403
    with psycopg.connect(center.db) as conn:
        row = conn.execute(
            "SELECT c.disposition, c.note, c.outcome, r.gaps, i.disposition, i.notes"
            " FROM cdrs c JOIN recordings r ON r.path = c.recording_path"
            " JOIN interactions i ON i.cdr_id = c.id ORDER BY c.id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    disposition, note, outcome, gaps, i_disposition, i_notes = row
    assert (disposition, note, outcome) == ("escalated", "router replaced", "api-hangup")
    assert (i_disposition, i_notes) == ("escalated", "router replaced")
    ((start, end),) = gaps
    assert 0 < start < end and 800 <= end - start <= 5000, gaps

    # "call back at": a callback task of the queue the call came through, for this operator
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    for bad, why in (
        ({"callback_at": "2020-01-01T10:00:00+00:00"}, "in the past"),
        ({"callback_at": later.replace(tzinfo=None).isoformat()}, "offset"),
        ({"personal": True}, "only with callback_at"),
    ):
        status, body = desk.post(
            f"/api/calls/{cid}/disposition", {"code": "callback_requested", **bad}
        )
        assert status == 422 and why in str(body["fields"]), (bad, body)
    status, body = desk.post(
        f"/api/calls/{cid}/disposition",
        {"code": "callback_requested", "callback_at": later.isoformat(), "personal": True},
    )
    assert status == 200 and body["callback"]["agent"] == "7001", body
    with psycopg.connect(center.db) as conn:
        task = conn.execute(
            "SELECT kind, status, phone, queue, agent, due_at FROM tasks WHERE id = %s",
            (body["callback"]["task"],),
        ).fetchone()
    assert task == ("callback", "open", caller, "tech", "7001", later), task


def _connected(customer: Phone, party: Phone, hz: int) -> bool:
    """The customer and ``party`` hear each other."""
    speak(party, hz, 0.3)
    heard = talk_together([(customer, CUSTOMER_HZ), (party, hz)])
    return hears(heard[0], hz) and hears(heard[1], CUSTOMER_HZ)


def test_consult_then_complete_hands_the_customer_to_the_colleague(
    center: Center, ends: tuple[Phone, Phone]
) -> None:
    operator, colleague = ends
    admin = _token(center.node, "admin", "x" * 12)
    with psycopg.connect(center.db) as conn:
        row = conn.execute("SELECT id FROM customers WHERE name = 'Ivan Petrenko'").fetchone()
    assert row is not None
    today = dt.date.today().isoformat()
    renewal = {"kind": "renewal", "due_on": today, "text": "Contract renewal: offer 1 Gbit/s"}
    assert _call(center.node, "POST", f"/api/customers/{row[0]}/reminders", renewal, admin)[0] in (
        200,
        201,
    )
    desk = Desk(center, "op7001", "agent7001")
    boss = Desk(center, "admin", "x" * 12)  # a supervisor sees the call from its arrival
    with answered_call(center, operator) as (customer, carrier, phone), desk, boss:
        (call,) = desk.calls()
        cid = call["id"]
        # the screen pop came with the offer, before the operator said a word
        desk.events(0.3)
        (pop,) = [f for f in desk.frames if f["type"] == "call.offered"]
        assert pop["call"] == cid and pop["agent"] == "7001" and pop["queue"] == "tech"
        assert pop["customer"]["name"] == "Ivan Petrenko" and pop["candidates"] == []
        assert pop["ani"] == "380671234567" and pop["dnis"] == "100", pop
        assert pop["region"] and "mobile" in pop["region"], pop
        assert [r["text"] for r in pop["reminders_due"]] == [renewal["text"]]
        assert pop["service"] == "abc-internet-ru" and "tech" in pop["ivr_path"], pop
        assert pop["authorized"] is None and pop["waited_ms"] >= 0
        assert isinstance(pop["last_contacts"], list)
        phone2 = phone_of(center, "7002", colleague)
        try:
            assert (
                desk.post(f"/api/calls/{cid}/consult", {"kind": "extension", "to": "7002"})[0]
                == 200
            )
            assert wait_for(lambda: desk.calls()[0]["consult_answered"], 10)
            status, done = desk.post(f"/api/calls/{cid}/consult/complete")
            assert status == 200 and done["agent"] == "7002" and not done["on_hold"], done
            assert phone.wait(20).ok  # the operator's phone got BYE
            assert _connected(customer, colleague, COLLEAGUE_HZ)
            assert desk.calls() == []  # no longer the operator's call
            assert desk.post(f"/api/calls/{cid}/hold")[0] == 403
            assert _call(center.node, "POST", f"/api/calls/{cid}/hangup", token=admin)[0] == 200
            assert phone2.wait(20).ok
        finally:
            phone2.kill()
        assert carrier.wait(20) == 0
        boss.events(1.0)
    with psycopg.connect(center.db) as conn:
        row = conn.execute(
            "SELECT agent, outcome, id, customer_id FROM cdrs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[:2] == ("7002", "api-hangup")
    mine = [f for f in boss.frames if f.get("call") == cid]
    kinds = [f["type"] for f in mine]
    assert kinds[0] == "call.arrived" and kinds.index("call.offered") > kinds.index("call.ivr")
    (who,) = [f for f in mine if f["type"] == "call.identified"]
    assert (who["by"], who["customer_id"], who["authorized"]) == ("ani", row[3], False), who
    menu = [f for f in mine if f["type"] == "call.ivr"]
    assert menu[0]["path"] == [menu[0]["node"]] and menu[-1]["keys"] == ["1"], menu
    assert menu[-1]["flow"] == "abc-internet-ru"
    (recorded,) = [f for f in mine if f["type"] == "call.recorded"]
    assert recorded["cdr_id"] == row[2] and kinds[-1] == "call.recorded", kinds


def test_blind_transfer_to_a_queue_keeps_the_callers_wait(
    center: Center, ends: tuple[Phone, Phone]
) -> None:
    operator, colleague = ends
    desk = Desk(center, "op7001", "agent7001")
    with answered_call(center, operator) as (customer, carrier, phone), desk:
        (call,) = desk.calls()
        cid = call["id"]
        phone3 = phone_of(center, "7003", colleague)  # serves "general"
        try:
            assert (
                desk.post(f"/api/calls/{cid}/transfer", {"kind": "queue", "to": "nope"})[0] == 404
            )
            status, moved = desk.post(
                f"/api/calls/{cid}/transfer", {"kind": "queue", "to": "general"}
            )
            assert status == 200 and moved["queue"] == "general", moved
            assert phone.wait(20).ok  # 7001 is free at once
            assert wait_for(lambda: colleague.peer is not None or colleague.listen(0.1), 15)
            assert _connected(customer, colleague, COLLEAGUE_HZ)
            admin = _token(center.node, "admin", "x" * 12)
            assert _call(center.node, "POST", f"/api/calls/{cid}/hangup", token=admin)[0] == 200
            assert phone3.wait(20).ok
        finally:
            phone3.kill()
        assert carrier.wait(20) == 0
    with psycopg.connect(center.db) as conn:
        row = conn.execute(
            "SELECT agent, queue, waited_ms FROM cdrs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    # the wait counts the first queueing's and the second's, 7003's ringing (300 ms) included
    assert row is not None and row[:2] == ("7003", "general") and row[2] >= 300, row


PIN_FLOW = """
flow: verify-pin
dnis: ["199"]
language: en
start: ask_contract
nodes:
  ask_contract:
    type: collect
    prompt: "Contract."
    var: contract
    min: 1
    max: 12
    next: ask_pin
    on_fail: back
  ask_pin:
    type: collect
    prompt: "PIN."
    var: pin
    min: 4
    max: 8
    next: check
    on_fail: back
  check:
    type: authorize
    contract: contract
    pin: pin
    ok: back
    fail: back
    locked: back
  back:
    type: queue
    queue: tech
"""


def test_transfer_to_the_pin_flow_and_back_to_the_same_operator(
    center: Center, ends: tuple[Phone, Phone]
) -> None:
    operator, _ = ends
    (center.cwd / "flows" / "verify-pin.yaml").write_text(PIN_FLOW)
    desk = Desk(center, "op7001", "agent7001")
    boss = Desk(center, "admin", "x" * 12)
    with answered_call(center, operator, calls=2) as (customer, carrier, phone), desk, boss:
        (call,) = desk.calls()
        cid = call["id"]
        assert wait_for(
            lambda: (
                desk.post(f"/api/calls/{cid}/transfer", {"kind": "flow", "to": "verify-pin"})[0]
                == 200
            ),
            5,
        )
        assert wait_for(lambda: desk.calls() == [], 5)  # the flow has the caller
        customer.listen(1.5)
        customer.press("1001#")
        customer.listen(1.0)
        customer.press("1234#")
        # back in the queue, offered to 7001 first (after its one second of wrap-up)
        assert wait_for(lambda: [c["agent"] for c in desk.calls()] == ["7001"], 20)
        assert wait_for(lambda: desk.calls()[0]["state"] == "answered", 10)
        operator.heard.clear()
        assert _connected(customer, operator, OPERATOR_HZ)
        assert desk.post(f"/api/calls/{cid}/hangup")[0] == 200
        assert phone.wait(20).ok  # both calls reached 7001's phone
        assert carrier.wait(20) == 0
        boss.events(0.5)
    mine = [f for f in boss.frames if f.get("call") == cid]
    # the PIN made the caller known, authorized; the digits typed never went on the stream
    (who,) = [f for f in mine if f["type"] == "call.identified" and f["by"] == "pin"]
    assert who["authorized"] is True and who["customer_id"] > 0, who
    flow = [f for f in mine if f["type"] == "call.ivr" and f["flow"] == "verify-pin"]
    assert [f["node"] for f in flow] == ["ask_contract", "ask_pin", "check", "back"], flow
    assert all(f["keys"] == ["1"] for f in flow), flow  # only the first menu's key


def test_click_to_dial_rings_the_operator_then_the_customer_and_is_outgoing(
    center: Center, ends: tuple[Phone, Phone]
) -> None:
    operator, customer = ends
    desk = Desk(center, "op7001", "agent7001")
    other = Desk(center, "op7003", "agent7003")
    phone = phone_of(center, "7001", operator)
    # the carrier's side of the outbound trunk answers for the customer, its audio at ours
    carrier = Uas(
        "agent_answer_media.xml",
        port=center.trunk_port,
        cwd=center.cwd,
        extra=["-i", "127.0.0.2", "-key", "rtp_port", str(customer.port), "-d", "500"],
        timeout=60,
    )
    try:
        with desk, other:
            dial = {"number": "067 123 45 67", "extension": "7001"}
            assert other.post("/api/calls", dial)[0] == 403  # not its own extension
            assert desk.post("/api/calls", {"number": "call me"})[0] == 422
            status, placed = desk.post("/api/calls", {"number": "0671234567"})
            assert status == 201 and placed["direction"] == "out", placed
            cid = placed["id"]
            assert wait_for(lambda: [c["state"] for c in desk.calls()] == ["answered"], 15)
            # nobody has spoken yet: DTMF from the desk shows the customer's end where we are
            assert desk.post(f"/api/calls/{cid}/dtmf", {"digits": "12x"})[0] == 400
            assert desk.post(f"/api/calls/{cid}/dtmf", {"digits": "1"})[0] == 200
            customer.listen(0.5)
            assert customer.peer is not None
            speak(customer, CUSTOMER_HZ, 0.5)
            operator.listen(0.3)
            assert operator.peer is not None
            heard = talk_together([(customer, CUSTOMER_HZ), (operator, OPERATOR_HZ)])
            assert hears(heard[0], OPERATOR_HZ) and hears(heard[1], CUSTOMER_HZ)
            assert desk.post(f"/api/calls/{cid}/hangup")[0] == 200
            assert phone.wait(20).ok and carrier.wait(20).ok
    finally:
        phone.kill()
        carrier.kill()
    with psycopg.connect(center.db) as conn:
        row = conn.execute(
            "SELECT c.direction, c.ani, c.dnis, c.agent, c.recording_path IS NOT NULL,"
            " i.direction, cu.name FROM cdrs c JOIN interactions i ON i.cdr_id = c.id"
            " JOIN customers cu ON cu.id = c.customer_id ORDER BY c.id DESC LIMIT 1"
        ).fetchone()
    assert row == ("out", "7001", "0671234567", "7001", True, "out", "Ivan Petrenko"), row
