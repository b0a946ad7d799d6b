"""IVR flows: load-time checks with file and line, hot reload with versions, the sans-IO
interpreter, TTS words for money; and the demo's self-service balance end to end."""

from __future__ import annotations

import os
import struct
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from ccorch._core import g711_decode, g711_encode
from ccorch.demo import DemoPhone
from ccorch.ivr import tts
from ccorch.ivr.flow import FlowError, load_flow, parse_flow
from ccorch.ivr.interpreter import Authorize, Hangup, Play, Session, StopPrompts, Transfer
from ccorch.ivr.schema import NODE_TYPES
from ccorch.ivr.store import FlowStore
from tests.conftest import _with_dbname, start_node
from tests.sipp import DEMO_FLOWS, demo_flows_copy, free_udp_port, metrics, scenario

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
flow: t
dnis: ["555"]
language: en
start: menu
nodes:
  menu:
    type: menu
    prompt: "Press 1 or 2."
    options: {"1": ask, "2": vip_check}
    timeout: 3
    retries: 2
    on_fail: bye
  ask:
    type: collect
    prompt: "Number, then hash."
    var: num
    min: 2
    max: 4
    next: check
    on_fail: bye
  check:
    type: authorize
    contract: num
    pin: num
    ok: told
    fail: bye
  told:
    type: say
    text: "You have {balance:money}."
    next: bye
  vip_check:
    type: branch
    cases:
      - {if: "segment == 'vip'", goto: agent}
    else: bye
  agent:
    type: transfer
    to: "7001"
    on_fail: bye
  bye:
    type: hangup
"""


def test_demo_flows_load_in_three_languages(tmp_path: Path) -> None:
    store = FlowStore(demo_flows_copy(tmp_path / "flows"))
    assert sorted(store.scan()) == [
        "abc-internet-en", "abc-internet-ru", "abc-internet-zh", "city-power-en",
        "city-power-ru", "city-power-zh", "outage-notice-ru",
    ]  # fmt: skip
    assert store.errors == {}
    dnis = ("100", "101", "102", "110", "111", "112")
    assert {d: store.for_dnis(d).language for d in dnis} == {  # type: ignore[union-attr]
        "100": "ru", "101": "en", "102": "zh", "110": "ru", "111": "en", "112": "zh",
    }  # fmt: skip
    # the utility's three languages are the same flow: the same nodes, types and exits
    shapes = []
    for lang in ("ru", "en", "zh"):
        flow = store.by_name[f"city-power-{lang}"]
        shapes.append(
            {n: (node.type, {k: v for k, v in node.spec.items() if k in NODE_TYPES[node.type].exits
                             or k in ("vars", "day", "night", "contract", "var", "key")})
             for n, node in flow.nodes.items()}
        )  # fmt: skip
    # but English callers may say a one-zone reading first: "ask_single" listens, and
    # "ask_single_keys" is the others' "ask_single"
    ru, en, zh = shapes
    assert en.pop("ask_single") == (
        "recognize", {"var": "reading_day", "next": "confirm_single", "fallback": "ask_single_keys"}
    )  # fmt: skip
    en = {("ask_single" if n == "ask_single_keys" else n): shape for n, shape in en.items()}
    en["confirm_single"][1]["options"]["2"] = "ask_single"
    assert ru == en == zh


@pytest.mark.parametrize(
    ("edit", "marker", "reason"),
    [
        (
            ('    type: say\n    text: "You', '    type: speak\n    text: "You'),
            "type: speak",
            "unknown type 'speak'",
        ),
        (
            ("next: bye\n  vip_check", "next: nowhere\n  vip_check"),
            "next: nowhere",
            "target 'nowhere' is not a node",
        ),
        (
            ('options: {"1": ask, "2": vip_check}', 'options: {"1": ask}'),
            "  vip_check:",
            "'vip_check' is unreachable",
        ),
        (
            ('    prompt: "Press 1 or 2."', "    prompt_file: missing.wav"),
            "missing.wav",
            "prompt file 'missing.wav' does not exist",
        ),
        (("    timeout: 3\n", "    timeout: [3\n"), "timeout: [3", "YAML"),
        (("    var: num\n", ""), "  ask:", "'var' is required"),
        (
            ("if: \"segment == 'vip'\"", "if: \"__import__('os')\""),
            "__import__",
            "only comparisons",
        ),
        (
            ('options: {"1": ask, "2": vip_check}', 'options: {"1": ask, "22": vip_check}'),
            '"22"',
            "not a phone key",
        ),
        (  # a control character (found by the API fuzz test: it was a 500)
            ('    text: "You have', '    text: "\x1bYou have'),
            "You have",
            "special characters are not allowed",
        ),
    ],
)
def test_a_broken_flow_is_refused_with_file_line_and_reason(
    tmp_path: Path, edit: tuple[str, str], marker: str, reason: str
) -> None:
    assert edit[0] in GOOD
    text = GOOD.replace(edit[0], edit[1], 1)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(FlowError) as e:
        load_flow(path)
    slack = 3 if reason == "YAML" else 0  # YAML notices a syntax error a little later
    assert any(
        f == str(path) and line <= n <= line + slack and reason in r for f, n, r in e.value.problems
    ), (line, e.value.problems)


def test_hot_reload_keeps_the_running_version_when_the_new_one_is_broken(tmp_path: Path) -> None:
    store = FlowStore(tmp_path, check_voices=False)
    path = tmp_path / "t.yaml"
    path.write_text(GOOD)
    assert store.scan() == ["t"]
    v1 = store.for_dnis("555")
    assert v1 is not None and v1.version == 1
    os.utime(path, (time.time() + 5, time.time() + 5))
    path.write_text(GOOD.replace("type: hangup", "type: hang_up"))
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert store.scan() == []
    assert store.for_dnis("555") is v1  # the running version stays
    assert "unknown type 'hang_up'" in store.errors[str(path)][0][2]
    path.write_text(GOOD.replace("Press 1 or 2.", "Press one or two."))
    os.utime(path, (time.time() + 20, time.time() + 20))
    assert store.scan() == ["t"]
    v2 = store.for_dnis("555")
    assert (
        v2 is not None
        and v2.version == 2
        and v2.nodes["menu"].spec["prompt"] == "Press one or two."
    )
    assert store.rollback("t", 1).version == 1 and store.for_dnis("555") is v1
    v3 = store.upload(GOOD.replace("Press 1 or 2.", "Uploaded."), "t.yaml")
    assert v3.version == 3 and store.for_dnis("555") is v3
    with pytest.raises(FlowError):
        store.upload("flow: t\nnodes: 3\n", "t.yaml")
    assert store.for_dnis("555") is v3
    # The history is kept on disk: a restarted node knows the versions and can roll back.
    assert [n for n, _, _ in store.history("t")] == [1, 2, 3]
    again = FlowStore(tmp_path, check_voices=False)
    assert again.scan() == ["t"]
    assert again.for_dnis("555").version == 3  # type: ignore[union-attr]
    back = again.rollback("t", 2)
    assert back.version == 2 and back.nodes["menu"].spec["prompt"] == "Press one or two."
    assert path.read_text() == GOOD.replace("Press 1 or 2.", "Press one or two.")
    assert again.scan() == []  # the rewritten file is the served version already
    with pytest.raises(KeyError):
        again.rollback("t", 9)


def _texts(actions: list[object]) -> list[str]:
    return [p.text or "" for a in actions if isinstance(a, Play) for p in a.prompts]


def test_interpreter_menu_retries_collect_and_authorize() -> None:
    flow = parse_flow(GOOD, "t.yaml")
    s = Session(flow, {"segment": "regular"})
    out = s.start(0.0)
    assert _texts(out) == ["Press 1 or 2."]
    assert s.on_digit(0.5, "9")[0] == StopPrompts()  # a wrong key during the prompt
    assert s.phase == "prompting" and s.tries == 1
    s.on_prompts_done(5.0)
    assert s.next_timeout == 8.0
    out = s.on_timeout(8.0)  # silence: the second and last try ends on on_fail
    assert isinstance(out[-1], Hangup) and s.node is not None and s.node.name == "bye"

    s = Session(flow, {})
    s.start(0.0)
    out = s.on_digit(0.1, "1")
    assert _texts(out) == ["Number, then hash."]
    s.on_digit(0.2, "4")
    out = s.on_digit(0.3, "#")  # one digit, min 2: asked again
    assert _texts(out) == ["That is not a valid choice.", "Number, then hash."]
    for d in "4242":  # max 4: taken without the terminator
        out = s.on_digit(1.0, d)
    assert out[-1] == Authorize("4242", "4242")
    out = s.on_authorized(2.0, "ok", {"balance": "50.00", "currency": "UAH"})
    assert _texts(out) == ["You have 50 hryvnias."]
    assert isinstance(s.on_prompts_done(3.0)[-1], Hangup)


def test_interpreter_branch_on_caller_attributes() -> None:
    flow = parse_flow(GOOD, "t.yaml")
    vip = Session(flow, {"segment": "vip"})
    vip.start(0.0)
    assert vip.on_digit(0.1, "2")[-1] == Transfer("7001")
    assert isinstance(vip.on_transfer_failed(1.0)[-1], Hangup)
    plain = Session(flow, {"segment": "regular"})
    plain.start(0.0)
    assert isinstance(plain.on_digit(0.1, "2")[-1], Hangup)


def test_demo_flow_queues_vips_ahead_and_prefers_their_operators() -> None:
    from ccorch.ivr.interpreter import Enqueue

    for lang in ("ru", "en", "zh"):
        flow = load_flow(DEMO_FLOWS / f"abc-internet-{lang}.yaml")
        got = {}
        for segment in ("VIP", "standard", ""):
            s = Session(flow, {"segment": segment} if segment else {})
            s.start(0.0)
            queued = [a for a in s.on_digit(0.1, "2") if isinstance(a, Enqueue)]
            assert len(queued) == 1, (lang, segment)
            got[segment] = (queued[0].queue, queued[0].priority, queued[0].prefer_seconds)
        assert got == {
            "VIP": ("general", 10, 20.0),
            "standard": ("general", 0, 20.0),
            "": ("general", 0, 20.0),
        }, lang
    # Bad values are refused at load, with their line.
    queue_node = """  bye:
    type: queue
    queue: tech
    priority: {p}
    prefer_seconds: {s}
"""
    for p, sec, reason in (
        ('"{vip"', "20", "priority is 0 to 100, or a variable"),
        ("101", "20", "priority is 0 to 100"),
        ('"{priority}"', "-1", "prefer_seconds is 0 to 600"),
    ):
        text = GOOD.replace("  bye:\n    type: hangup\n", queue_node.format(p=p, s=sec))
        with pytest.raises(FlowError) as e:
            parse_flow(text, "t.yaml")
        assert any(reason in why for _, _, why in e.value.problems), e.value.problems
    ok = GOOD.replace("  bye:\n    type: hangup\n", queue_node.format(p='"{priority}"', s="20"))
    assert parse_flow(ok, "t.yaml").nodes["bye"].spec["prefer_seconds"] == 20


def test_interpreter_voicemail_callback_and_queue_options() -> None:
    from ccorch.ivr.interpreter import (
        Enqueue,
        LeaveQueue,
        RecordVoicemail,
        RequestCallback,
        StopVoicemail,
    )

    text = """\
flow: w
dnis: ["9"]
language: en
start: q
nodes:
  q:
    type: queue
    queue: tech
    busy_text: "Busy."
    options_text: "Press 1 for a message, 2 for a callback."
    options: {"1": vm, "2": cb}
    options_after: 120
    on_fail: bye
  vm:
    type: voicemail
    prompt: "After the tone."
    max_seconds: 30
    next: bye
  cb:
    type: callback
    number: phone
    next: bye
  bye:
    type: hangup
"""
    flow = parse_flow(text, "w.yaml")
    s = Session(flow, {"ani": "380671234567", "phone": "380501112233"})
    (q,) = [a for a in s.start(0.0) if isinstance(a, Enqueue)]
    assert (q.options_text, q.options_after) == ("Press 1 for a message, 2 for a callback.", 120)
    assert s.on_digit(1.0, "5") == []  # not an option: the caller keeps waiting
    assert s.on_digit(1.5, "1") == [LeaveQueue()]
    assert s.on_digit(1.6, "2") == []  # one choice at a time
    # The queue lets go (withdrawn): the chosen node follows; its prompt, then the beep.
    assert _texts(s.on_queue_left(2.0, "withdrawn")) == ["After the tone."]
    assert s.on_prompts_done(4.0) == [RecordVoicemail(30.0)]
    assert s.next_timeout == 34.0
    assert s.on_digit(10.0, "1") == []  # only # ends the message
    assert s.on_digit(12.0, "#") == [StopVoicemail()]
    assert isinstance(s.on_request_done(12.5, True)[-1], Hangup)
    # The time limit ends a message too.
    s = Session(flow, {})
    s.start(0.0)
    s.on_digit(1.0, "1")
    s.on_queue_left(2.0, "withdrawn")
    s.on_prompts_done(3.0)
    assert s.on_timeout(33.0) == [StopVoicemail()]
    # A callback for the number the flow names; a timed-out queue goes to on_fail.
    s = Session(flow, {"phone": "380501112233"})
    s.start(0.0)
    s.on_digit(1.0, "2")
    assert s.on_queue_left(2.0, "withdrawn")[-1] == RequestCallback("380501112233")
    s = Session(flow, {})
    s.start(0.0)
    assert isinstance(s.on_queue_left(60.0, "timed_out")[-1], Hangup)
    # Checked at load: option keys, targets, limits.
    for bad, reason in (
        (text.replace('"1": vm', '"x": vm'), "option 'x' is not a phone key"),
        (text.replace('"2": cb', '"2": nowhere'), "nowhere"),
        (text.replace("max_seconds: 30", "max_seconds: 3"), "max_seconds is 5 to 600"),
    ):
        with pytest.raises(FlowError) as e:
            parse_flow(bad, "w.yaml")
        assert any(reason in why for _, _, why in e.value.problems), e.value.problems


def test_dates_and_times_are_spoken_the_languages_way() -> None:
    import datetime as dt

    assert tts.date("2026-11-23", "ru") == "двадцать третье ноября две тысячи двадцать шестого года"
    assert tts.date(dt.date(2000, 3, 2), "ru") == "второе марта двухтысячного года"
    assert tts.date("2026-01-01", "en") == "January 1st, 2026"
    assert tts.date("2026-12-22", "en") == "December 22nd, 2026"
    assert tts.date("2026-11-13", "en") == "November 13th, 2026"
    assert tts.date("2026-11-23T14:05:00+02:00", "zh") == "2026年11月23日"
    assert tts.time("14:05", "ru") == "14 часов 5 минут"
    assert tts.time("21:22", "ru") == "21 час 20 две минуты"  # espeak: двадцать две
    assert tts.time("09:00", "ru") == "9 часов ровно"
    assert tts.time("00:15", "en") == "12:15 AM" and tts.time("12:00", "en") == "12 PM"
    assert tts.time("14:05", "zh") == "14点05分" and tts.time("08:00", "zh") == "8点整"
    assert tts.date("soon", "en") == "soon"  # not a date: said as it is
    flow = parse_flow(
        GOOD.replace('"You have {balance:money}."', '"Due {due:date} at {at:time}."'), "t.yaml"
    )
    s = Session(flow, {"due": "2026-12-01", "at": "18:30"})
    assert s.fill(flow.nodes["told"].spec["text"]) == "Due December 1st, 2026 at 6:30 PM."


def test_money_is_spoken_in_the_right_form() -> None:
    assert tts.money("50.00", "UAH", "ru") == "50 гривен"
    assert tts.money("21", "UAH", "ru") == "20 одна гривна"
    assert tts.money("3.02", "UAH", "ru") == "3 гривны две копейки"
    assert tts.money("11", "RUB", "ru") == "11 рублей"
    assert tts.money("1", "UAH", "en") == "1 hryvnia"
    assert tts.money("2.50", "UAH", "en") == "2 hryvnias and 50 kopecks"
    assert tts.money("50", "UAH", "zh") == "50格里夫纳"
    assert tts.money("-4", "UAH", "en") == "minus 4 hryvnias"


# --- the demo end to end ----------------------------------------------------------------------


class Phone(DemoPhone):
    """The caller's RTP end (``ccorch demo-call``'s), which can also speak: a 440 Hz tone."""

    def talk(self, seconds: float) -> list[bytes]:
        """Speak (PCMU) for ``seconds`` while listening; returns the payloads sent."""
        import math

        assert self.peer is not None, "no audio from the IVR yet"
        sent: list[bytes] = []
        n = int(seconds * 50)
        start = time.monotonic()
        for f in range(n):
            pcm = b"".join(
                struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * (f * 160 + i) / 8000)))
                for i in range(160)
            )
            payload = g711_encode(pcm, "PCMU")
            self.seq += 1
            self.ts += 160
            self.send(0, payload)
            sent.append(payload)
            # paced on the clock, as a phone is: 20 ms after 20 ms, not "20 ms plus our work"
            self.listen(max(0.0, start + (f + 1) * 0.02 - time.monotonic()))
        return sent

    def press(self, keys: str) -> None:
        assert self.peer is not None, "no audio from the IVR yet"
        super().press(keys)


@pytest.mark.slow
def test_balance_self_service_speaks_the_crm_balance(pg_admin_url: str, tmp_path: Path) -> None:
    """Call 100, press 3, enter 1001# and 1234#: the caller hears "На вашем личном счету
    50 гривен." exactly as TTS rendered it (every sample of the prompt, in order), no agent
    is involved, and the flow hangs up."""
    name = f"ccorch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    sip_port, trunk_port = free_udp_port(), free_udp_port()
    (tmp_path / "trunks.toml").write_text(
        f'[[trunk]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {trunk_port}\n'
        'match = "host+port"\noptions_interval = 0\n'
    )
    rtp = 20000 + (sip_port % 200) * 100
    (tmp_path / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\nt1_ms = 50\ntrunks_file = "{tmp_path / "trunks.toml"}"\n'
        f"[media]\nport_min = {rtp}\nport_max = {rtp + 99}\n"
        f'[ivr]\nflows_dir = "{demo_flows_copy(tmp_path / "flows")}"\n'
        f'tts_cache_dir = "{tmp_path / "tts"}"\n'
    )
    node = start_node(
        tmp_path,
        {"DATABASE_URL": _with_dbname(pg_admin_url, name), "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12},
    )
    phone = Phone()
    sipp = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(scenario("trunk_ivr_call.xml")),
            "-s",
            "100",
            "-key",
            "rtp_port",
            str(phone.port),
            "-key",
            "ani",
            "0671234567",
            "-p",
            str(trunk_port),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "60s",
            f"127.0.0.1:{sip_port}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        phone.listen(2.0)  # the greeting starts
        phone.press("3")
        phone.listen(1.0)
        phone.press("1001#")
        phone.listen(1.0)
        phone.press("1234#")
        deadline = time.monotonic() + 30
        while sipp.poll() is None and time.monotonic() < deadline:
            phone.listen(0.5)  # the balance, the goodbye, then the flow's BYE
        assert sipp.wait(10) == 0  # the call ended with the flow's BYE
        expected_path = tts.render("На вашем личном счету 50 гривен.", "ru", tmp_path / "tts")
        import wave

        with wave.open(str(expected_path)) as w:
            expected = w.readframes(w.getnframes())
        # what the caller got back, decoded; the prompt as it sounds after PCMU
        heard = g711_decode(bytes(phone.heard), "PCMU")
        want = g711_decode(g711_encode(expected, "PCMU"), "PCMU")
        want = want[: len(want) - len(want) % 320]  # whole 20 ms frames
        assert len(heard) > len(want)
        assert want in heard, "the balance prompt is not in what the caller heard"
        m = metrics(node.base)
        assert m.get("cc_calls_started_total", 0) == 0  # no agent was rung
        assert m['cc_calls_ended_total{reason="ivr-flow"}'] == 1
    finally:
        phone.sock.close()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait(10)
        node.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_business_hours_node_and_its_load_checks() -> None:
    import datetime as dt

    from ccorch.ivr.flow import is_open

    hours = "mon-fri 09:00-18:00; sat 10:00-14:00"
    kyiv_monday_noon = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # 12:00 in Kyiv (UTC+2)
    assert is_open(hours, "Europe/Kyiv", kyiv_monday_noon)
    assert not is_open(hours, "Europe/Kyiv", kyiv_monday_noon.replace(hour=17))  # 19:00
    assert not is_open(
        hours, "Europe/Kyiv", dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
    )  # Sunday
    text = """\
flow: h
dnis: ["1"]
language: en
start: when
nodes:
  when:
    type: hours
    open: "mon-fri 09:00-18:00"
    open_next: hi
    closed_next: bye
  hi:
    type: hangup
    text: "Hello."
  bye:
    type: hangup
    text: "We are closed."
"""
    flow = parse_flow(text, "h.yaml")
    s = Session(flow, {}, clock=lambda: kyiv_monday_noon)
    assert _texts(s.start(0.0)) == ["Hello."]
    s = Session(flow, {}, clock=lambda: kyiv_monday_noon.replace(hour=20))
    assert _texts(s.start(0.0)) == ["We are closed."]
    with pytest.raises(FlowError) as e:
        parse_flow(text.replace("mon-fri 09:00-18:00", "weekdays 9-6"), "h.yaml")
    assert e.value.problems[0][1] == 8 and "days are mon..sun" in e.value.problems[0][2]
    # The holiday calendar: closed all day, once (a date) or every year (month-day), with a
    # message of its own; a date that is not one is refused at load with its line.
    holidays = (
        text.replace(
            "    closed_next: bye\n",
            '    closed_next: bye\n    holidays: ["2026-11-23", "01-07"]\n    holiday_next: holiday\n',
        )
        + '  holiday:\n    type: hangup\n    text: "Happy holiday."\n'
    )
    flow = parse_flow(holidays, "h.yaml")
    for when, said in (
        (kyiv_monday_noon, "Happy holiday."),  # 2026-11-23 is on the calendar
        (kyiv_monday_noon + dt.timedelta(days=7), "Hello."),  # a Monday like any other
        (dt.datetime(2027, 1, 7, 10, 0, tzinfo=dt.UTC), "Happy holiday."),  # every 7 January
        (dt.datetime(2026, 11, 23, 22, 30, tzinfo=dt.UTC), "We are closed."),  # 24th in Kyiv
    ):
        s = Session(flow, {}, clock=lambda when=when: when)
        assert _texts(s.start(0.0)) == [said], when
    with pytest.raises(FlowError) as e:
        parse_flow(holidays.replace('"01-07"', '"02-30"'), "h.yaml")
    assert e.value.problems[0][1] == 11 and "'02-30' is not a date" in e.value.problems[0][2]


def test_the_estimated_wait_is_said_as_a_caller_should_hear_it() -> None:
    said = {
        sec: tuple(tts.wait(sec, lang) for lang in ("ru", "en", "zh"))
        for sec in (0, 59, 61, 150, 200, 569, 1000, 3700)
    }
    assert said[0] == ("меньше минуты", "less than a minute", "不到一分钟")
    assert said[59] == said[0]  # never "0 minutes"
    assert said[61] == ("около одной минуты", "about 1 minute", "大约1分钟")
    assert said[200] == ("около трёх минут", "about 3 minutes", "大约3分钟")
    assert said[569] == ("около девяти минут", "about 9 minutes", "大约9分钟")
    assert said[1000] == ("около пятнадцати минут", "about 15 minutes", "大约15分钟")  # by fives
    assert said[3700] == ("больше часа", "more than an hour", "超过一个小时")


def test_the_node_types_schema_is_what_the_loader_checks() -> None:
    """The flow editor builds its palette and property panels from the schema the API
    publishes; the loader takes its keys, targets and bounds from the same schema."""
    from ccorch.ivr import flow as flow_module
    from ccorch.ivr.schema import NODE_TYPES, as_json

    for t in NODE_TYPES.values():
        assert flow_module._KEYS[t.name] == (t.required, t.optional)
    published = {t["name"]: t for t in as_json()["types"]}
    assert set(published) == set(NODE_TYPES)
    assert published["collect"]["exits"] == ["next", "on_fail"]
    assert published["branch"]["exits"] == ["cases", "else"]
    # bounds: the schema's words and limits are the loader's
    for edit, reason in (
        ("    timeout: 3\n", "timeout is more than 0 and at most 300 seconds"),
        ("    retries: 2\n", "retries is 0 to 64"),
    ):
        bad = GOOD.replace(edit, edit.split(":")[0] + ": 900\n")
        with pytest.raises(FlowError) as e:
            parse_flow(bad, "t.yaml")
        assert any(reason in why for _, _, why in e.value.problems), e.value.problems
    bad = GOOD.replace("    min: 2\n", "    min: 2\n    terminator: x\n")
    with pytest.raises(FlowError) as e:
        parse_flow(bad, "t.yaml")
    assert any("terminator is one of '#', '*', ''" in why for _, _, why in e.value.problems)
