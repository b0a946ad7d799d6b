"""The media engine over real UDP on loopback: bridging, transcoding, whisper, recording,
prompts, DTMF (SIPp's RFC 4733 pcaps), AMD, media timeout and bad input.

"Phones" here are plain UDP sockets that send RTP on a 20 ms clock and keep what they get.
Jitter-sensitive checks give the jitter buffer room (jitter_min_ms) so a busy CI machine
cannot make them flaky; the exactness checks compare every sample.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccorch._core import MediaEngine, g711_decode, g711_encode, g711_transcode
from ccorch.errors import MediaError
from ccorch.media import (
    AmdResult,
    DtmfDigit,
    MediaEvents,
    MediaTimeout,
    PlaybackFinished,
    RecordingStopped,
    decode_event,
)

REPO = Path(__file__).resolve().parent.parent
SIPP_PCAPS = Path("/usr/share/sip-tester")


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
        )
        + payload
    )


def parse_rtp(data: bytes) -> tuple[int, int, int, int, bytes]:
    _, m_pt, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return m_pt & 0x7F, seq, ts, ssrc, data[12:]


class Phone:
    """A UDP endpoint that streams frames from ``source(i)`` every 20 ms and records packets."""

    def __init__(self, pt: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.pt = pt
        self.received: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.target: tuple[str, int] | None = None
        self.source: Callable[[int], bytes | None] | None = None

    def start(self, target_port: int, source: Callable[[int], bytes | None] | None) -> Phone:
        self.target = ("127.0.0.1", target_port)
        self.source = source
        for fn in (self._recv_loop, self._send_loop):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _recv_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.received.append((time.monotonic(), data))

    def _send_loop(self) -> None:
        assert self.target is not None
        start = time.monotonic()
        i = 0
        ssrc = 0x1000 + self.port
        while not self._stop.is_set():
            payload = self.source(i) if self.source else None
            if payload is not None:
                self.sock.sendto(rtp(self.pt, i, i * 160, ssrc, payload), self.target)
            i += 1
            # Absolute deadlines: no drift however long the loop body took.
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def audio_payloads(self, pt: int | None = None) -> list[bytes]:
        out = []
        for _, d in self.received:
            if len(d) >= 12 and d[1] & 0x7F < 96 and (pt is None or d[1] & 0x7F == pt):
                out.append(parse_rtp(d)[4])
        return out

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(1)
        self.sock.close()


@pytest.fixture
def engine() -> Iterator[MediaEngine]:
    e = MediaEngine(port_min=30000, port_max=39998)
    yield e
    e.shutdown()


@pytest.fixture
def phones() -> Iterator[Callable[..., Phone]]:
    made: list[Phone] = []

    def make(pt: int = 0) -> Phone:
        p = Phone(pt)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def numbered_frames(law: str, base: int) -> Callable[[int], bytes]:
    """Frame i holds codes unique to i (mod 250) that survive decode + encode unchanged."""

    def frame(i: int) -> bytes:
        codes = bytes((base + i + j) % 256 for j in range(160))
        # μ-law 0x7f is the "negative zero" that re-encodes as 0xff.
        return codes.replace(b"\x7f", b"\x7e") if law == "PCMU" else codes

    return frame


def find_run(received: list[bytes], expected: Callable[[int], bytes], n: int) -> int:
    """How many of the frames expected(k), expected(k+1), ... arrived in order, exactly."""
    start = next(
        (i for i, p in enumerate(received) if p in {expected(k) for k in range(256)}), None
    )
    assert start is not None, "none of the sent frames arrived intact"
    first_k = next(k for k in range(256) if expected(k) == received[start])
    run = 0
    for off, p in enumerate(received[start : start + n]):
        assert p == expected(first_k + off), f"frame {off} of the run differs"
        run += 1
    return run


@pytest.mark.parametrize("recorded", [False, True], ids=["pass-through", "decoded"])
def test_bridged_legs_carry_audio_both_ways_sample_exact(
    engine: MediaEngine, phones: Callable[..., Phone], tmp_path: Path, recorded: bool
) -> None:
    a, port_a = engine.allocate_leg(7, jitter_min_ms=120, jitter_max_ms=300)
    b, port_b = engine.allocate_leg(7, jitter_min_ms=120, jitter_max_ms=300)
    room = engine.bridge(a, b)
    if recorded:  # a recording needs the audio, so the room mixes instead of forwarding
        engine.start_recording(tmp_path / "r.wav", a, b)
    caller = numbered_frames("PCMU", 11)
    agent = numbered_frames("PCMU", 101)
    pa = phones().start(port_a, caller)
    pb = phones().start(port_b, agent)
    wait_for(lambda: len(pb.audio_payloads()) > 60 and len(pa.audio_payloads()) > 60)
    assert find_run(pb.audio_payloads()[20:], caller, 40) == 40
    assert find_run(pa.audio_payloads()[20:], agent, 40) == 40
    assert engine.stats()["passthrough_rooms"] == (0 if recorded else 1)
    engine.destroy_room(room)


def test_transcoding_between_pcmu_and_pcma_is_exact(
    engine: MediaEngine, phones: Callable[..., Phone]
) -> None:
    a, port_a = engine.allocate_leg(3, law="PCMU", jitter_min_ms=120, jitter_max_ms=300)
    b, port_b = engine.allocate_leg(3, law="PCMA", jitter_min_ms=120, jitter_max_ms=300)
    engine.bridge(a, b)
    caller = numbered_frames("PCMU", 17)
    agent = numbered_frames("PCMA", 71)
    pa = phones(pt=0).start(port_a, caller)
    pb = phones(pt=8).start(port_b, agent)
    wait_for(lambda: len(pb.audio_payloads(8)) > 60 and len(pa.audio_payloads(0)) > 60)
    # What each side gets is the other's audio re-encoded: decode, then encode in its law.
    assert (
        find_run(pb.audio_payloads(8)[20:], lambda i: g711_transcode(caller(i), "PCMU", "PCMA"), 40)
        == 40
    )
    assert (
        find_run(pa.audio_payloads(0)[20:], lambda i: g711_transcode(agent(i), "PCMA", "PCMU"), 40)
        == 40
    )
    assert engine.stats()["passthrough_rooms"] == 0


def constant(law: str, value: int) -> Callable[[int], bytes]:
    frame = g711_encode(struct.pack("<160h", *[value] * 160), law)
    return lambda i: frame


def decoded_value(payload: bytes) -> set[int]:
    return set(struct.unpack("<160h", g711_decode(payload, "PCMU")))


def test_whisper_reaches_the_agent_only_and_barge_reaches_all_within_a_frame(
    engine: MediaEngine, phones: Callable[..., Phone]
) -> None:
    caller_leg, cp = engine.allocate_leg(11)
    agent_leg, ap = engine.allocate_leg(11)
    sup_leg, sp = engine.allocate_leg(11)
    room = engine.bridge(caller_leg, agent_leg)
    engine.join_room(room, sup_leg, "whisper", whisper_to=agent_leg)
    # Values chosen to be exact in μ-law, so sums are checked sample by sample.
    c_val, a_val, s_val = 1884, -988, 460
    caller = phones().start(cp, constant("PCMU", c_val))
    agent = phones().start(ap, constant("PCMU", a_val))
    sup = phones().start(sp, constant("PCMU", s_val))

    def exact(v: int) -> set[int]:
        return decoded_value(g711_encode(struct.pack("<160h", *[v] * 160), "PCMU"))

    wait_for(lambda: len(caller.audio_payloads()) > 30 and len(agent.audio_payloads()) > 30)
    time.sleep(0.3)
    steady = slice(-10, None)
    # The caller hears the agent only; the agent hears caller + supervisor; the supervisor both.
    assert all(decoded_value(p) == exact(a_val) for p in caller.audio_payloads()[steady])
    assert all(decoded_value(p) == exact(c_val + s_val) for p in agent.audio_payloads()[steady])
    assert all(decoded_value(p) == exact(c_val + a_val) for p in sup.audio_payloads()[steady])
    # Listen-only: nobody hears the supervisor.
    engine.join_room(room, sup_leg, "listen")
    time.sleep(0.2)
    assert all(decoded_value(p) == exact(c_val) for p in agent.audio_payloads()[-5:])
    # Barge: the caller hears the supervisor too, from the next frame or the one after.
    before = len(caller.audio_payloads())
    engine.join_room(room, sup_leg, "full")
    wait_for(
        lambda: any(
            decoded_value(p) == exact(a_val + s_val) for p in caller.audio_payloads()[before:]
        )
    )
    changed_at = next(
        i
        for i, p in enumerate(caller.audio_payloads()[before:])
        if decoded_value(p) == exact(a_val + s_val)
    )
    assert changed_at <= 2, f"mode change took {changed_at} frames"


def test_recording_keeps_caller_left_agent_right_and_pauses(
    engine: MediaEngine, phones: Callable[..., Phone], tmp_path: Path
) -> None:
    a, pa_port = engine.allocate_leg(5, jitter_min_ms=120, jitter_max_ms=300)
    b, pb_port = engine.allocate_leg(5, jitter_min_ms=120, jitter_max_ms=300)
    engine.bridge(a, b)
    events = MediaEventsCollector(engine)
    path = tmp_path / "calls" / "call.wav"
    rec = engine.start_recording(path, a, b)
    caller = numbered_frames("PCMU", 5)
    agent = numbered_frames("PCMU", 133)
    phones().start(pa_port, caller)
    phones().start(pb_port, agent)
    time.sleep(1.5)
    engine.pause_recording(rec, True)
    time.sleep(0.5)
    engine.pause_recording(rec, False)
    time.sleep(0.5)
    engine.stop_recording(rec)
    stopped = events.wait_for(RecordingStopped)
    assert stopped.path == path
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    left, right = samples[0::2], samples[1::2]
    # About 2 s recorded, the paused 0.5 s left out.
    assert 1.6 < len(left) / 8000 < 2.3, len(left) / 8000
    assert stopped.duration_ms == len(left) // 8

    def channel_frames(ch: tuple[int, ...]) -> list[bytes]:
        return [
            g711_encode(struct.pack("<160h", *ch[i : i + 160]), "PCMU")
            for i in range(0, len(ch) - 160, 160)
        ]

    # Each channel is its party's audio, frame-aligned and exact, once the buffer filled.
    for ch, source in ((left, caller), (right, agent)):
        start = next(i for i in range(len(ch)) if ch[i] != 0)
        aligned = ch[start:]
        assert find_run(channel_frames(aligned)[:60], source, 50) == 50


def test_a_packet_too_late_for_playout_still_lands_in_its_place_in_the_recording(
    engine: MediaEngine, tmp_path: Path
) -> None:
    # A 40 ms jitter buffer: frame 20, held back 120 ms, is concealed in the live path.
    leg, port = engine.allocate_leg(9, jitter_min_ms=40, jitter_max_ms=40, media_timeout_ms=0)
    events = MediaEventsCollector(engine)
    path = tmp_path / "late.wav"
    rec = engine.start_recording(path, leg, None)
    frames = numbered_frames("PCMU", 77)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        held: tuple[float, bytes] | None = None
        for i in range(80):
            packet = rtp(0, i, i * 160, 0x4242, frames(i))
            if i == 20:
                held = (start + i * 0.02 + 0.12, packet)
            else:
                sock.sendto(packet, ("127.0.0.1", port))
            if held and time.monotonic() >= held[0]:
                sock.sendto(held[1], ("127.0.0.1", port))
                held = None
            time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
    # Stopped 60 ms after the last packet, well inside the recorder's 200 ms lag: the
    # recording still ends with the last frame (it takes what it had not read yet).
    time.sleep(0.06)
    stats = engine.leg_stats(leg)
    engine.stop_recording(rec)
    events.wait_for(RecordingStopped)
    with wave.open(str(path)) as w:
        data = w.readframes(w.getnframes())
    left = struct.unpack(
        f"<{len(data) // 4}h", bytes(b for k in range(0, len(data), 4) for b in data[k : k + 2])
    )
    recorded = [
        g711_encode(struct.pack("<160h", *left[k : k + 160]), "PCMU")
        for k in range(0, len(left) - 159, 160)
    ]
    assert stats["late"] >= 1, stats  # the live path could not use it
    assert stats["recording_late"] == 0, stats
    # Every one of the 80 frames, in order and exact, frame 20 and the last included.
    first = recorded.index(frames(0))
    assert recorded[first : first + 80] == [frames(i) for i in range(80)]


def test_transferred_call_keeps_one_recording(
    engine: MediaEngine, phones: Callable[..., Phone], tmp_path: Path
) -> None:
    caller, cp = engine.allocate_leg(8, jitter_min_ms=100)
    first, fp = engine.allocate_leg(8, jitter_min_ms=100)
    second, sp = engine.allocate_leg(8, jitter_min_ms=100)
    events = MediaEventsCollector(engine)
    room = engine.bridge(caller, first)
    rec = engine.start_recording(tmp_path / "t.wav", caller, first)
    phones().start(cp, constant("PCMU", 1884))
    phones().start(fp, constant("PCMU", -988))
    phones().start(sp, constant("PCMU", 460))
    time.sleep(1.2)
    # Blind transfer: the first agent leaves, the second joins; the recording follows.
    engine.leave_room(room, first)
    engine.join_room(room, second)
    engine.set_recording_sources(rec, caller, second)
    time.sleep(1.2)
    engine.stop_recording(rec)
    events.wait_for(RecordingStopped)
    with wave.open(str(tmp_path / "t.wav")) as w:
        data = w.readframes(w.getnframes())
    right = struct.unpack(f"<{len(data) // 2}h", data)[1::2]
    values = [v for v in right if v != 0]
    first_value = set(struct.unpack("<160h", g711_decode(constant("PCMU", -988)(0), "PCMU")))
    second_value = set(struct.unpack("<160h", g711_decode(constant("PCMU", 460)(0), "PCMU")))
    # One file: the first agent, then the second, each for about a second.
    assert values[0] in first_value and values[-1] in second_value
    switch = next(i for i, v in enumerate(values) if v in second_value)
    assert all(v in first_value for v in values[:switch])
    assert all(v in second_value for v in values[switch:])
    assert 6000 < switch < 11000 and 6000 < len(values) - switch < 11000


class MediaEventsCollector:
    """Synchronous event reader for tests without a loop."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.seen: list[object] = []

    def wait_for(
        self, kind: type, timeout: float = 5.0, where: Callable[[object], bool] = lambda e: True
    ) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen.extend(decode_event(raw) for raw in self.engine.drain_events())
            for e in self.seen:
                if isinstance(e, kind) and where(e):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no {kind.__name__} event; saw {self.seen}")


def write_prompt(path: Path, samples: list[int]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def test_prompt_plays_exactly_then_barge_in_stops_it(
    engine: MediaEngine, phones: Callable[..., Phone], tmp_path: Path
) -> None:
    leg, port = engine.allocate_leg(1)
    sender, _ = engine.allocate_leg(1)
    # A prompt of μ-law-exact values, so what arrives must be exactly it.
    codes = bytes((i * 7) % 256 for i in range(8000)).replace(b"\x7f", b"\x7e")
    samples = list(struct.unpack("<8000h", g711_decode(codes, "PCMU")))
    prompt = tmp_path / "welcome.wav"
    write_prompt(prompt, samples)
    phone = phones().start(port, None)
    engine.set_remote(leg, "127.0.0.1", phone.port)
    events = MediaEventsCollector(engine)
    play = engine.play_file(leg, prompt)
    done = events.wait_for(PlaybackFinished)
    assert done == PlaybackFinished(leg, play, "done")
    time.sleep(0.1)
    got = b"".join(phone.audio_payloads())
    assert codes in got
    # Music on hold loops until a digit arrives (barge-in), sent by another leg as RFC 4733.
    moh = engine.play_file(leg, prompt, loop_=True, barge_in=True)
    engine.set_remote(sender, "127.0.0.1", port)
    time.sleep(0.3)
    engine.send_dtmf(sender, "5", 120)
    digit = events.wait_for(DtmfDigit)
    assert digit == DtmfDigit(leg, "5", 120, "rfc4733")
    assert events.wait_for(PlaybackFinished, where=lambda e: e.play_id == moh) == PlaybackFinished(
        leg, moh, "barge_in"
    )  # type: ignore[attr-defined]


def test_inband_dtmf_is_detected_when_the_trunk_has_no_telephone_event(engine: MediaEngine) -> None:
    listener, port = engine.allocate_leg(2, dtmf_pt=None, inband_dtmf=True)
    assert listener >= 1
    talker, _ = engine.allocate_leg(2, dtmf_pt=None)
    engine.set_remote(talker, "127.0.0.1", port)
    events = MediaEventsCollector(engine)
    engine.send_dtmf(talker, "7#", 120)
    events.wait_for(DtmfDigit, where=lambda e: e.digit == "#")  # type: ignore[attr-defined]
    digits = [e for e in events.seen if isinstance(e, DtmfDigit)]
    assert [d.digit for d in digits] == ["7", "#"]
    assert all(d.source == "inband" and 100 <= d.duration_ms <= 160 for d in digits), digits


@pytest.mark.skipif(
    not (SIPP_PCAPS / "dtmf_2833_1.pcap").exists(), reason="sip-tester not installed"
)
def test_sipp_rfc4733_pcaps_give_each_key_exactly_once(engine: MediaEngine, tmp_path: Path) -> None:
    leg, port = engine.allocate_leg(1)

    def free_port() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    uas_port, uac_port = free_port(), free_port()
    common = ["-i", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "40s"]
    with subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(REPO / "sip/sipp/uas_answer_to_media.xml"),
            "-p",
            str(uas_port),
            "-key",
            "target_ip",
            "127.0.0.1",
            "-key",
            "target_port",
            str(port),
            *common,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    ) as uas:
        time.sleep(0.3)
        uac = subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{uas_port}",
                "-sf",
                str(REPO / "sip/sipp/uac_rfc4733_keypad.xml"),
                "-p",
                str(uac_port),
                "-mp",
                str(free_port() & ~1),
                *common,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert uac.returncode == 0, uac.stderr[-2000:]
        uas.wait(10)
    time.sleep(0.4)
    digits = [e for e in map(decode_event, engine.drain_events()) if isinstance(e, DtmfDigit)]
    assert "".join(d.digit for d in digits) == "1234567890*#"
    assert {(d.leg, d.duration_ms, d.source) for d in digits} == {(leg, 280, "rfc4733")}


def test_amd_tells_a_greeting_machine_from_a_person(
    engine: MediaEngine, phones: Callable[..., Phone]
) -> None:
    machine_leg, mp = engine.allocate_leg(4)
    person_leg, pp = engine.allocate_leg(4)
    engine.start_amd(machine_leg)
    engine.start_amd(person_leg)
    talk = g711_encode(
        struct.pack("<160h", *[3000 if k % 16 < 8 else -3000 for k in range(160)]), "PCMU"
    )
    silence = g711_encode(b"\0\0" * 160, "PCMU")
    # The machine talks on for 3 s; the person says "Hello?" (0.5 s) and waits.
    phones().start(mp, lambda i: talk if i < 150 else silence)
    phones().start(pp, lambda i: talk if i < 25 else silence)
    events = MediaEventsCollector(engine)
    m = events.wait_for(AmdResult, where=lambda e: e.leg == machine_leg)  # type: ignore[attr-defined]
    p = events.wait_for(AmdResult, where=lambda e: e.leg == person_leg)  # type: ignore[attr-defined]
    assert (m.result, m.reason) == ("machine", "long-greeting")  # type: ignore[attr-defined]
    assert (p.result, p.reason) == ("human", "after-greeting-silence")  # type: ignore[attr-defined]
    assert 1200 <= p.decision_ms <= 1700, p  # type: ignore[attr-defined]


def test_media_timeout_arrives_on_the_asyncio_loop(engine: MediaEngine) -> None:
    async def scenario() -> MediaTimeout:
        hub = MediaEvents(engine)
        hub.attach()
        q = hub.subscribe()
        leg, _ = engine.allocate_leg(9, media_timeout_ms=300)
        try:
            event = await asyncio.wait_for(q.get(), 5)
        finally:
            hub.detach()
        assert isinstance(event, MediaTimeout)
        assert event.leg == leg
        return event

    event = asyncio.run(scenario())
    assert event.silent_ms >= 300


def test_bad_datagrams_are_counted_and_the_leg_keeps_working(
    engine: MediaEngine, phones: Callable[..., Phone]
) -> None:
    leg, port = engine.allocate_leg(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (
            b"",
            b"\x00" * 5,
            b"\x80\x00",
            b"\x40" * 20,
            b"\xbf" + b"\x00" * 11,
            os.urandom(300),
        ):
            s.sendto(junk, ("127.0.0.1", port))
    phone = phones().start(port, constant("PCMU", 1000))
    wait_for(lambda: engine.leg_stats(leg)["packets_received"] > 20)
    stats = engine.leg_stats(leg)
    assert stats["malformed"] >= 3
    assert stats["mos"] > 4.0
    assert len(phone.audio_payloads()) > 10  # symmetric RTP: it answered the phone


def test_re_invite_repoints_the_leg_without_a_gap(
    engine: MediaEngine, phones: Callable[..., Phone]
) -> None:
    leg, _ = engine.allocate_leg(1)
    first, second = phones().start(0, None), phones().start(0, None)
    engine.set_remote(leg, "127.0.0.1", first.port)
    wait_for(lambda: len(first.received) > 10)
    engine.set_remote(leg, "127.0.0.1", second.port)
    wait_for(lambda: len(second.received) > 10)
    last_first = parse_rtp(first.received[-1][1])
    first_second = parse_rtp(second.received[0][1])
    # One stream, moved: consecutive sequence numbers and timestamps, same SSRC.
    assert first_second[3] == last_first[3]
    assert (first_second[1] - last_first[1]) & 0xFFFF == 1
    assert (first_second[2] - last_first[2]) & 0xFFFFFFFF == 160


def test_bad_requests_raise_media_error(engine: MediaEngine, tmp_path: Path) -> None:
    leg, _ = engine.allocate_leg(1)
    other_shard_engine = MediaEngine(port_min=40000, port_max=40100, shards=2)
    try:
        l0, _ = other_shard_engine.allocate_leg(0)
        r1 = other_shard_engine.create_room(1)
        with pytest.raises(MediaError, match="different media shards"):
            other_shard_engine.join_room(r1, l0)
    finally:
        other_shard_engine.shutdown()
    with pytest.raises(MediaError, match="no media leg 999"):
        engine.release_leg(999)
    with pytest.raises(MediaError, match="not a DTMF digit"):
        engine.send_dtmf(leg, "12x")
    with pytest.raises(MediaError, match="unknown room mode"):
        engine.join_room(engine.create_room(1), leg, "shout")
    bad = tmp_path / "stereo.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0" * 64)
    with pytest.raises(MediaError, match="2 channel"):
        engine.play_file(leg, bad)
    with pytest.raises(MediaError, match="No such file"):
        engine.play_file(leg, tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="dynamic"):
        engine.allocate_leg(1, dtmf_pt=13)
    with pytest.raises(MediaError, match="port"):
        MediaEngine(port_min=80, port_max=90)


KILLED_RECORDER = """
import struct, sys, time, socket
from ccorch._core import MediaEngine, g711_encode
e = MediaEngine(port_min=41000, port_max=41100)
a, pa = e.allocate_leg(1, jitter_min_ms=120, jitter_max_ms=300)
b, pb = e.allocate_leg(1)
e.bridge(a, b)
e.start_recording(sys.argv[1], a, b)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tone = g711_encode(struct.pack("<160h", *[2000 if k % 20 < 10 else -2000 for k in range(160)]), "PCMU")
start = time.monotonic()
for i in range(1000):
    s.sendto(struct.pack("!BBHII", 0x80, 0, i, i * 160, 42) + tone, ("127.0.0.1", pa))
    if i == 10:
        print("recording", flush=True)
    time.sleep(max(0, start + (i + 1) * 0.02 - time.monotonic()))
"""


def test_killed_process_leaves_a_playable_recording(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_RECORDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recording"
        time.sleep(2.7)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    with wave.open(str(path)) as w:
        n = w.getnframes()
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        data = w.readframes(n)
    # Flushed once a second: at least 2 s of the 2.9 s survive, and they hold the tone.
    assert 16000 <= n <= 24000, n
    left = struct.unpack(f"<{n * 2}h", data)[0::2]
    tone_values = set(
        struct.unpack(
            "<160h",
            g711_decode(g711_encode(struct.pack("<2h", 2000, -2000), "PCMU"), "PCMU") * 80,
        )
    )
    assert set(left[-8000:]) <= tone_values | {0}
    assert sum(1 for v in left if v != 0) > n // 2
