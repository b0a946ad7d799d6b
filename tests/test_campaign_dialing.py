"""Campaigns dial on real SIP (issue 19): a SIPp carrier whose numbers are busy, ring out,
are answering machines or people (by their last digit), SIPp phones as operators who
answer, talk and hang up. What ccorch records is checked against what the carrier and the
operators' phones saw."""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
import time
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, expect

from ccorch._core import g711_encode
from ccorch.dialer.settings import DEFAULT_ABANDON
from ccorch.ivr import tts
from ccorch.ivr.flow import load_flow
from tests.sipp import Uas, register_phone, wait_for
from tests.test_agents import _call, _token
from tests.test_inbound import Center, _center
from tests.test_ivr import Phone

pytestmark = pytest.mark.slow

QUEUES = """
[[queue]]
name = "tech"
skills = "tech"

[[queue]]
name = "general"
skills = "general"

[[queue]]
name = "survey"
skills = "survey"
wrap_up_seconds = 1
ring_seconds = 5
expected_handle_seconds = 5

[[agent]]
extension = "7001"
skills = { survey = 5 }
queues = ["survey"]

[[agent]]
extension = "7002"
skills = { survey = 5 }
queues = ["survey"]

[[agent]]
extension = "7003"
skills = { survey = 5, general = 5 }
queues = ["survey", "general"]

[[agent]]
extension = "7004"
skills = { survey = 5 }
queues = ["survey"]
"""
# the supervisor's phone (7009) as a fifth operator, for the test at the scale only:
# elsewhere sup7009 signs in to the console, not to an operator's shift
FIFTH = """
[[agent]]
extension = "7009"
skills = { survey = 5 }
queues = ["survey"]
"""

# every day, all day, in the contact's time: the test runs at any hour
ALWAYS = {"window_start": "00:00", "window_end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6, 7]}


def hello_pcap(path: Path, *, quiet_seconds: float = 2.0, law: str = "PCMA") -> None:
    """A person's greeting for SIPp to play: 0.6 s of voice, then ``quiet_seconds`` of
    quiet, still sent as RTP (a phone keeps sending; the node ends a leg silent for 30 s)
    (G.711 ``law`` RTP in Ethernet/IPv4/UDP frames, as SIPp's play_pcap_audio reads them)."""
    import math

    frames: list[bytes] = []
    for f in range(30 + int(quiet_seconds * 50)):
        loud = f < 30
        pcm = b"".join(
            struct.pack(
                "<h",
                int((7000 if loud else 0) * math.sin(2 * math.pi * 300 * (f * 160 + i) / 8000)),
            )
            for i in range(160)
        )
        frames.append(g711_encode(pcm, law))
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    pt = 8 if law == "PCMA" else 0
    for n, payload in enumerate(frames):
        rtp = struct.pack("!BBHII", 0x80, pt, n & 0xFFFF, n * 160, 0x1234) + payload
        udp = struct.pack("!HHHH", 40000, 40002, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        ) + udp  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip
        us = n * 20_000
        out += struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))


@pytest.fixture
def center(pg_admin_url: str, tmp_path: Path) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path, queues=QUEUES) as c:
        hello_pcap(tmp_path / "hello.pcap")
        yield c


@pytest.fixture
def center5(pg_admin_url: str, tmp_path: Path) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path, queues=QUEUES + FIFTH) as c:
        hello_pcap(tmp_path / "hello.pcap")
        yield c


def _carrier(center: Center, *, calls: int = 1, timeout: int = 120) -> Uas:
    """SIPp as the carrier (``carrier_campaign.xml``), logging every number it is asked."""
    return Uas(
        "carrier_campaign.xml",
        port=center.trunk_port,
        cwd=center.cwd,
        extra=["-i", "127.0.0.2", "-trace_logs"],
        m=calls,
        timeout=timeout,
    )


def _operator_phone(
    center: Center, ext: str, *, talk_ms: int = 3000, calls: int = 100, timeout: int = 120
) -> Uas:
    """``ext``'s SIPp phone, registered: answers, talks ``talk_ms``, hangs up; logged."""
    return Uas(
        "agent_answer_talk.xml",
        port=register_phone(center.target, center.cwd, ext),
        cwd=center.cwd,
        extra=["-d", str(talk_ms), "-trace_logs"],
        m=calls,
        timeout=timeout,
    )


def _logged(cwd: Path, scenario: str, word: str) -> list[str]:
    """The numbers SIPp logged after ``word`` (its -trace_logs files for ``scenario``)."""
    numbers: list[str] = []
    for f in cwd.glob(f"{scenario.removesuffix('.xml')}_*_logs.log"):
        for line in f.read_text(errors="replace").splitlines():
            m = re.search(rf"^{word} .*?sip:\+?(\d+)@", line)
            if m:
                numbers.append(m.group(1))
    return numbers


def _db(center: Center, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(center.db) as conn:
        return conn.execute(sql, params).fetchall()


def _states(center: Center, campaign: int) -> dict[str, str]:
    """Each contact's "state:last_outcome", by number."""
    q = (
        "SELECT phone, state || ':' || coalesce(last_outcome, '') FROM campaign_contacts"
        " WHERE campaign_id = %s"
    )
    return {str(p): str(s) for p, s in _db(center, q, (campaign,))}


def _campaign(center: Center, token: str, body: dict[str, Any], csv: str) -> int:
    status, campaign = _call(center.node, "POST", "/api/campaigns", body, token)
    assert status == 201, campaign
    cid = int(campaign["id"])
    status, imported = _call(
        center.node,
        "POST",
        f"/api/campaigns/{cid}/contacts",
        {
            "file_name": "list.csv",
            "format": "csv",
            "content_base64": base64.b64encode(csv.encode()).decode(),
            "mapping": {"phone": "phone", "name": "name", "time_zone": "tz"},
        },
        token,
    )
    assert status == 200, imported
    return cid


def test_a_predictive_campaign_dials_detects_connects_and_abandons_as_the_peers_saw(
    center: Center,
) -> None:
    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    # 24 people, 3 busy, 3 ringing out, 3 machines; one number on the do-not-call list
    # before the import, one put on it after
    numbers = [f"38044555{n:04d}" for n in range(10, 44)]
    persons = [n for n in numbers if n[-1] not in "123"]
    never = {numbers[0], numbers[4]}  # both persons
    assert _call(node, "POST", "/api/do-not-call", {"phone": numbers[0]}, boss)[0] == 201
    csv = "phone,name,tz\n" + "".join(f"+{n},Contact {n[-4:]},Europe/Kyiv\n" for n in numbers)
    cid = _campaign(
        center,
        boss,
        {
            "name": "Survey",
            "mode": "predictive",
            "queue": "survey",
            "rules": {
                **ALWAYS,
                "retries": {
                    "busy": {"attempts": 2, "interval_minutes": 30},
                    "no_answer": {"attempts": 2, "interval_minutes": 60},
                    "machine": {"attempts": 1, "interval_minutes": 60},
                    "failed": {"attempts": 1, "interval_minutes": 60},
                },
            },
            "dialing": {"ring_seconds": 5, "max_lines": 8},
        },
        csv,
    )
    assert _call(node, "POST", "/api/do-not-call", {"phone": numbers[4]}, boss)[0] == 201
    dialed_expected = len(numbers) - len(never)
    carrier = _carrier(center, calls=dialed_expected, timeout=300)
    operators = []
    for ext in ("7001", "7002", "7003"):
        port = register_phone(center.target, center.cwd, ext)
        operators.append(
            Uas(
                "agent_answer_talk.xml",
                port=port,
                cwd=center.cwd,
                extra=["-d", "3000", "-trace_logs"],
                m=100,
                timeout=300,
            )
        )
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 3, 10)
        status, _ = _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)
        assert status == 200

        def settled() -> bool:
            rows = _db(
                center,
                "SELECT count(*) FROM campaign_contacts WHERE campaign_id = %s"
                " AND state IN ('pending', 'dialing')",
                (cid,),
            )
            return rows[0][0] == 0

        assert wait_for(settled, 240)
        assert carrier.wait(60).ok or True  # its calls are over (the log is what counts)
    finally:
        carrier.kill()
        for op in operators:
            op.kill()
    # what the carrier saw dialed: every contact once, never a do-not-call number
    invited = _logged(center.cwd, "carrier_campaign.xml", "invite")
    assert sorted(invited) == sorted(n for n in numbers if n not in never), invited
    # ccorch's outcomes by what the numbers are
    attempts = dict(
        _db(center, "SELECT phone, outcome FROM campaign_attempts WHERE campaign_id = %s", (cid,))
    )
    for n in numbers:
        if n in never:
            assert n not in attempts
        elif n[-1] == "1":
            assert attempts[n] == "busy", (n, attempts[n])
        elif n[-1] == "2":
            assert attempts[n] == "no_answer", (n, attempts[n])
        elif n[-1] == "3":
            assert attempts[n] == "machine", (n, attempts[n])
        else:
            assert attempts[n] in ("connected", "abandoned"), (n, attempts[n])
    # the operators' phones saw exactly the people ccorch says were connected; the other
    # people were abandoned (heard the message, then the node hung up)
    reached = _logged(center.cwd, "agent_answer_talk.xml", "agent-answer")
    connected = sorted(n for n, o in attempts.items() if o == "connected")
    assert sorted(reached) == connected
    abandoned = [n for n, o in attempts.items() if o == "abandoned"]
    assert sorted(abandoned) == sorted(set(persons) - never - set(reached))
    # the contacts' states follow the rules: busy once of two → retried in 30 min
    states = _states(center, cid)
    for n in numbers:
        if n == numbers[0]:  # refused at the import (on the list already)
            assert n not in states
        elif n in never:
            assert states[n].startswith("dnc"), states[n]
        elif n[-1] == "1":
            assert states[n] == "retry:busy"
        elif n[-1] == "2":
            assert states[n] == "retry:no_answer"
        elif n[-1] == "3":
            assert states[n] == "failed:machine"
        elif n in connected:
            assert states[n] == "done:connected"
        else:
            assert states[n] == "retry:abandoned"
    status, page = _call(node, "GET", f"/api/campaigns/{cid}", None, boss)
    live = len(persons) - len(never)
    assert page["live_24h"] == live and page["abandoned_24h"] == len(abandoned), page
    assert page["abandon_rate_24h"] == pytest.approx(len(abandoned) / live)
    assert page["attempts"]["machine"] == 4 and page["attempts"]["busy"] == 4


def test_a_person_nobody_takes_hears_the_abandon_message_within_2_seconds(
    center: Center,
) -> None:
    """The one operator's phone rings and never answers: the person is abandoned, hears
    the campaign's abandon message (compared with its speech), then the node hangs up."""
    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    cid = _campaign(
        center,
        boss,
        {"name": "Nobody", "mode": "predictive", "queue": "survey", "rules": ALWAYS},
        "phone,name,tz\n+380445550100,Olena,Europe/Kyiv\n",
    )
    ear = Phone()
    carrier = Uas(
        "agent_answer_media.xml",  # a person whose audio is ``ear``
        port=center.trunk_port,
        cwd=center.cwd,
        extra=["-i", "127.0.0.2", "-key", "rtp_port", str(ear.port), "-d", "300"],
        timeout=120,
    )
    port = register_phone(center.target, center.cwd, "7001")
    operator = Uas("agent_ring_cancelled.xml", port=port, cwd=center.cwd, m=5, timeout=120)
    first_voice: float | None = None
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        deadline = time.monotonic() + 60
        while carrier.proc.poll() is None and time.monotonic() < deadline:
            before = len(ear.heard)
            ear.listen(0.02)
            if first_voice is None and any(b != 0xFF for b in ear.heard[before:]):
                first_voice = time.time()
        assert carrier.wait(10).ok  # the node's BYE ended the call
    finally:
        carrier.kill()
        operator.kill()
        ear.sock.close()
    [(outcome, live_at, detected)] = _db(
        center, "SELECT outcome, live_at, detected FROM campaign_attempts WHERE campaign_id = %s",
        (cid,),
    )  # fmt: skip
    assert (outcome, detected) == ("abandoned", "silence")
    assert first_voice is not None
    # the message began within 2 s of detection's verdict (the greeting's end: here the
    # person said nothing, so the verdict is the initial silence's)
    delta = first_voice - live_at.timestamp()
    print(f"the abandon message began {delta:.3f} s after the verdict")  # (shown with -s)
    assert 0 <= delta <= 2.0, delta
    # what the person heard is the abandon message, as spoken by the node's voice
    spoken = tts.render(DEFAULT_ABANDON["ru"], "ru", center.cwd / "tts")
    with wave.open(str(spoken)) as w:
        pcm = w.readframes(w.getnframes())
    second = g711_encode(pcm[16000:32000], "PCMU")  # its second second, PCMU as sent
    assert second in bytes(ear.heard)
    m = center.m()
    assert m['cc_campaign_abandon_ratio{campaign="Nobody",window="24h"}'] == 1.0
    assert m['cc_campaign_attempts_total{campaign="Nobody",outcome="abandoned"}'] == 1
    status, page = _call(node, "GET", f"/api/campaigns/{cid}", None, boss)
    assert status == 200
    assert (page["abandoned_24h"], page["live_24h"], page["abandon_rate_24h"]) == (1, 1, 1.0)
    assert page["contacts"] == {"retry": 1} and page["live"]["calls_in_flight"] == 0


def test_a_node_killed_mid_campaign_loses_no_attempt_and_the_campaign_goes_on(
    center: Center,
) -> None:
    from tests.conftest import start_node
    from tests.test_inbound import NODE_ENV

    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    numbers = [f"38044556{n:04d}" for n in range(10, 34)]
    csv = "phone,name,tz\n" + "".join(f"+{n},C{n[-4:]},Europe/Kyiv\n" for n in numbers)
    rules = {
        **ALWAYS,
        "retries": {"busy": {"attempts": 1, "interval_minutes": 1},
                    "no_answer": {"attempts": 1, "interval_minutes": 1},
                    "machine": {"attempts": 1, "interval_minutes": 1},
                    "failed": {"attempts": 1, "interval_minutes": 1}},
    }  # fmt: skip
    cid = _campaign(
        center,
        boss,
        {"name": "Restart", "mode": "progressive", "queue": "survey", "rules": rules,
         "dialing": {"ring_seconds": 5}},
        csv,
    )  # fmt: skip
    carrier = _carrier(center, calls=200, timeout=300)
    operators = [
        Uas(
            "agent_answer_talk.xml",
            port=register_phone(center.target, center.cwd, ext),
            cwd=center.cwd,
            extra=["-d", "3000", "-trace_logs"],
            m=100,
            timeout=300,
        )
        for ext in ("7001", "7002", "7003")
    ]

    def ended() -> int:
        q = "SELECT count(*) FROM campaign_attempts WHERE campaign_id = %s AND ended_at IS NOT NULL"
        return int(_db(center, q, (cid,))[0][0])

    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 3, 10)
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200

        def up() -> int:
            q = "SELECT count(*) FROM campaign_attempts WHERE campaign_id = %s AND ended_at IS NULL"
            return int(_db(center, q, (cid,))[0][0])

        assert wait_for(lambda: ended() >= 3 and up() >= 2, 120)
        node.kill()  # SIGKILL: no goodbye, calls up and ringing
        [(open_at_kill,)] = _db(
            center,
            "SELECT count(*) FROM campaign_attempts WHERE campaign_id = %s AND ended_at IS NULL",
            (cid,),
        )
        center.node = start_node(center.cwd, NODE_ENV | {"DATABASE_URL": center.db})

        def settled() -> bool:
            q = (
                "SELECT count(*) FROM campaign_contacts WHERE campaign_id = %s"
                " AND state IN ('pending', 'dialing')"
            )
            return _db(center, q, (cid,))[0][0] == 0

        assert wait_for(settled, 240)
    finally:
        carrier.kill()
        for op in operators:
            op.kill()
    attempts = _db(
        center,
        "SELECT phone, outcome, ended_at IS NOT NULL FROM campaign_attempts"
        " WHERE campaign_id = %s ORDER BY id",
        (cid,),
    )
    assert all(closed for _, _, closed in attempts)  # none left open
    interrupted = [p for p, o, _ in attempts if o == "interrupted"]
    assert 0 < len(interrupted) <= open_at_kill
    # each number's last attempt is a real outcome by what the number is; an interrupted
    # attempt was dialed again after the restart
    last = {p: o for p, o, _ in attempts}
    for n in numbers:
        # (progressive mode does not detect machines: the operator hears them)
        expected = {"1": "busy", "2": "no_answer"}.get(n[-1], "connected")
        assert last[n] == expected, (n, last[n])
    # every INVITE the carrier saw has its attempt, written before it was sent
    invited = Counter(_logged(center.cwd, "carrier_campaign.xml", "invite"))
    written = Counter(p for p, _, _ in attempts)
    assert invited <= written and sum(written.values()) - sum(invited.values()) <= 1, (
        invited,
        written,
    )
    states = dict(
        _db(center, "SELECT phone, state FROM campaign_contacts WHERE campaign_id = %s", (cid,))
    )
    assert {states[n] for n in numbers if n[-1] not in "12"} == {"done"}


def test_a_voice_broadcast_speaks_each_contacts_own_words_and_takes_their_keys(
    center: Center,
) -> None:
    """The demo's outage notice: each person hears their own name, address and time (the
    received audio holds the node's speech of exactly that text); 1 confirms, 2 reaches an
    operator."""
    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    status, campaign = _call(
        node,
        "POST",
        "/api/campaigns",
        {"name": "Outage", "mode": "broadcast", "rules": ALWAYS,
         "dialing": {"flow": "outage-notice-ru", "max_lines": 1}},
        boss,
    )  # fmt: skip
    assert status == 201, campaign
    cid = campaign["id"]
    people = [
        ("380445550200", "Олена", "улица Шевченко, дом 5", "завтра с 10 до 14 часов"),
        ("380445550201", "Тарас", "проспект Победы, дом 12", "в среду с 9 до 11 часов"),
    ]
    csv = "phone,name,address,when\n" + "".join(f'+{p},{n},"{a}","{w}"\n' for p, n, a, w in people)
    status, imported = _call(
        node,
        "POST",
        f"/api/campaigns/{cid}/contacts",
        {
            "file_name": "outage.csv",
            "format": "csv",
            "content_base64": base64.b64encode(csv.encode()).decode(),
            "mapping": {"phone": "phone", "name": "name",
                        "variables": {"address": "address", "when": "when"}},
        },
        boss,
    )  # fmt: skip
    assert status == 200 and len(imported["refused"]) == 0, imported
    flow = load_flow(center.cwd / "flows" / "outage-notice-ru.yaml")
    prompt = str(flow.nodes["notice"].spec["prompt"])
    ear = Phone()
    carrier = Uas(
        "agent_answer_media.xml",
        port=center.trunk_port,
        cwd=center.cwd,
        extra=["-i", "127.0.0.2", "-key", "rtp_port", str(ear.port), "-d", "300"],
        m=2,
        timeout=180,
    )
    operator = _operator_phone(center, "7003", talk_ms=2000, timeout=180)
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        for (_, name, address, when), key in zip(people, "12", strict=True):
            text = prompt.replace("{name}", name).replace("{address}", address)
            spoken = tts.render(text.replace("{when}", when), "ru", center.cwd / "tts")
            with wave.open(str(spoken)) as w:
                pcm = w.readframes(w.getnframes())
            expected = g711_encode(pcm[: len(pcm) - len(pcm) % 320], "PCMU")
            ear.heard.clear()
            deadline = time.monotonic() + 60
            while expected not in bytes(ear.heard) and time.monotonic() < deadline:
                ear.listen(0.1)
            assert expected in bytes(ear.heard), f"{name}: the notice with their words"
            ear.press(key)
            if key == "1":  # thanked, then the node hangs up: the next contact is dialed
                ear.listen(1.0)
        assert wait_for(
            lambda: (
                _db(
                    center,
                    "SELECT count(*) FROM campaign_attempts WHERE campaign_id = %s"
                    " AND ended_at IS NOT NULL",
                    (cid,),
                )[0][0]
                == 2
            ),
            60,
        )
        assert carrier.wait(30).ok
    finally:
        carrier.kill()
        operator.kill()
        ear.sock.close()
    outcomes = dict(
        _db(
            center,
            "SELECT phone, outcome || ':' || coalesce(keys, '') || ':' || coalesce(agent, '')"
            " FROM campaign_attempts WHERE campaign_id = %s",
            (cid,),
        )
    )
    assert outcomes == {people[0][0]: "confirmed:1:", people[1][0]: "connected:2:7003"}
    assert _logged(center.cwd, "agent_answer_talk.xml", "agent-answer") == [people[1][0]]


def test_the_operator_works_the_survey_script_and_the_answers_land_in_the_crm(
    center: Center, browser: Browser
) -> None:
    """Seed 002's survey campaign: the call reaches the operator's desktop with Ivan
    Petrenko's card and the script's first question; the answers clicked and typed in
    Chromium are the response stored for him, the attempt and the campaign."""
    from tests.test_desktop import open_app, sign_in, start_shift

    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    with psycopg.connect(center.db) as conn:
        survey = conn.execute(
            "SELECT id FROM surveys WHERE name = 'ABC Internet satisfaction'"
        ).fetchone()
        ivan = conn.execute("SELECT id FROM customers WHERE name = 'Ivan Petrenko'").fetchone()
    assert survey is not None and ivan is not None
    cid = _campaign(
        center,
        boss,
        {"name": "Satisfaction", "mode": "progressive", "queue": "survey", "rules": ALWAYS,
         "survey_id": survey[0]},
        "phone,name,tz\n0671234567,Ivan Petrenko,Europe/Kyiv\n",
    )  # fmt: skip
    page = open_app(browser, center)
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"survey"})  # (before the desk phone registers and logs in)
    carrier = _carrier(center)
    phone = _operator_phone(center, "7001", talk_ms=90000)
    try:
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        expect(page.get_by_test_id("customer-name")).to_have_text("Ivan Petrenko")
        expect(page.get_by_test_id("script")).to_contain_text("Satisfaction")
        question = page.get_by_test_id("script-question")
        expect(question).to_have_text(
            "Удовлетворены ли Вы сервисом предоставления услуг Интернета?"
        )
        page.click("[data-testid=script-option-no]")  # the "no" branch of the graph
        expect(question).to_have_text("Что именно Вас не удовлетворяет в нашем сервисе?")
        page.fill("[data-testid=script-input]", "Скорость вечером")
        page.click("[data-testid=script-next]")
        expect(question).to_have_text("Оцените наш сервис от 1 до 5")
        page.fill("[data-testid=script-input]", "3")
        page.click("[data-testid=script-next]")
        expect(page.get_by_test_id("script-done")).to_be_visible()
    finally:
        carrier.kill()
        phone.kill()
    [(attempt, agent)] = _db(
        center, "SELECT id, agent FROM campaign_attempts WHERE campaign_id = %s", (cid,)
    )
    assert agent == "7001"
    [(response, customer, completed)] = _db(
        center,
        "SELECT id, customer_id, completed_at IS NOT NULL FROM survey_responses"
        " WHERE campaign_attempt_id = %s",
        (attempt,),
    )
    assert (customer, completed) == (ivan[0], True)
    answers = _db(
        center,
        "SELECT question_key, answer FROM survey_answers WHERE response_id = %s ORDER BY seq",
        (response,),
    )
    assert answers == [("satisfied", "no"), ("what_is_wrong", "Скорость вечером"), ("rating", "3")]
    # another operator cannot write into that response, nor start one on that attempt
    other = _token(node, "op7002", "agent7002")
    status, _ = _call(
        node, "POST", f"/api/survey-responses/{response}/answers", {"answer": "5"}, other
    )
    assert status == 404
    status, refused = _call(
        node, "POST", f"/api/surveys/{survey[0]}/responses", {"campaign_attempt_id": attempt}, other
    )
    assert status == 422 and "campaign_attempt_id" in refused["fields"], refused


def test_a_supervisor_builds_imports_and_runs_a_campaign_from_the_console(
    center: Center, browser: Browser
) -> None:
    from tests.test_desktop import open_app, shot, sign_in

    carrier = _carrier(center, calls=2)
    phone = _operator_phone(center, "7001")
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        page = open_app(browser, center)
        sign_in(page, "sup7009", "agent7009")
        page.click("[data-testid=sup-tab-campaigns]")
        page.fill("[data-testid=cmp-name]", "Console")
        page.select_option("[data-testid=cmp-mode]", "progressive")
        page.select_option("[data-testid=cmp-queue]", "survey")
        page.fill("[data-testid=cmp-from]", "00:00")
        page.fill("[data-testid=cmp-to]", "23:59")
        page.click("[data-testid=cmp-create]")
        expect(page.get_by_test_id("campaign-detail")).to_contain_text("Console")
        csv = "phone,name\n+380445550301,A\nnot a phone,B\n+380445550311,C\n"
        page.set_input_files(
            "[data-testid=campaign-file]",
            files=[{"name": "list.csv", "mimeType": "text/csv", "buffer": csv.encode()}],
        )
        expect(page.get_by_test_id("campaign-imported")).to_have_text(
            "2 contacts added, 1 rows refused"
        )
        expect(page.get_by_test_id("campaign-refused")).to_contain_text("3")  # the file's line
        page.click("[data-testid=campaign-run]")
        # both numbers are busy: two attempts, both contacts to be called again
        expect(page.get_by_test_id("attempts-busy")).to_have_text("Busy: 2", timeout=30_000)
        expect(page.get_by_test_id("contacts-retry")).to_have_text("To call again: 2")
        shot(page, "campaign-console")
        page.click("[data-testid=campaign-pause]")
        [(status,)] = _db(center, "SELECT status FROM campaigns WHERE name = 'Console'")
        assert status in ("running", "paused")
        expect(page.get_by_test_id("campaign-run")).to_have_text("Resume")
    finally:
        carrier.kill()
        phone.kill()


def test_a_callback_left_in_the_ivr_is_dialed_to_its_queue_with_the_case_linked(
    center: Center,
) -> None:
    import asyncio
    import concurrent.futures
    import datetime as dt

    from ccorch.crm import cases

    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    with psycopg.connect(center.db) as conn:
        ivan = conn.execute("SELECT id FROM customers WHERE name = 'Ivan Petrenko'").fetchone()
    assert ivan is not None

    async def leave_callback() -> int:  # what the IVR's callback option writes
        now = dt.datetime.now(dt.UTC)
        async with await psycopg.AsyncConnection.connect(center.db, autocommit=True) as conn:
            return await cases.request_from_ivr(
                conn, what="callback", number="380671234567", customer_id=ivan[0],
                started_at=now, now=now, hours=cases.BusinessHours(), queue="survey",
            )  # fmt: skip

    # (in a thread of its own: Playwright's sync API may hold this thread's event loop)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        case_id = pool.submit(asyncio.run, leave_callback()).result(30)
    status, campaign = _call(
        node,
        "POST",
        "/api/campaigns",
        {"name": "Callbacks", "mode": "progressive", "queue": "survey", "rules": ALWAYS,
         "dialing": {"callbacks": True}},
        boss,
    )  # fmt: skip
    assert status == 201, campaign
    carrier = _carrier(center)
    phone = _operator_phone(center, "7001", talk_ms=2000)
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        cid = campaign["id"]
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200

        def done() -> bool:
            q = "SELECT status FROM tasks WHERE case_id = %s AND kind = 'callback'"
            return _db(center, q, (case_id,)) == [("done",)]

        assert wait_for(done, 60)
    finally:
        carrier.kill()
        phone.kill()
    [(outcome, agent)] = _db(
        center, "SELECT outcome, agent FROM campaign_attempts WHERE campaign_id = %s", (cid,)
    )
    assert (outcome, agent) == ("connected", "7001")
    assert _logged(center.cwd, "agent_answer_talk.xml", "agent-answer") == ["380671234567"]
    # the callback call's interaction is on the case
    assert wait_for(
        lambda: (
            _db(
                center,
                "SELECT count(*) FROM interactions WHERE case_id = %s AND direction = 'out'",
                (case_id,),
            )[0][0]
            == 1
        ),
        10,
    )


def test_a_machine_the_operator_finds_is_retried_as_one_and_not_counted_live(
    center: Center,
) -> None:
    """Detection passed a machine as a person (here: progressive mode does not detect):
    the operator's wrap-up code after the call makes it a machine attempt, retried by the
    machine rule and out of the live answers the abandon rate divides by."""
    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    op = _token(node, "op7001", "agent7001")
    rules = {**ALWAYS, "retries": {"machine": {"attempts": 3, "interval_minutes": 120}}}
    cid = _campaign(
        center,
        boss,
        {"name": "Machines", "mode": "progressive", "queue": "survey", "rules": rules},
        "phone,name,tz\n+380445550403,Machine,Europe/Kyiv\n",
    )
    carrier = _carrier(center)
    phone = _operator_phone(center, "7001", talk_ms=3000)
    call_id = None
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        deadline = time.monotonic() + 30
        while call_id is None and time.monotonic() < deadline:
            items = _call(node, "GET", "/api/calls", None, op)[1]["items"]
            call_id = items[0]["id"] if items else None
            time.sleep(0.2)
        assert call_id is not None
        assert wait_for(lambda: not _call(node, "GET", "/api/calls", None, op)[1]["items"], 20)
        status, body = _call(
            node, "POST", f"/api/calls/{call_id}/disposition", {"code": "answering_machine"}, op
        )
        assert status == 200, body

        def marked() -> bool:
            q = "SELECT outcome, disposition FROM campaign_attempts WHERE campaign_id = %s"
            return _db(center, q, (cid,)) == [("machine", "answering_machine")]

        assert wait_for(marked, 10)
    finally:
        carrier.kill()
        phone.kill()
    [(state, last, later)] = _db(
        center,
        "SELECT state, last_outcome, next_attempt_at > now() + interval '100 minutes'"
        " FROM campaign_contacts WHERE campaign_id = %s",
        (cid,),
    )
    assert (state, last, later) == ("retry", "machine", True)
    _, page = _call(node, "GET", f"/api/campaigns/{cid}", None, boss)
    assert page["live_24h"] == 0 and page["abandon_rate_24h"] is None, page


def test_preview_the_operator_sees_the_contact_passes_one_and_dials_the_next(
    center: Center, browser: Browser
) -> None:
    from tests.test_desktop import open_app, sign_in, start_shift

    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    with psycopg.connect(center.db) as conn:
        survey = conn.execute(
            "SELECT id FROM surveys WHERE name = 'ABC Internet satisfaction'"
        ).fetchone()
    assert survey is not None
    cid = _campaign(
        center,
        boss,
        {"name": "Preview", "mode": "preview", "queue": "survey", "rules": ALWAYS,
         "survey_id": survey[0]},
        "phone,name,tz\n+380445550505,Later Please,Europe/Kyiv\n"
        "0671234567,Ivan Petrenko,Europe/Kyiv\n",
    )  # fmt: skip
    assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
    page = open_app(browser, center)
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"survey"})
    carrier = _carrier(center)
    phone = _operator_phone(center, "7001", talk_ms=60000)
    try:
        page.reload()  # (the preview panel asks for the operator's campaigns as it opens)
        page.click("[data-testid=preview-next]")
        expect(page.get_by_test_id("preview-contact")).to_contain_text("Later Please")
        page.click("[data-testid=preview-skip]")
        page.click("[data-testid=preview-next]")
        expect(page.get_by_test_id("preview-contact")).to_contain_text("Ivan Petrenko")
        expect(page.get_by_test_id("customer-name")).to_have_text("Ivan Petrenko")
        page.click("[data-testid=preview-dial]")
        expect(page.get_by_test_id("script-question")).to_have_text(
            "Удовлетворены ли Вы сервисом предоставления услуг Интернета?", timeout=20_000
        )
        page.click("[data-testid=script-option-yes]")
        expect(page.get_by_test_id("script-question")).to_have_text(
            "Какими сервисами Вы бы хотели пользоваться в будущем?"
        )
    finally:
        carrier.kill()
        phone.kill()
    rows = _db(
        center,
        "SELECT phone, outcome, previewed_by, agent FROM campaign_attempts"
        " WHERE campaign_id = %s ORDER BY id",
        (cid,),
    )
    assert rows[0] == ("380445550505", "skipped", "7001", None)
    assert rows[1][0] == "380671234567" and rows[1][2:] == ("7001", "7001")
    # the carrier was only asked for the contact the operator dialed
    assert _logged(center.cwd, "carrier_campaign.xml", "invite") == ["380671234567"]
    [(state,)] = _db(center, "SELECT state FROM campaign_contacts WHERE phone = '380445550505'", ())
    assert state == "retry"


def test_call_back_at_a_time_for_the_same_operator_rings_them_not_a_free_colleague(
    center: Center, browser: Browser
) -> None:
    """The customer asks to be called back: the operator gives "call back at" in the
    desktop's wrap-up with the time and "I will make the callback myself". At that time
    the campaign dials the customer again and rings that operator (the screen pops with the
    customer), while a colleague of the same group stays free and is never rung."""
    from tests.test_desktop import open_app, shot, sign_in, start_shift

    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    cid = _campaign(
        center,
        boss,
        {"name": "Callbacks", "mode": "progressive", "queue": "survey", "rules": ALWAYS},
        "phone,name,tz\n0671234567,Ivan Petrenko,Europe/Kyiv\n",
    )
    page = open_app(browser, center)
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"survey"})
    carrier = _carrier(center, calls=2)
    phone = _operator_phone(center, "7001", talk_ms=6000)
    colleague: Uas | None = None
    try:
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        expect(page.get_by_test_id("wrap-up-panel")).to_be_visible(timeout=20_000)
        colleague = _operator_phone(center, "7002")  # free from now on
        page.select_option("[data-testid=disposition-code]", "callback_requested")
        # the current minute of the browser's clock: due at once
        now = page.evaluate(
            "() => { const d = new Date(); const p = (n) => String(n).padStart(2, '0');"
            " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T"
            "${p(d.getHours())}:${p(d.getMinutes())}`; }"
        )
        page.fill("[data-testid=callback-at]", now)
        page.check("[data-testid=callback-personal]")
        page.fill("[data-testid=disposition-note]", "after 18:00 is better")
        page.click("[data-testid=disposition-save]")
        expect(page.get_by_test_id("disposition-saved")).to_contain_text("Call back later")
        shot(page, "desktop-wrap-up-callback")

        def called_twice() -> bool:
            return len(_logged(center.cwd, "carrier_campaign.xml", "invite")) == 2

        assert wait_for(called_twice, 40), _db(center, "SELECT * FROM campaign_contacts")
        # the second call pops the customer on the same operator's desktop
        expect(page.get_by_test_id("call-ani")).to_contain_text("380671234567", timeout=20_000)

        def done() -> bool:
            q = "SELECT state FROM campaign_contacts WHERE campaign_id = %s"
            return _db(center, q, (cid,)) == [("done",)]

        assert wait_for(done, 30)
    finally:
        carrier.kill()
        phone.kill()
        if colleague is not None:
            colleague.kill()
    attempts = _db(
        center,
        "SELECT agent, outcome, disposition FROM campaign_attempts WHERE campaign_id = %s"
        " ORDER BY id",
        (cid,),
    )
    assert attempts == [("7001", "connected", "callback_requested"), ("7001", "connected", None)]
    # 7001's phone answered both calls; the colleague's was never rung
    assert colleague is not None
    answered = {
        who: sum(
            line.startswith("agent-answer")
            for f in center.cwd.glob(f"agent_answer_talk_{uas.proc.pid}_logs.log")
            for line in f.read_text(errors="replace").splitlines()
        )
        for who, uas in (("7001", phone), ("7002", colleague))
    }
    assert answered == {"7001": 2, "7002": 0}, answered
    [(note,)] = _db(center, "SELECT note FROM cdrs WHERE disposition = 'callback_requested'")
    assert note == "after 18:00 is better"


def _zone_at(hours: range) -> str:
    """A fixed-offset time zone whose local hour is now within ``hours``."""
    now = dt.datetime.now(dt.UTC)
    for offset in range(-12, 15):
        if (now.hour + offset) % 24 in hours:
            # (Etc/GMT's sign is the POSIX one: Etc/GMT-3 is three hours east of UTC)
            return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
    raise AssertionError(hours)


def test_the_seeds_survey_campaign_over_200_contacts_with_5_operators(
    center5: Center, browser: Browser
) -> None:
    """Seed 002's survey campaign at the issue's scale: 200 contacts, 5 operators (one of
    them works the script in Chromium, four are SIPp phones). Every contact ends as its
    rules say, those on the do-not-call list (before or after the import) and those whose
    window is closed are never dialed, and the survey responses in the CRM are the answers
    clicked and typed for each customer."""
    from tests.test_desktop import open_app, sign_in, start_shift

    center = center5
    node = center.node
    boss = _token(node, "sup7009", "agent7009")
    with psycopg.connect(center.db) as conn:
        survey = conn.execute(
            "SELECT id FROM surveys WHERE name = 'ABC Internet satisfaction'"
        ).fetchone()
    assert survey is not None
    # by last digit: 1 busy, 2 rings out, 3 a machine, else a person
    kinds = "0456789" * 12 + "3" * 40 + "1" * 30 + "2" * 26  # 180 in their window
    open_zone, closed_zone = _zone_at(range(10, 17)), _zone_at(range(22, 24))
    contacts = [(f"38044777{i:03d}{d}", open_zone) for i, d in enumerate(kinds)]
    contacts += [(f"38044778{i:03d}7", closed_zone) for i in range(20)]  # window closed
    numbers = [n for n, _ in contacts]
    dnc_before, dnc_after = numbers[:3], numbers[3:8]  # people, all of them
    for n in dnc_before:
        assert _call(node, "POST", "/api/do-not-call", {"phone": n}, boss)[0] == 201
    rules = {
        "window_start": "09:00", "window_end": "20:00", "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "retries": {k: {"attempts": 1, "interval_minutes": 60}
                    for k in ("busy", "no_answer", "machine", "failed")},
    }  # fmt: skip
    csv = "phone,name,tz\n" + "".join(f"+{n},Contact {n[-4:]},{z}\n" for n, z in contacts)
    cid = _campaign(
        center,
        boss,
        {"name": "Satisfaction 200", "mode": "predictive", "queue": "survey", "rules": rules,
         "survey_id": survey[0], "dialing": {"ring_seconds": 5, "max_lines": 20}},
        csv,
    )  # fmt: skip
    for n in dnc_after:
        body = {"phone": n, "campaign_id": cid}
        assert _call(node, "POST", "/api/do-not-call", body, boss)[0] == 201
    page = open_app(browser, center)
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"survey"})
    dialable = [n for n, z in contacts if z == open_zone and n not in dnc_before + dnc_after]
    carrier = _carrier(center, calls=len(dialable), timeout=400)
    clicking = _operator_phone(center, "7001", talk_ms=12000, timeout=400)
    phones = [_operator_phone(center, ext, talk_ms=1000, timeout=400)
              for ext in ("7002", "7003", "7004", "7009")]  # fmt: skip
    answered: dict[str, str] = {}  # number → the text typed for it

    def settled() -> bool:
        q = ("SELECT count(*) FROM campaign_contacts WHERE campaign_id = %s"
             " AND state IN ('pending', 'retry', 'dialing') AND time_zone = %s")  # fmt: skip
        return _db(center, q, (cid, open_zone))[0][0] == 0

    first = "Удовлетворены ли Вы сервисом предоставления услуг Интернета?"
    try:
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 5, 15)
        assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200
        deadline = time.monotonic() + 300
        while not settled() and time.monotonic() < deadline:
            question = page.get_by_test_id("script-question")
            number = (page.get_by_test_id("call-ani").all_inner_texts() or [""])[0].strip()
            if (
                number
                and number not in answered
                and question.count() == 1
                and question.inner_text() == first
            ):
                page.click("[data-testid=script-option-yes]")
                expect(question).to_have_text(
                    "Какими сервисами Вы бы хотели пользоваться в будущем?"
                )
                answered[number] = f"IPTV for {number}"
                page.fill("[data-testid=script-input]", answered[number])
                page.click("[data-testid=script-next]")
                expect(question).to_have_text("Оцените наш сервис от 1 до 5")
                page.fill("[data-testid=script-input]", "4")
                page.click("[data-testid=script-next]")
                expect(page.get_by_test_id("script-done")).to_be_visible()
            time.sleep(0.2)
        assert settled(), _db(
            center,
            "SELECT state, count(*) FROM campaign_contacts WHERE campaign_id = %s GROUP BY 1",
            (cid,),
        )
    finally:
        carrier.kill()
        clicking.kill()
        for p in phones:
            p.kill()
    # the carrier was asked for every number in its window once, and for no other
    invited = _logged(center.cwd, "carrier_campaign.xml", "invite")
    assert sorted(invited) == sorted(dialable), set(invited) ^ set(dialable)
    states = _states(center, cid)
    for n in numbers:
        if n in dnc_before:
            assert n not in states  # refused at the import
        elif n in dnc_after:
            assert states[n].startswith("dnc"), states[n]
        elif n not in dialable:
            assert states[n] == "pending:", states[n]  # its window opens later
        elif n[-1] == "1":
            assert states[n] == "failed:busy"
        elif n[-1] == "2":
            assert states[n] == "failed:no_answer"
        elif n[-1] == "3":
            assert states[n] == "failed:machine"
        else:
            assert states[n] in ("done:connected", "failed:abandoned"), (n, states[n])
    later = _db(
        center,
        "SELECT count(*) FROM campaign_contacts WHERE campaign_id = %s AND time_zone = %s"
        " AND next_attempt_at > now()",
        (cid, closed_zone),
    )
    assert later == [(20,)]
    # the responses in the CRM: one per call the operator worked, with what was typed
    assert len(answered) >= 2, answered
    rows = _db(
        center,
        """SELECT a.phone, array_agg(s.answer ORDER BY s.seq), r.completed_at IS NOT NULL
             FROM survey_responses r JOIN campaign_attempts a ON a.id = r.campaign_attempt_id
             JOIN survey_answers s ON s.response_id = r.id
            WHERE a.campaign_id = %s GROUP BY a.phone, r.completed_at""",
        (cid,),
    )
    stored = {phone: (answers, done) for phone, answers, done in rows}
    assert stored == {n: (["yes", text, "4"], True) for n, text in answered.items()}, stored
    # the four phones' operators and the browser's took calls
    reached = _logged(center.cwd, "agent_answer_talk.xml", "agent-answer")
    connected = [n for n in numbers if states.get(n) == "done:connected"]
    assert sorted(reached) == sorted(connected)
