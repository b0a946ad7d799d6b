"""The desktop's own phone (issue 17): Debian's headless Chromium with fake media registers
over SIP-over-WebSocket, a trunk call rings it, the operator answers in the page, and the
audio goes both ways through the media engine's WebRTC leg (ICE-lite, DTLS-SRTP).

The browser's microphone is a WAV file of a 1000 Hz tone (Chromium's fake capture); the
customer is the test's RTP end behind SIPp, speaking 440 Hz. What the customer hears is
measured in the RTP it receives; what the browser hears is measured in the page by a
WebAudio analyser on the <audio> element's stream."""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.sipp import wait_for
from tests.test_call_control import (
    COLLEAGUE_HZ,
    CUSTOMER_HZ,
    OPERATOR_HZ,
    deaf_to,
    heard_music,
    hears,
    phone_of,
    talk_together,
)
from tests.test_desktop import (
    QUEUES,
    TIMEOUT_MS,
    open_app,
    shot,
    sign_in,
    start_shift,
    state_of,
)
from tests.test_inbound import Center, _center
from tests.test_ivr import Phone as DeskPhoneEnd

pytestmark = pytest.mark.slow


def tone_wav(path: Path, hz: int, seconds: float = 20.0) -> Path:
    """A mono 48 kHz tone, Chromium's fake microphone (it loops the file)."""
    rate = 48_000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                for i in range(int(rate * seconds))
            )
        )
    return path


@pytest.fixture(scope="module")
def center(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path_factory.mktemp("browserphone"), queues=QUEUES) as c:
        yield c


def fake_media_flags(mic: Path) -> list[str]:
    """Chromium with a microphone that plays ``mic`` and no permission prompt."""
    return [
        *CHROMIUM_FLAGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
        "--autoplay-policy=no-user-gesture-required",
    ]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    mic = tone_wav(tmp_path_factory.mktemp("mic") / "operator.wav", OPERATOR_HZ)
    b = playwright.chromium.launch(
        executable_path=CHROMIUM, args=fake_media_flags(mic), headless=True
    )
    yield b
    b.close()


# The page's ears: an analyser on the <audio> element's stream, the level of one frequency.
LISTEN = """async ([tones, ms]) => {
  const audio = document.querySelector('[data-testid=phone-audio]');
  const stream = audio && audio.srcObject;
  if (!stream) return -1;
  const ctx = window.__ccorchEars || (window.__ccorchEars = new AudioContext());
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const best = tones.map(() => -200);
  const until = performance.now() + ms;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatFrequencyData(bins);
    tones.forEach((hz, i) => {
      const bin = Math.round(hz / (ctx.sampleRate / analyser.fftSize));
      best[i] = Math.max(best[i], bins[bin], bins[bin - 1], bins[bin + 1]);
    });
  }
  source.disconnect();
  return best;
}"""


# The page's RTCPeerConnections, kept by an init script, for their getStats().
KEEP_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})()"""

STATS = """async () => {
  const out = [];
  for (const pc of window.__pcs || []) {
    const r = await pc.getStats();
    r.forEach((s) => { if (['inbound-rtp', 'outbound-rtp', 'transport', 'codec'].includes(s.type)) out.push(JSON.stringify(s)); });
  }
  return out;
}"""


def browser_levels(page: Page, tones: list[int], ms: int = 1500) -> list[float]:
    """The strongest level (dBFS) of each tone the browser played in ``ms`` (-200: none)."""
    levels: Any = page.evaluate(LISTEN, [tones, ms])
    assert levels != -1, "the page plays no remote audio"
    return [float(x) for x in levels]


HEARD_DB, DEAF_DB = -50.0, -75.0


def operator_ready(browser: Browser, center: Center) -> Page:
    """op7001's desktop with its browser phone registered, Ready. A test before may have
    left the shift open: its page closed, its phone went with it, so 7001 is Not ready
    (phone lost) until the operator says Ready again."""
    page = open_app(browser, center, phone=True)
    sign_in(page, "op7001", "agent7001")
    page.wait_for_selector("[data-testid=shift], [data-testid=desktop]")
    if page.get_by_test_id("shift").count():
        start_shift(page, {"tech"})
    expect(page.get_by_test_id("phone-status")).to_have_attribute("data-status", "registered")
    if page.get_by_test_id("wrap-up-end").count():
        page.click("[data-testid=wrap-up-end]")
    if page.get_by_test_id("agent-state").get_attribute("data-state") != "ready":
        page.click("[data-testid=ready]")
    state_of(page).to_have_attribute("data-state", "ready")
    return page


@contextlib.contextmanager
def answered_in_browser(
    center: Center, page: Page, ringing_shot: str | None = None
) -> Iterator[tuple[Any, subprocess.Popen[bytes]]]:
    """Ivan Petrenko calls and presses 1; the operator's browser rings and is answered in
    the page: the customer's RTP end and the carrier's SIPp, cleaned up afterwards."""
    customer, carrier = center.caller("trunk_ivr_call_reinvites.xml")
    try:
        customer.listen(1.5)
        customer.press("1")
        expect(page.get_by_test_id("phone-ringing")).to_be_visible(timeout=20_000)
        if ringing_shot:
            shot(page, ringing_shot)
        page.click("[data-testid=answer]")
        expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "answered")
        expect(page.get_by_test_id("phone-ringing")).to_have_count(0)
        assert wait_for(lambda: customer.peer is not None or customer.listen(0.1), 10)
        yield customer, carrier
    finally:
        customer.sock.close()
        if carrier.poll() is None:
            carrier.kill()
        carrier.wait()


def test_the_browser_phone_registers_rings_answers_and_talks_both_ways(
    center: Center, browser: Browser
) -> None:
    page = open_app(browser, center, phone=True)
    page.context.add_init_script(KEEP_PEER_CONNECTIONS)
    page.reload()
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"tech"})
    expect(page.get_by_test_id("phone-status")).to_have_attribute("data-status", "registered")
    state_of(page).to_have_attribute("data-state", "ready")
    shot(page, "21-phone-registered")

    with answered_in_browser(center, page, "22-phone-ringing") as (customer, carrier):
        # two-way audio: the customer hears the browser's microphone, the browser the customer
        heard = talk_together([(customer, CUSTOMER_HZ)], 3.0)
        assert hears(heard[0], OPERATOR_HZ), "the customer did not hear the browser"
        level = _level_while_customer_speaks(page, customer)
        stats = [json.loads(x) for x in page.evaluate(STATS)]
        transport = next(x for x in stats if x["type"] == "transport")
        inbound = next(x for x in stats if x["type"] == "inbound-rtp")
        # DTLS-SRTP, as the browser itself reports it; the node's packets decrypted and played
        assert transport["dtlsState"] == "connected" and transport["srtpCipher"], transport
        assert inbound["packetsReceived"] > 100 and inbound["packetsLost"] < 5, inbound
        # the browser speaks Opus; the node transcodes at the edge to the trunk's G.711
        codec = next(x for x in stats if x["id"] == inbound["codecId"])
        assert codec["mimeType"].lower() == "audio/opus", codec
        assert level > -50, f"the browser did not hear the customer ({level:.1f} dBFS)"
        shot(page, "23-phone-talking")

        # hold from the desktop: the customer hears the music; resume: both ways again
        page.click("[data-testid=hold]")
        expect(page.get_by_test_id("on-hold")).to_be_visible()
        heard = talk_together([(customer, CUSTOMER_HZ)], 3.0)
        assert heard_music(heard[0]), "the customer on hold did not hear the music"
        page.click("[data-testid=resume]")
        expect(page.get_by_test_id("on-hold")).to_have_count(0)
        heard = talk_together([(customer, CUSTOMER_HZ)], 2.0)
        assert hears(heard[0], OPERATOR_HZ), "after resume the customer did not hear the browser"

        page.click("[data-testid=hangup]")
        expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "ended")
        assert carrier.wait(20) == 0, "the carrier's SIPp did not see the call end normally"
    # the recording has both sides: the customer left, the browser right
    with psycopg.connect(center.db) as conn:
        row = conn.execute(
            "SELECT recording_path FROM cdrs WHERE agent = '7001' AND recording_path IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    left, right = _channel_levels(Path(row[0]))
    assert left > 300 and right > 300, (left, right)
    page.context.close()


def _level_while_customer_speaks(page: Page, customer: Any) -> float:
    return _while_customer_speaks(customer, [(page, [CUSTOMER_HZ])])[1][0][0]


def _while_customer_speaks(
    customer: Any, pages: list[tuple[Page, list[int]]]
) -> tuple[bytes, list[list[float]]]:
    heard, levels = _while_speaking([(customer, CUSTOMER_HZ)], pages)
    return heard[0], levels


def _while_speaking(
    parties: list[tuple[Any, int]], pages: list[tuple[Page, list[int]]]
) -> tuple[list[bytes], list[list[float]]]:
    """The RTP parties speak their tones (a thread) while each page listens for its tones,
    one after the other (Playwright's sync API stays on this thread): what each party
    heard, and each page's levels."""
    heard: list[bytes] = []
    seconds = 1.0 + 2.2 * len(pages)
    speaking = threading.Thread(target=lambda: heard.extend(talk_together(parties, seconds)))
    speaking.start()
    try:
        time.sleep(0.5)
        levels = [browser_levels(page, tones, 2000) for page, tones in pages]
    finally:
        speaking.join(seconds + 10)
    return heard, levels


def _channel_levels(path: Path) -> tuple[float, float]:
    """RMS of each channel of a stereo PCM16 recording."""
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        assert w.getnchannels() == 2
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    left, right = samples[0::2], samples[1::2]

    def rms(xs: tuple[int, ...]) -> float:
        return math.sqrt(sum(x * x for x in xs) / max(1, len(xs)))

    return rms(left), rms(right)


SUPERVISOR_HZ = 1500


@pytest.fixture(scope="module")
def supervisor_browser(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """A second Chromium whose microphone is the supervisor's 1500 Hz (the fake capture
    file is per browser process)."""
    mic = tone_wav(tmp_path_factory.mktemp("mic2") / "supervisor.wav", SUPERVISOR_HZ)
    b = playwright.chromium.launch(
        executable_path=CHROMIUM, args=fake_media_flags(mic), headless=True
    )
    yield b
    b.close()


def test_a_supervisor_listens_whispers_and_barges_from_the_browser(
    center: Center, browser: Browser, supervisor_browser: Browser
) -> None:
    """Customer 440 Hz (RTP), operator 1000 Hz (browser), supervisor 1500 Hz (a second
    browser, the supervisor's seat): listen: the supervisor hears both and nobody hears it;
    whisper: only the operator hears it; barge: both do."""
    operator = operator_ready(browser, center)
    supervisor = open_app(supervisor_browser, center, phone=True)
    sign_in(supervisor, "sup7009", "agent7009")
    expect(supervisor.get_by_test_id("supervisor")).to_be_visible()
    expect(supervisor.get_by_test_id("phone-status")).to_have_attribute("data-status", "registered")
    supervisor.get_by_test_id("sup-tab-calls").click()

    with answered_in_browser(center, operator) as (customer, carrier):
        row = supervisor.locator("[data-testid^=call-]", has_text="7001").first
        call_id = (row.get_attribute("data-testid") or "").removeprefix("call-")
        assert call_id.isdigit(), call_id

        # listen: the supervisor's browser answers by itself and hears both
        supervisor.click(f"[data-testid=listen-{call_id}]")
        expect(supervisor.get_by_test_id(f"call-{call_id}-monitor")).to_have_text("Listen")
        shot(supervisor, "24-supervisor-listening")
        heard, (sup, op) = _while_customer_speaks(
            customer, [(supervisor, [CUSTOMER_HZ, OPERATOR_HZ]), (operator, [SUPERVISOR_HZ])]
        )
        assert min(sup) > HEARD_DB, f"the supervisor does not hear both: {sup}"
        assert op[0] < DEAF_DB, f"the operator hears the listening supervisor: {op}"
        assert deaf_to(heard, SUPERVISOR_HZ), "the customer hears the listening supervisor"

        # whisper: the operator hears the supervisor, the customer does not
        supervisor.click(f"[data-testid=whisper-{call_id}]")
        expect(supervisor.get_by_test_id(f"call-{call_id}-monitor")).to_have_text("Whisper")
        heard, (op,) = _while_customer_speaks(customer, [(operator, [SUPERVISOR_HZ])])
        assert op[0] > HEARD_DB, f"the operator does not hear the whisper: {op}"
        assert deaf_to(heard, SUPERVISOR_HZ), "the customer hears the whisper"

        # barge: everyone hears the supervisor
        supervisor.click(f"[data-testid=barge-{call_id}]")
        expect(supervisor.get_by_test_id(f"call-{call_id}-monitor")).to_have_text("Barge in")
        heard, (op,) = _while_customer_speaks(customer, [(operator, [SUPERVISOR_HZ])])
        assert op[0] > HEARD_DB, f"the operator does not hear the barge: {op}"
        assert hears(heard, SUPERVISOR_HZ), "the customer does not hear the barge"

        # the supervisor leaves; the call goes on between customer and operator
        supervisor.click(f"[data-testid=stop-{call_id}]")
        expect(supervisor.get_by_test_id(f"call-{call_id}-monitor")).to_have_count(0)
        heard = talk_together([(customer, CUSTOMER_HZ)], 2.0)[0]
        assert hears(heard, OPERATOR_HZ) and deaf_to(heard, SUPERVISOR_HZ)
        operator.click("[data-testid=hangup]")
        assert carrier.wait(20) == 0
    # who joined the call, how, and when they left: in the audit log
    with psycopg.connect(center.db) as conn:
        audited = conn.execute(
            """SELECT a.action, a.after ->> 'mode', u.login FROM audit_log a
               JOIN users u ON u.id = a.user_id
               WHERE a.entity = 'call' AND a.entity_id = %s ORDER BY a.id""",
            (call_id,),
        ).fetchall()
    assert audited == [
        ("monitor", "listen", "sup7009"),
        ("monitor", "whisper", "sup7009"),
        ("monitor", "barge", "sup7009"),
        ("monitor_stop", None, "sup7009"),
    ], audited
    operator.context.close()
    supervisor.context.close()


def test_a_browser_operator_consults_a_desk_phone_colleague_then_conferences(
    center: Center, browser: Browser
) -> None:
    """The operator in the browser consults 7002 (a SIPp desk phone, 1500 Hz) through the
    directory: the customer waits with music while they talk; then a conference where each
    of the three hears the other two."""
    operator = operator_ready(browser, center)
    colleague = DeskPhoneEnd()
    phone2 = phone_of(center, "7002", colleague)
    try:
        with answered_in_browser(center, operator) as (customer, carrier):
            _consult_then_conference(operator, customer, carrier, colleague, phone2)
    finally:
        phone2.kill()
        colleague.sock.close()
    operator.context.close()


def _consult_then_conference(
    operator: Page, customer: Any, carrier: Any, colleague: Any, phone2: Any
) -> None:
    """Consult 7002 through the directory, then a conference of the three."""
    operator.click("[data-testid=transfer]")
    operator.click("[data-testid=consult-7002]")
    expect(operator.get_by_test_id("consulting")).to_be_visible()
    expect(operator.get_by_test_id("consult-conference")).to_be_visible()
    assert wait_for(lambda: colleague.peer is not None or colleague.listen(0.1), 10)
    heard, (op,) = _while_speaking(
        [(customer, CUSTOMER_HZ), (colleague, COLLEAGUE_HZ)],
        [(operator, [COLLEAGUE_HZ, CUSTOMER_HZ])],
    )
    assert op[0] > HEARD_DB and op[1] < DEAF_DB, f"operator in consultation: {op}"
    assert heard_music(heard[0]) and deaf_to(heard[0], OPERATOR_HZ, COLLEAGUE_HZ)
    assert hears(heard[1], OPERATOR_HZ), "the colleague does not hear the browser"

    operator.click("[data-testid=consult-conference]")
    expect(operator.get_by_test_id("consulting")).to_have_count(0)
    heard, (op,) = _while_speaking(
        [(customer, CUSTOMER_HZ), (colleague, COLLEAGUE_HZ)],
        [(operator, [CUSTOMER_HZ, COLLEAGUE_HZ])],
    )
    assert min(op) > HEARD_DB, f"the operator does not hear both: {op}"
    assert hears(heard[0], OPERATOR_HZ, COLLEAGUE_HZ), "customer"
    assert hears(heard[1], CUSTOMER_HZ, OPERATOR_HZ), "colleague"
    operator.click("[data-testid=hangup]")
    assert carrier.wait(20) == 0
    assert phone2.wait(20).ok


def test_a_dropped_phone_connection_is_said_and_the_phone_registers_again(
    center: Center, browser: Browser
) -> None:
    """The SIP WebSocket is cut (Playwright stands between the page and the node): the panel
    says the connection is lost, JsSIP reconnects by itself and the phone is registered
    again, with the message gone."""
    context = browser.new_context(locale="en")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sockets: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/sip$"), relay)
    page.goto(center.node.base + "/")
    sign_in(page, "op7004", "agent7004")
    start_shift(page, {"general"})
    status = page.get_by_test_id("phone-status")
    expect(status).to_have_attribute("data-status", "registered")
    first = len(sockets)
    sockets[-1].close(code=1006, reason="the test's network is down")
    expect(page.get_by_test_id("phone-problem")).to_have_attribute(
        "data-problem", "phone.disconnected"
    )
    expect(page.get_by_test_id("phone-problem")).to_contain_text("reconnecting")
    # JsSIP tries again after 2 s at the soonest
    expect(status).to_have_attribute("data-status", "registered", timeout=20_000)
    expect(page.get_by_test_id("phone-problem")).to_have_count(0)
    assert len(sockets) > first
    context.close()
