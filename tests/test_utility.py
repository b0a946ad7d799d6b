"""The utility's line (seed 003): meter readings and their checks, outages by address, and
connection requests, from the sans-IO rules up to a trunk call through the demo flow."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
import soxr

from ccorch._core import g711_decode, g711_encode
from ccorch.crm.utility import Reading, check_reading, parse_outages_csv
from ccorch.ivr import asr, tts
from ccorch.ivr.flow import FlowError, parse_flow
from ccorch.ivr.interpreter import (
    CheckOutage,
    Listen,
    Lookup,
    Play,
    Session,
    StopListening,
    SubmitReading,
)
from tests.conftest import Node, _with_dbname, start_node
from tests.sipp import DEMO_FLOWS, demo_flows_copy, free_udp_port, scenario
from tests.test_crm_api import call
from tests.test_ivr import Phone

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
KYIV = ZoneInfo("Europe/Kyiv")


# --- the rules, without I/O -----------------------------------------------------------------


def test_a_reading_is_checked_against_the_last_one_and_the_tariff() -> None:
    last = Reading(12345, None, NOW - dt.timedelta(days=31))
    assert check_reading(None, 100, None, 1, 30, NOW).error is None  # the first one
    assert check_reading(last, 12345, None, 1, 30, NOW).error is None  # nothing used
    ok = check_reading(last, 12500, None, 1, 30, NOW)
    assert (ok.error, ok.used, ok.limit) == (None, 155, 930)
    assert check_reading(last, 12344, None, 1, 30, NOW).error == "lower"
    high = check_reading(last, 12345 + 931, None, 1, 30, NOW)
    assert (high.error, high.used, high.limit) == ("implausible", 931, 930)
    # a reading the next hour may still add a day's plausible use
    soon = Reading(500, None, NOW - dt.timedelta(hours=1))
    assert check_reading(soon, 530, None, 1, 30, NOW).error is None
    assert check_reading(soon, 531, None, 1, 30, NOW).error == "implausible"
    # day and night: both zones, neither lower, their sum against the limit
    two = Reading(4200, 1800, NOW - dt.timedelta(days=32))
    assert check_reading(two, 4300, None, 2, 40, NOW).error == "night_missing"
    assert check_reading(last, 12400, 5, 1, 30, NOW).error == "night_unexpected"
    assert check_reading(two, 4300, 1799, 2, 40, NOW).error == "lower"
    assert check_reading(two, 4199, 1900, 2, 40, NOW).error == "lower"
    both = check_reading(two, 4300, 1850, 2, 40, NOW)
    assert (both.error, both.used, both.limit) == (None, 150, 1280)
    assert check_reading(two, 4200 + 1000, 1800 + 281, 2, 40, NOW).error == "implausible"
    assert check_reading(Reading(10, 0, NOW - dt.timedelta(days=1)), 10, 41, 2, 40, NOW).error == (
        "implausible"  # a night zone read as 0 before still counts
    )


CSV_HEAD = "ref,kind,locality,street,house_from,house_to,starts_at,expected_end,reason\n"


def test_an_outage_csv_is_taken_whole_or_refused_with_line_and_reason() -> None:
    good = (
        CSV_HEAD
        + "op-1,emergency,Kyiv,Sadova St,1,20,2026-12-07T10:00+02:00,2026-12-07T18:00+02:00,"
        "Cable damaged\n"
        + "op-2,planned,Kyiv,Lisova St,,,2026-12-09T09:00+02:00,2026-12-09T17:00+02:00,\n"
        + ",planned,Brovary,,,,2026-12-10T09:00+02:00,2026-12-10T12:00+02:00,whole town\n"
    )
    rows = parse_outages_csv(good)
    assert [(r.ref, r.kind, r.street, r.house_from, r.house_to) for r in rows] == [
        ("op-1", "emergency", "Sadova St", 1, 20),
        ("op-2", "planned", "Lisova St", None, None),
        (None, "planned", None, None, None),
    ]
    assert rows[0].expected_end == dt.datetime(2026, 12, 7, 16, 0, tzinfo=dt.UTC)
    bad_rows = {
        "op-3,storm,Kyiv,,,,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,\n": (
            "kind is planned or emergency"
        ),
        "op-3,planned,Kyiv,,,,2026-12-07T10:00,2026-12-07T11:00+02:00,\n": "give the offset",
        "op-3,planned,Kyiv,,1,5,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,\n": (
            "a house range needs the street"
        ),
        "op-3,planned,Kyiv,Sadova St,9,5,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,\n": (
            "house_to is below house_from"
        ),
        "op-3,planned,Kyiv,Sadova St,,,2026-12-07T10:00+02:00,2026-12-07T09:00+02:00,\n": (
            "expected_end is not after starts_at"
        ),
        "op-1,planned,Kyiv,,,,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,\n": (
            "ref 'op-1' is given twice"
        ),
        "op-3,planned,,,,,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,\n": (
            "locality is required"
        ),
        "op-3,planned,Kyiv,,,,2026-12-07T10:00+02:00,2026-12-07T11:00+02:00,x,extra\n": (
            "more fields than columns"
        ),
    }
    for row, reason in bad_rows.items():
        with pytest.raises(ValueError, match=f"^line 5: .*{reason}"):
            parse_outages_csv(good + row)
    with pytest.raises(ValueError, match="line 1: missing column expected_end"):
        parse_outages_csv("kind,locality,starts_at\n")
    with pytest.raises(ValueError, match="line 1: unknown column 'colour'"):
        parse_outages_csv(CSV_HEAD.strip() + ",colour\n")
    # what the route fuzz sent (a lone carriage return: a 500 before), and a field over the
    # csv module's limit
    with pytest.raises(ValueError, match=r"^line 1: missing column kind"):
        parse_outages_csv('\x97\U000d1c00BI»Py"~\xadå/\rº')
    with pytest.raises(ValueError, match=r"^line 5: not CSV \(field larger than field limit"):
        parse_outages_csv(good + "op-3,planned,Kyiv," + "x" * 200_000 + ",,x,y,\n")


def _demo_flow(lang: str = "en") -> Any:
    path = DEMO_FLOWS / f"city-power-{lang}.yaml"
    return parse_flow(path.read_text(encoding="utf-8"), str(path))


def _said(actions: list[Any]) -> str:
    return " ".join(p.text for a in actions if isinstance(a, Play) for p in a.prompts if p.text)


def test_the_demo_flow_takes_a_reading_and_explains_a_refusal() -> None:
    """Sans-IO: an unknown caller gives the account number, keys a two-zone reading, is
    told it is lower than the last and why, enters it again, and it is stored."""
    s = Session(_demo_flow("en"), {"ani": "0500000000"})
    out = s.start(0)
    lookup = next(a for a in out if isinstance(a, Lookup))
    assert (lookup.crm, lookup.key, lookup.customer) == ("service_point", "", "")
    out = s.on_lookup(0, None)  # not known by the number
    assert "meter readings, press 1" in _said(out)
    s.on_prompts_done(0)
    assert "account number" in _said(s.on_digit(0, "1"))
    s.on_prompts_done(0)
    out = []
    for k in "500102#":
        out += s.on_digit(0, k)
    lookup = next(a for a in out if isinstance(a, Lookup))
    assert (lookup.crm, lookup.key) == ("service_point", "500102")
    out = s.on_lookup(0, {"contract_no": "500102", "zones": 2})
    assert "day zone reading" in _said(out)
    for keys in ("4100#", "1900#"):
        s.on_prompts_done(0)
        for k in keys:
            out = s.on_digit(0, k)
    assert "Day zone 4100, night zone 1900" in _said(out)
    s.on_prompts_done(0)
    submit = s.on_digit(0, "1")
    assert SubmitReading("500102", "4100", "1900", "ivr") in submit
    previous = {"previous_day": 4200, "previous_night": 1800, "previous_date": "2026-11-05"}
    out = s.on_reading(0, "rejected", {"reading_error": "lower", **previous})
    said = _said(out)
    assert "lower than the previous one, taken on November 5th, 2026" in said, said
    assert "day zone 4200, night zone 1800" in said
    s.on_prompts_done(0)
    out = s.on_digit(0, "1")  # enter it again
    assert "day zone reading" in _said(out)
    for keys in ("4300#", "1850#"):
        s.on_prompts_done(0)
        for k in keys:
            out = s.on_digit(0, k)
    s.on_prompts_done(0)
    assert SubmitReading("500102", "4300", "1850", "ivr") in s.on_digit(0, "1")
    out = s.on_reading(0, "ok", {"reading_error": ""})
    assert _said(out) == "Thank you, your reading is accepted. Goodbye."
    s.on_prompts_done(0)
    assert s.phase == "done"


def test_the_demo_flow_tells_an_affected_caller_when_power_returns() -> None:
    s = Session(_demo_flow("ru"), {"ani": "0442223344", "customer_id": 7})
    out = s.start(0)
    lookup = next(a for a in out if isinstance(a, Lookup))
    assert (lookup.crm, lookup.customer, lookup.language) == ("service_point", "7", "ru")
    s.on_lookup(0, {"contract_no": "500101", "zones": 1})
    s.on_prompts_done(0)
    out = s.on_digit(0, "2")
    assert CheckOutage("500101", "7", "Europe/Kyiv", 72.0) in out
    moments = {"outage_end_date": "2026-12-07", "outage_end_time": "18:00"}
    out = s.on_outage(0, "affected", {"outage_kind": "emergency", **moments})
    said = _said(out)
    assert "аварийное отключение" in said
    assert "седьмое декабря две тысячи двадцать шестого года в 18 часов ровно" in said
    # a caller elsewhere hears that nothing is known there, and the end of nothing
    s2 = Session(_demo_flow("ru"), {"ani": "0442223344", "customer_id": 8})
    s2.start(0)
    s2.on_lookup(0, {"contract_no": "500103", "zones": 1})
    s2.on_prompts_done(0)
    s2.on_digit(0, "2")
    said = _said(s2.on_outage(0, "clear", {}))
    assert "Отключений по вашему адресу нет" in said and "возобновить" not in said
    # said nothing after hearing it: goodbye, not three more prompts
    s2.on_prompts_done(0)
    out = s2.on_timeout(10**6)
    assert "До свидания" in _said(out)


def test_utility_nodes_are_checked_at_load() -> None:
    base = """flow: t
dnis: ["9"]
language: en
start: r
nodes:
  r:
    type: meter_reading
    day: d
    ok: bye
    rejected: bye
    on_fail: bye
  bye:
    type: hangup
"""
    parse_flow(base, "t.yaml")
    with pytest.raises(FlowError, match="'rejected' is required"):
        parse_flow(base.replace("    rejected: bye\n", ""), "t.yaml")
    with pytest.raises(FlowError, match="day names a variable"):
        parse_flow(base.replace("day: d", "day: '{d}'"), "t.yaml")
    outage = base.replace(
        "type: meter_reading\n    day: d\n    ok: bye\n    rejected: bye",
        "type: outage\n    timezone: Mars/Olympus\n    affected: bye\n    clear: bye",
    )
    with pytest.raises(FlowError, match="unknown time zone 'Mars/Olympus'"):
        parse_flow(outage, "t.yaml")
    with pytest.raises(FlowError, match="ahead_hours is 0 to 720"):
        parse_flow(outage.replace("Mars/Olympus", "Europe/Kyiv\n    ahead_hours: 1000"), "t.yaml")


def test_a_spoken_reading_is_taken_and_the_keypad_is_the_fallback() -> None:
    """Sans-IO: the English demo flow listens for the reading; heard with enough digits it
    is read back and stored as said (channel voice); not understood, the keypad prompt
    follows; typed during the listening, the keys are taken and listening stops."""
    flow = _demo_flow("en")

    def at_reading() -> tuple[Session, list[Any]]:
        s = Session(flow, {"ani": "0442223344", "customer_id": 7})
        s.start(0)
        s.on_lookup(0, {"contract_no": "500101", "zones": 1})
        s.on_prompts_done(0)
        out = s.on_digit(0, "1")
        assert "say the current reading" in _said(out)
        return s, s.on_prompts_done(1)

    s, out = at_reading()
    assert out == [Listen(10.0)]
    out = s.on_recognized(5, "12634", 29.3)
    assert "You entered 12634" in _said(out)
    s.on_prompts_done(6)
    assert SubmitReading("500101", "12634", "", "voice") in s.on_digit(6, "1")
    assert s.vars["reading_day_confidence"] == 29.3

    s, _ = at_reading()
    out = s.on_recognized(5, "", 0.0)  # nothing understood
    assert "enter the current reading" in _said(out) and s.node is not None
    assert s.node.name == "ask_single_keys"
    s, _ = at_reading()
    assert "ask_single_keys" in _said_node(s, s.on_recognized(5, "1234567890", 40.0))  # too long

    s, _ = at_reading()
    assert s.on_digit(2, "1") == [StopListening()]
    for k in "2634#":
        out = s.on_digit(2, k)
    assert "You entered 12634" in _said(out)
    s.on_prompts_done(3)
    assert SubmitReading("500101", "12634", "", "ivr") in s.on_digit(3, "1")  # typed: ivr

    s, _ = at_reading()  # the recognizer never answered: the fallback once the time is up
    assert s.on_timeout(10.5) == [] and s.node is not None and s.node.name == "ask_single"
    s.on_timeout(1 + 10 + 5)
    assert s.node is not None and s.node.name == "ask_single_keys"


def _said_node(s: Session, out: list[Any]) -> str:
    return s.node.name if s.node is not None else ""


def test_recognize_is_refused_in_a_flow_without_a_recognizer_for_its_language() -> None:
    flow = """flow: t
dnis: ["9"]
language: ru
start: r
nodes:
  r:
    type: recognize
    prompt: "Назовите показания."
    var: d
    next: bye
    fallback: bye
  bye:
    type: hangup
"""
    with pytest.raises(FlowError, match="no speech recognizer for ru here"):
        parse_flow(flow, "t.yaml")
    parse_flow(flow.replace("language: ru", "language: en"), "t.yaml")


def test_the_recognizer_hears_recorded_speech_through_the_telephone_path() -> None:
    """A TIDIGITS recording Debian ships (a man saying 2 9 3 4 zero, 16 kHz) made telephone
    audio (8 kHz, G.711 A-law), with pauses around it: each model installed hears 29340."""
    raw = (asr.TIDIGITS / "dhd.2934z.raw").read_bytes()
    pcm = soxr.resample(np.frombuffer(raw, dtype="<i2"), 16000, 8000).astype("<i2").tobytes()
    pcm = b"\0\0" * 4000 + g711_decode(g711_encode(pcm, "PCMA"), "PCMA") + b"\0\0" * 8000
    names = [m.name for m in asr.models()]
    assert names == ["tidigits", "en-us"], "scripts/setup.sh installs pocketsphinx-testdata"
    for model in asr.models():
        heard = asr.recognize_digits(pcm, asr.Recognizer(model))
        assert heard.digits == "29340", (model.name, heard)
        assert 0 < heard.confidence <= 100
    assert asr.recognize_digits(b"\0\0" * 16000).digits == ""  # silence: nothing
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    assert not asr.speech_ended(tone + b"\0\0" * 4000)  # 0.5 s quiet: still listening
    assert asr.speech_ended(tone + b"\0\0" * 8000)  # 1 s quiet: the caller is done
    assert not asr.speech_ended(b"\0\0" * 16000)  # never spoke


# --- the CRM over HTTP and a call through the demo line ---------------------------------------


@pytest.fixture(scope="module")
def line(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A node with the demo tenant and flows, a trunk on loopback, and tokens."""
    name = f"ccorch_u_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_dbname(pg_admin_url, name)
    cwd = tmp_path_factory.mktemp("utility")
    sip_port = free_udp_port()
    # one SIPp per call at once, each on its own port: a trunk each
    trunk_ports = [free_udp_port() for _ in range(3)]
    (cwd / "trunks.toml").write_text(
        "".join(
            f'[[trunk]]\nname = "carrier{i}"\nhost = "127.0.0.1"\nport = {port}\n'
            'match = "host+port"\noptions_interval = 0\n'
            for i, port in enumerate(trunk_ports)
        )
    )
    rtp = 20000 + (sip_port % 200) * 100
    (cwd / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\nt1_ms = 50\ntrunks_file = "{cwd / "trunks.toml"}"\n'
        f"[media]\nport_min = {rtp}\nport_max = {rtp + 99}\n"
        f'[ivr]\nflows_dir = "{demo_flows_copy(cwd / "flows")}"\n'
        f'tts_cache_dir = "{cwd / "tts"}"\n'
    )
    node = start_node(cwd, {"DATABASE_URL": url, "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12})
    try:
        tokens = {}
        for login, password in (("admin", "x" * 12), ("op7003", "agent7003")):
            status, body = call(
                node, "POST", "/api/auth/login", {"login": login, "password": password}
            )
            assert status == 200, body
            tokens[login] = body["token"]
        yield {"node": node, "url": url, "cwd": cwd, "sip_port": sip_port,
               "trunk_ports": trunk_ports, "tokens": tokens}  # fmt: skip
    finally:
        node.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _customer(url: str, name: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM customers WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def test_readings_outages_and_requests_over_the_api(line: dict[str, Any]) -> None:
    node: Node = line["node"]
    op, admin = line["tokens"]["op7003"], line["tokens"]["admin"]
    petro = _customer(line["url"], "Petro Koval")

    status, card = call(node, "GET", f"/api/customers/{petro}/utility", token=op)
    assert status == 200, card
    (point,) = card["service_points"]
    assert point["contract_no"] == "500102" and point["tariff"]["zones"] == 2
    assert [(r["day_kwh"], r["night_kwh"]) for r in point["readings"]] == [
        (4200, 1800),
        (4100, 1750),
    ]
    assert [o["kind"] for o in point["outages"]] == ["planned"]  # the demo's, in two days

    maria = _customer(line["url"], "Maria Sydorenko")
    status, card = call(node, "GET", f"/api/customers/{maria}/utility", token=op)
    assert status == 200, card
    (request,) = card["connection_requests"]
    assert (request["number"], request["stage"], request["next_stage"]) == (
        "100234", "works", "inspection",
    )  # fmt: skip
    assert [s["stage"] for s in request["stages"]] == [
        "registered", "documents_sent", "contract_signed", "works",
    ]  # fmt: skip
    path = "/api/accounts/500102/readings"
    status, body = call(node, "POST", path, {"day": 4300}, op)
    assert status == 422 and "give night too" in body["fields"]["night"], body
    status, body = call(node, "POST", path, {"day": 4199, "night": 1900}, op)
    assert status == 422 and "lower than the last reading (4200/1800" in body["fields"]["day"]
    status, body = call(node, "POST", path, {"day": 9000, "night": 1900}, op)
    assert status == 422 and "is more than the tariff's plausible" in body["fields"]["day"]
    status, body = call(
        node, "POST", path, {"day": 9000, "night": 1900, "accept_implausible": True}, op
    )
    assert status == 201 and body["used"] == 4900, body
    status, body = call(node, "GET", path + "?limit=1", token=op)
    assert status == 200 and body["items"][0]["channel"] == "operator", body
    assert body["items"][0]["entered_by"] == "Oksana Shevchenko"
    status, body = call(node, "GET", "/api/accounts/999999/readings", token=op)
    assert status == 404

    # outages: only supervisors and admins keep them; a CSV is whole or nothing
    outage = {"kind": "emergency", "locality": "Kyiv", "street": "Lisova St", "house_from": 1,
              "house_to": 9, "starts_at": "2026-01-01T10:00:00+02:00",
              "expected_end": "2099-01-01T10:00:00+02:00"}  # fmt: skip
    status, _ = call(node, "POST", "/api/outages", outage, op)
    assert status == 403
    status, created = call(node, "POST", "/api/outages", outage | {"ref": "api-1"}, admin)
    assert status == 201, created
    status, body = call(node, "POST", "/api/outages", outage | {"starts_at": "2026-01-01T10:00"},
                        admin)  # fmt: skip
    assert status == 422 and "give the offset" in body["fields"]["(body)"], body
    status, card = call(node, "GET", f"/api/customers/{petro}/utility", token=op)
    assert [o["kind"] for o in card["service_points"][0]["outages"]] == ["emergency", "planned"]
    csv_text = (
        CSV_HEAD
        + "api-1,emergency,Kyiv,Lisova St,1,9,2026-01-01T10:00+02:00,2099-01-02T10:00+02:00,x\n"
        + "op-9,planned,Kyiv,Lisova St,,,2099-01-01T10:00+02:00,nonsense,\n"
    )
    status, body = call(node, "POST", "/api/outages/import", {"csv": csv_text}, admin)
    assert status == 422 and body["fields"]["csv"].startswith("line 3: expected_end"), body
    status, listed = call(node, "GET", "/api/outages", token=op)
    assert {o["ref"]: o["expected_end"][:10] for o in listed["items"]}["api-1"] == "2099-01-01"
    assert "op-9" not in {o["ref"] for o in listed["items"]}  # nothing of the refused file
    good = csv_text.replace("nonsense", "2099-01-01T18:00+02:00")
    status, body = call(node, "POST", "/api/outages/import", {"csv": good}, admin)
    assert (status, body) == (200, {"created": 1, "updated": 1})
    status, changed = call(
        node, "PATCH", f"/api/outages/{created['id']}",
        {"ended_at": "2026-01-01T12:00:00+02:00"}, admin,
    )  # fmt: skip
    assert status == 200 and changed["ended_at"].startswith("2026-01-01"), changed
    status, card = call(node, "GET", f"/api/customers/{petro}/utility", token=op)
    assert [o["kind"] for o in card["service_points"][0]["outages"]] == ["planned"]

    # connection requests: created, moved stage by stage, never skipping
    status, req = call(node, "POST", "/api/connection-requests",
                       {"number": "200777", "customer_id": petro, "address": "Kyiv, Lisova St 5",
                        "power_kw": 15}, op)  # fmt: skip
    assert status == 201 and req["stage"] == "registered", req
    stage = "/api/connection-requests/200777/stage"
    status, body = call(node, "POST", stage, {"stage": "works"}, op)
    assert status == 409 and "next stage is documents_sent" in body["message"], body
    status, body = call(node, "POST", stage, {"stage": "documents_sent", "note": "mailed"}, op)
    assert status == 200 and [s["stage"] for s in body["stages"]] == [
        "registered", "documents_sent",
    ]  # fmt: skip
    status, body = call(node, "POST", "/api/connection-requests",
                        {"number": "200777", "customer_id": petro, "address": "x",
                         "power_kw": 1}, op)  # fmt: skip
    assert status == 409


def _rendered(text: str, lang: str, cwd: Path) -> bytes:
    """A prompt as the caller hears it after PCMU, whole 20 ms frames."""
    with wave.open(str(tts.render(text, lang, cwd / "tts"))) as w:
        pcm = w.readframes(w.getnframes())
    want = g711_decode(g711_encode(pcm, "PCMU"), "PCMU")
    return want[: len(want) - len(want) % 320]


def _trunk_call(
    line: dict[str, Any], dnis: str, ani: str, trunk: int = 0
) -> tuple[Phone, subprocess.Popen[bytes]]:
    phone = Phone()
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(scenario("trunk_ivr_call.xml")), "-s", dnis,
         "-key", "rtp_port", str(phone.port), "-key", "ani", ani,
         "-p", str(line["trunk_ports"][trunk]), "-m", "1", "-nostdin", "-timeout", "90s",
         f"127.0.0.1:{line['sip_port']}"],
        cwd=line["cwd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while phone.peer is None and time.monotonic() < deadline and sipp.poll() is None:
        phone.listen(0.25)  # until the greeting starts
    phone.listen(0.5)
    return phone, sipp


def _hear(phone: Phone, want: bytes, sipp: subprocess.Popen[bytes], seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if want in g711_decode(bytes(phone.heard), "PCMU"):
            return
        if sipp.poll() is not None:
            break
        phone.listen(0.5)
    raise AssertionError("the prompt was not heard")


def _ended(phone: Phone, sipp: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while sipp.poll() is None and time.monotonic() < deadline:
        phone.listen(0.5)
    assert sipp.wait(10) == 0  # the flow hung up
    phone.sock.close()


@pytest.mark.slow
def test_callers_key_in_readings_and_hear_outages_at_their_address(line: dict[str, Any]) -> None:
    """Three trunk calls at once through the English demo line:

    - Maria (known by her number) keys 12000, lower than her last 12345: the flow says so
      with that reading's date; she enters 12500, confirms, and it is in the CRM (channel
      ivr, her call's id); the refused one is not;
    - Maria again, asking about outages: she hears when power returns at her address;
    - Petro, whose street has only a planned outage in two days, hears its times and never
      the emergency's end."""
    url, cwd = line["url"], line["cwd"]
    flow = _demo_flow("en")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT r.day_kwh, r.taken_at FROM meter_readings r JOIN meters m ON m.id = r.meter_id
               WHERE m.serial = 'MT-880011' ORDER BY r.taken_at DESC LIMIT 1"""
        ).fetchone()
        outages = dict(
            (ref, (a.astimezone(KYIV), b.astimezone(KYIV)))
            for ref, a, b in conn.execute(
                "SELECT ref, starts_at, expected_end FROM outages WHERE ref LIKE 'demo-%'"
            ).fetchall()
        )
    assert row is not None and int(row[0]) == 12345
    refusal = Session(flow, {"previous_day": 12345,
                             "previous_date": row[1].astimezone(KYIV).date().isoformat()})  # fmt: skip
    refusal_said = refusal.fill(flow.nodes["lower"].spec["prompt"])
    back_at = outages["demo-em-1"][1]
    emergency = Session(flow, {"outage_end_date": back_at.date().isoformat(),
                               "outage_end_time": f"{back_at:%H:%M}"})  # fmt: skip
    emergency_said = emergency.fill(flow.nodes["emergency_now"].spec["prompt"])
    start, end = outages["demo-pl-1"]
    planned = Session(flow, {
        "outage_start_date": start.date().isoformat(), "outage_start_time": f"{start:%H:%M}",
        "outage_end_date": end.date().isoformat(), "outage_end_time": f"{end:%H:%M}",
    })  # fmt: skip
    planned_said = planned.fill(flow.nodes["outage_soon"].spec["prompt"])
    # rendered before the calls, so the node finds them in the cache
    refusal_heard = _rendered(refusal_said, "en", cwd)
    stored_heard = _rendered("Thank you, your reading is accepted. Goodbye.", "en", cwd)
    emergency_heard = _rendered(emergency_said, "en", cwd)
    planned_heard = _rendered(planned_said, "en", cwd)

    def reading() -> None:
        phone, sipp = _trunk_call(line, "111", "0442223344")
        try:
            phone.press("1")
            phone.listen(1.0)
            phone.press("12000#")
            phone.listen(1.0)
            phone.press("1")  # "You entered 12000": confirmed
            _hear(phone, refusal_heard, sipp)
            phone.press("1")  # enter it again
            phone.listen(1.0)
            phone.press("12500#")
            phone.listen(1.0)
            phone.press("1")
            _hear(phone, stored_heard, sipp)
            _ended(phone, sipp)
        finally:
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait(5)

    def outage(ani: str, want: bytes, never: bytes | None, trunk: int) -> None:
        phone, sipp = _trunk_call(line, "111", ani, trunk)
        try:
            phone.press("2")
            _hear(phone, want, sipp)
            if never is not None:
                assert never not in g711_decode(bytes(phone.heard), "PCMU")
        finally:
            sipp.kill()  # the caller hangs up once told
            sipp.wait(5)
            phone.sock.close()

    with ThreadPoolExecutor(3) as pool:
        calls = [
            pool.submit(reading),
            pool.submit(outage, "0442223344", emergency_heard, None, 1),
            pool.submit(outage, "0673334455", planned_heard, emergency_heard, 2),
        ]
        for c in calls:
            c.result()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT r.day_kwh, r.night_kwh, r.channel, r.sip_call_id IS NOT NULL
               FROM meter_readings r JOIN meters m ON m.id = r.meter_id
               WHERE m.serial = 'MT-880011' ORDER BY r.taken_at DESC, r.id DESC"""
        ).fetchall()
    assert rows[0] == (12500, None, "ivr", True)
    assert 12000 not in [r[0] for r in rows]  # the refused one was not kept


@pytest.mark.slow
def test_the_readme_reading_demo_stores_what_it_keys(line: dict[str, Any]) -> None:
    """`ccorch demo-call --dnis 111 --ani 0442223344 --keys 1,<reading>#,1`, the README's
    command, keys a reading the flow reads back and stores (its exit code alone would not
    tell: a flow that timed out also hangs up)."""
    with psycopg.connect(line["url"]) as conn:
        row = conn.execute(
            """SELECT max(r.day_kwh) FROM meter_readings r JOIN meters m ON m.id = r.meter_id
               WHERE m.serial = 'MT-880011'"""
        ).fetchone()
    assert row is not None
    reading = int(row[0]) + 10  # (within a day of the last: at most 30 kWh is plausible)
    r = subprocess.run(
        [str(Path(sys.executable).parent / "ccorch"), "demo-call", "--dnis", "111",
         "--ani", "0442223344", "--keys", f"1,{reading}#,1"],
        cwd=line["cwd"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout, r.stderr)
    newest = _newest_reading(line["url"])
    assert newest == (reading, "ivr"), r.stdout


def _newest_reading(url: str) -> tuple[int, str] | None:
    """Maria's meter's last reading and its channel."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT r.day_kwh, r.channel FROM meter_readings r JOIN meters m ON m.id = r.meter_id
               WHERE m.serial = 'MT-880011' ORDER BY r.taken_at DESC, r.id DESC LIMIT 1"""
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _flite(text: str, voice: str = "awb") -> bytes:
    """``text`` spoken by a flite voice, as 8 kHz PCM16."""
    out = subprocess.run(
        ["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout"], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    return bytes(soxr.resample(x, rate, 8000).astype("<i2").tobytes())


def _say(phone: Phone, pcm: bytes, then_quiet: float = 2.0) -> None:
    """Send ``pcm`` as the caller's RTP (PCMU, paced 20 ms a packet), then silence."""
    pcm = pcm + b"\0\0" * int(8000 * then_quiet)
    start = time.monotonic()
    for i in range(len(pcm) // 320):
        phone.seq += 1
        phone.ts += 160
        phone.send(0, g711_encode(pcm[i * 320 : (i + 1) * 320], "PCMU"))
        phone.listen(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))


@pytest.mark.slow
def test_a_caller_says_the_reading_and_it_is_stored_as_said(line: dict[str, Any]) -> None:
    """Maria says "one two six three four" (a flite voice, as RTP from her phone) when the
    flow asks for the reading: it reads back 12634, she presses 1, and the reading is in the
    CRM with channel voice."""
    node, cwd = line["node"], line["cwd"]
    op = line["tokens"]["op7003"]
    # an operator's reading just below, so 12634 is plausible whatever ran before
    status, body = call(node, "POST", "/api/accounts/500101/readings",
                        {"day": 12620, "accept_implausible": True}, op)  # fmt: skip
    assert status == 201, body
    flow = _demo_flow("en")
    asked = _rendered(flow.nodes["ask_single"].spec["prompt"], "en", cwd)
    told = Session(flow, {"reading_day": "12634"})
    read_back = _rendered(told.fill(flow.nodes["confirm_single"].spec["prompt"]), "en", cwd)
    stored = _rendered("Thank you, your reading is accepted. Goodbye.", "en", cwd)
    speech = _flite("one two six three four")
    phone, sipp = _trunk_call(line, "111", "0442223344")
    try:
        phone.press("1")
        _hear(phone, asked, sipp)  # the whole prompt: now it listens
        _say(phone, speech)
        _hear(phone, read_back, sipp)
        phone.press("1")
        _hear(phone, stored, sipp)
        _ended(phone, sipp)
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(5)
    newest = _newest_reading(line["url"])
    assert newest == (12634, "voice")


def test_the_flow_editor_walks_the_utility_line_on_the_real_crm(line: dict[str, Any]) -> None:
    """The dry run (the flow editor's "Try it") of the Russian line with the demo CRM:
    request 100234's stage is said in Russian with its date; Petro's day/night reading lower
    than his last is refused with both zones said, and nothing is written."""
    from psycopg_pool import AsyncConnectionPool

    from ccorch.ivr.dry_run import walk

    flow = _demo_flow("ru")

    async def go() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with AsyncConnectionPool(line["url"], min_size=1, max_size=2, open=False) as pool:
            clock = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
            request = await walk(flow, ani="0500000000", dnis="110", keys="3100234#",
                                 pool=pool, clock=clock)  # fmt: skip
            reading = await walk(flow, ani="0673334455", dnis="110", keys="1100#100#1",
                                 pool=pool, clock=clock)  # fmt: skip
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM meter_readings")
                row = await cur.fetchone()
        assert row is not None
        return request, reading, int(row[0])

    with psycopg.connect(line["url"]) as conn:
        row = conn.execute("SELECT count(*) FROM meter_readings").fetchone()
        last = conn.execute(
            """SELECT r.night_kwh FROM meter_readings r JOIN meters m ON m.id = r.meter_id
               WHERE m.serial = 'MT-2Z-4417' ORDER BY r.taken_at DESC, r.id DESC LIMIT 1"""
        ).fetchone()
    assert row is not None and last is not None  # (the API test before may have added one)
    request, reading, after = asyncio.run(go())
    said = " ".join(s["text"] for s in request["steps"] if s["kind"] == "say" and "text" in s)
    assert "Заявка номер 1 0 0 2 3 4: сетевая организация выполняет работы" in said, said
    assert request["path"][-1] == "request_status"
    said = " ".join(s["text"] for s in reading["steps"] if s["kind"] == "say" and "text" in s)
    assert "Эти показания меньше предыдущих" in said and f"ночная зона {last[0]}" in said, said
    assert {"kind": "reading", "node": "submit", "outcome": "rejected", "error": "lower"} in (
        reading["steps"]
    )
    assert after == int(row[0])  # a dry run writes nothing
