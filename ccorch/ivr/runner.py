"""Runs one call's IVR session: the I/O around the sans-IO interpreter.

Inputs (keys and prompt ends from the media engine, timers, CRM answers) are handled one at
a time by the call's own task, in arrival order, so the interpreter never sees two at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from psycopg_pool import AsyncConnectionPool

from ccorch.crm import cases, store, utility
from ccorch.ivr import asr, tts, utility_io
from ccorch.ivr.interpreter import (
    Action,
    Authorize,
    CheckOutage,
    Enqueue,
    Hangup,
    LeaveQueue,
    Listen,
    Lookup,
    Play,
    Prompt,
    RecordVoicemail,
    RequestCallback,
    Session,
    StopListening,
    StopPrompts,
    StopVoicemail,
    SubmitReading,
    Transfer,
    Visited,
)
from ccorch.media import DtmfDigit, MediaEngine, PlaybackFinished
from ccorch.media.music import default_music

log = logging.getLogger(__name__)


@dataclass
class IvrDeps:
    media: MediaEngine
    pool: AsyncConnectionPool | None
    tts_dir: Path
    recordings_dir: Path | None = None  # where operators' calls are recorded


class IvrCall(Protocol):
    """What a flow may do to the call it runs on (the call controller's ``Call`` is one)."""

    id: int
    ani: str
    customer_id: int | None
    queue: str | None
    sip_call_id: str
    state: str
    authorized: bool | None  # None: the flow did not ask

    def end(self, reason: str) -> None: ...
    def identified(self, customer_id: int, by: str = "pin") -> None: ...
    def ivr_step(self, node: str, kind: str) -> None: ...
    def menu_key(self, digit: str) -> None: ...
    def enqueue(self, queue: str, priority: int, prefer_seconds: float = 0.0) -> bool: ...
    def estimated_wait(self) -> float | None: ...
    def queue_position(self) -> int | None: ...
    def withdraw_from_queue(self) -> None: ...
    def transfer_from_ivr(self, to: str) -> bool: ...


class IvrRunner:
    def __init__(self, call: IvrCall, session: Session, deps: IvrDeps, leg: int) -> None:
        self.call = call
        self.session = session
        self.deps = deps
        self.leg = leg
        self.inputs: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.play_id: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.prompts_played: list[Path] = []  # TTS files, in order (tests compare the audio)
        self.stopped = False
        self.queued: Enqueue | None = None
        self.announce_id: int | None = None
        self.announce_timer: asyncio.TimerHandle | None = None
        # a voicemail being recorded: (recording id, its file, when it started)
        self.voicemail: tuple[int, Path, dt.datetime] | None = None
        # spoken digits being listened to: (recording id, its file, the listening task)
        self.listening: tuple[int, Path, asyncio.Task[None]] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"ivr-{self.call.id}")

    def stop(self) -> None:
        """The call ended (or left the IVR): no more actions."""
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.announce_timer is not None:
            self.announce_timer.cancel()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self._stop_listening()
        if self.voicemail is not None:
            # The caller hung up while speaking: what they said is the message. The file
            # is closed now, before the call's media goes; the CRM rows follow.
            path, started = self._stop_voicemail()
            task = asyncio.get_running_loop().create_task(self._keep("voicemail", path, started))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)

    def on_media(self, ev: object) -> None:
        if isinstance(ev, DtmfDigit):
            self.inputs.put_nowait(("digit", ev.digit))
        elif isinstance(ev, PlaybackFinished) and ev.reason == "done":
            self.inputs.put_nowait(("done", ev.play_id))

    def transfer_failed(self) -> None:
        self.inputs.put_nowait(("transfer_failed",))

    def queue_left(self, outcome: str) -> None:
        self.inputs.put_nowait(("queue_left", outcome))

    def offer_ended(self) -> None:
        """The operator we rang did not take the call: the caller is still waiting."""
        self.inputs.put_nowait(("requeued",))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._do(self.session.start(loop.time()))
            while not self.stopped:
                item = await self.inputs.get()
                now = loop.time()
                kind = item[0]
                if kind == "digit":
                    at = self.session.node
                    if at is not None and at.type == "menu":
                        self.call.menu_key(item[1])
                    actions = self.session.on_digit(now, item[1])
                elif kind == "done" and self.queued is not None and item[1] == self.announce_id:
                    self._music()
                    actions = []
                elif kind == "done":
                    actions = self.session.on_prompts_done(now) if item[1] == self.play_id else []
                elif kind == "announce":
                    await self._announce()
                    actions = []
                elif kind == "requeued":
                    actions = []
                elif kind == "queue_left":
                    self._leave_queue()
                    actions = self.session.on_queue_left(now, item[1])
                elif kind == "timeout":
                    actions = self.session.on_timeout(now)
                elif kind == "auth":
                    actions = self.session.on_authorized(now, item[1], item[2])
                elif kind == "lookup":
                    actions = self.session.on_lookup(now, item[1])
                elif kind == "recognized":
                    self.listening = None
                    actions = self.session.on_recognized(now, item[1], item[2])
                elif kind == "reading":
                    actions = self.session.on_reading(now, item[1], item[2])
                elif kind == "outage":
                    actions = self.session.on_outage(now, item[1], item[2])
                elif kind == "request_done":
                    actions = self.session.on_request_done(now, item[1])
                elif kind == "transfer_failed":
                    actions = self.session.on_transfer_failed(now)
                else:
                    actions = []
                await self._do(actions)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ivr failed", extra={"call": self.call.id})
            self.call.end("ivr-error")

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        t = self.session.next_timeout
        if t is not None and not self.stopped:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_at(t, self.inputs.put_nowait, ("timeout",))

    async def _do(self, actions: list[Action]) -> None:
        for a in actions:
            if self.stopped:
                return
            if isinstance(a, Visited):
                log.debug("ivr node", extra={"call": self.call.id, "node": a.node})
                self.call.ivr_step(a.node, a.type)
            elif isinstance(a, Play):
                pcm = await self._render(a.prompts)
                self.play_id = self.deps.media.play_pcm(self.leg, pcm, barge_in=a.barge_in)
            elif isinstance(a, StopPrompts):
                self.play_id = None
                self.deps.media.stop_playback(self.leg)
            elif isinstance(a, Authorize):
                outcome, values = await self._authorize(a)
                self.inputs.put_nowait(("auth", outcome, values))
            elif isinstance(a, Lookup):
                self.inputs.put_nowait(("lookup", await self._lookup(a)))
            elif isinstance(a, SubmitReading | CheckOutage):
                self.inputs.put_nowait(await self._utility(a))
            elif isinstance(a, Listen):
                self._listen(a.max_seconds)
            elif isinstance(a, StopListening):
                self._stop_listening()
            elif isinstance(a, RecordVoicemail):
                self._start_voicemail()
            elif isinstance(a, StopVoicemail):
                if self.voicemail is not None:
                    path, started = self._stop_voicemail()
                    ok = await self._keep("voicemail", path, started)
                    self.inputs.put_nowait(("request_done", ok))
            elif isinstance(a, RequestCallback):
                ok = await self._keep("callback", None, dt.datetime.now(dt.UTC), a.number)
                self.inputs.put_nowait(("request_done", ok))
            elif isinstance(a, LeaveQueue):
                self.call.withdraw_from_queue()
            elif isinstance(a, Transfer):
                if not self.call.transfer_from_ivr(a.to):
                    self.inputs.put_nowait(("transfer_failed",))
            elif isinstance(a, Enqueue):
                await self._enqueue(a)
            elif isinstance(a, Hangup):
                self.stopped = True
                self.call.end(f"ivr-{a.reason}")
                return
        self._arm()

    # --- waiting in a queue ---

    async def _enqueue(self, a: Enqueue) -> None:
        self.queued = a
        if not self.call.enqueue(a.queue, a.priority, a.prefer_seconds):
            self.queue_left("unavailable")
            return
        if self.call.state == "ringing" or a.busy_text is None:
            self._music()  # an operator is being rung already: no "all busy" message
        else:
            await self._announce()

    async def _announce(self) -> None:
        """ "All operators are busy, approximate wait N min", then the music again."""
        a = self.queued
        if a is None or self.stopped or a.busy_text is None:
            return
        ewt = self.call.estimated_wait()  # None: unknown (nobody works the queue)
        language = self.session.flow.language
        self.session.vars["position"] = self.call.queue_position() or 1
        parts: list[str] = []
        if ewt is not None:
            self.session.vars["ewt"] = tts.wait(ewt, language)
            # rounded up to the half minute, as the seed's "0.5 мин."
            self.session.vars["ewt_min"] = tts.number(max(0.5, -(-ewt // 30) / 2), language)
            parts.append(self.session.fill(a.busy_text))
        elif a.busy_unknown_text is not None:
            parts.append(self.session.fill(a.busy_unknown_text))
        if a.options_text and (ewt is None or ewt >= a.options_after):
            parts.append(self.session.fill(a.options_text))  # a long or unknown wait
        self._arm_announcement(a.announce_every)
        if not parts:
            return
        text = " ".join(parts)
        pcm = await self._render((Prompt(text=text),))
        if self.stopped or self.queued is None:
            return
        self.deps.media.stop_playback(self.leg)
        self.announce_id = self.deps.media.play_pcm(self.leg, pcm)

    def _arm_announcement(self, every: float) -> None:
        if self.announce_timer is not None:
            self.announce_timer.cancel()
        self.announce_timer = asyncio.get_running_loop().call_later(
            every, self.inputs.put_nowait, ("announce",)
        )

    def _music(self) -> None:
        a = self.queued
        if a is None or self.stopped:
            return
        pcm = _pcm8k(Path(self.session.flow.path).parent / a.music) if a.music else default_music()
        self.play_id = None
        self.deps.media.play_pcm(self.leg, pcm, loop_=True)

    def _leave_queue(self) -> None:
        self.queued = None
        if self.announce_timer is not None:
            self.announce_timer.cancel()
            self.announce_timer = None
        self.deps.media.stop_playback(self.leg)

    async def _render(self, prompts: tuple[Prompt, ...]) -> bytes:
        chunks: list[bytes] = []
        lang = self.session.flow.language
        base = Path(self.session.flow.path).parent
        for p in prompts:
            if p.text is not None:
                path = await asyncio.to_thread(tts.render, p.text, lang, self.deps.tts_dir)
                self.prompts_played.append(path)
            else:
                assert p.file is not None
                path = base / p.file
            chunks.append(await asyncio.to_thread(_pcm8k, path))
        return b"".join(chunks)

    async def _authorize(self, a: Authorize) -> tuple[str, dict[str, Any]]:
        outcome, values = await authorize(self.deps.pool, a)
        self.call.authorized = outcome == "ok"
        if outcome == "ok" and values.get("customer_id") is not None:
            self.call.identified(values["customer_id"])
        return outcome, values

    # --- spoken digits ---

    def _listen(self, max_seconds: float) -> None:
        """Record what the caller says (the recorder's file, as it grows) until they have
        spoken and paused, or ``max_seconds``; then recognize it off the loop."""
        if not asr.available(self.session.flow.language):
            self.inputs.put_nowait(("recognized", "", 0.0))
            return
        fd, name = tempfile.mkstemp(prefix=f"asr-{self.call.id}-", suffix=".wav")
        os.close(fd)
        path = Path(name)
        rec = self.deps.media.start_recording(path, self.leg)
        task = asyncio.create_task(self._hear(rec, path, max_seconds))
        self.listening = (rec, path, task)

    async def _hear(self, rec: int, path: Path, max_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + max_seconds
        heard = asr.Heard("", 0.0)
        try:
            while loop.time() < until:
                await asyncio.sleep(LISTEN_POLL)
                if asr.speech_ended(await asyncio.to_thread(_wav_data, path)):
                    break
            self.deps.media.stop_recording(rec)
            pcm = await _final_wav_data(path)
            heard = await asyncio.to_thread(asr.recognize_digits, pcm)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # no model, a file gone: not understood, the fallback
            log.error("speech not recognized", extra={"call": self.call.id, "error": str(e)})
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("ivr heard", extra={"call": self.call.id, "digits": len(heard.digits),
                                     "confidence": heard.confidence})  # fmt: skip
        self.inputs.put_nowait(("recognized", heard.digits, heard.confidence))

    def _stop_listening(self) -> None:
        if self.listening is None:
            return
        rec, path, task = self.listening
        self.listening = None
        task.cancel()
        # (already stopped when the listening ended just as the caller typed)
        with contextlib.suppress(Exception):
            self.deps.media.stop_recording(rec)
        path.unlink(missing_ok=True)

    # --- voicemail and callback requests ---

    def _start_voicemail(self) -> None:
        started = dt.datetime.now(dt.UTC)
        base = self.deps.recordings_dir or Path("var/recordings")
        folder = base / "voicemail" / started.strftime("%Y/%m/%d")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{started:%H%M%S}-{self.call.id}.wav"
        self.deps.media.play_pcm(self.leg, _beep())  # the caller hears it; it is not recorded
        rec = self.deps.media.start_recording(path, self.leg)
        self.voicemail = (rec, path, started)

    def _stop_voicemail(self) -> tuple[Path, dt.datetime]:
        assert self.voicemail is not None
        rec, path, started = self.voicemail
        self.voicemail = None
        try:
            self.deps.media.stop_recording(rec)
        except Exception as e:  # the leg went first: the file is closed with it
            log.warning("voicemail recording", extra={"call": self.call.id, "error": str(e)})
        return path, started

    async def _keep(
        self, what: str, path: Path | None, started: dt.datetime, number: str | None = None
    ) -> bool:
        """The CRM's case, interaction and callback task for a voicemail or callback."""
        if self.deps.pool is None:
            return False
        try:
            async with self.deps.pool.connection() as conn:
                case_id = await cases.request_from_ivr(
                    conn,
                    what=what,
                    number=number if number is not None else self.call.ani,
                    customer_id=self.call.customer_id,
                    started_at=started,
                    now=dt.datetime.now(dt.UTC),
                    hours=cases.BusinessHours(),
                    queue=self.call.queue,
                    recording=path,
                    sip_call_id=self.call.sip_call_id,
                )
        except Exception as e:
            log.error(
                f"{what} not kept in the CRM",
                extra={"call": self.call.id, "error": str(e), "file": str(path)},
            )
            return False
        log.info(f"{what} kept", extra={"call": self.call.id, "case": case_id, "file": str(path)})
        return True

    async def _lookup(self, a: Lookup) -> dict[str, Any] | None:
        """The lookup's variables, or None: the flow's fallback (logged with the reason)."""
        try:
            data = await fetch_record(self.deps.pool, a)
            if a.crm == "service_point" and self.call.customer_id is None:
                # an account number given in the IVR tells who calls: the operator's card
                self.call.identified(int(data["customer_id"]), "account")
            return fields_of(data, a)
        except (TimeoutError, LookupError, OSError, ValueError) as e:
            log.warning(
                "ivr lookup failed; the flow's fallback follows",
                extra={
                    "call": self.call.id,
                    "source": a.url or a.crm,
                    "error": str(e) or "timeout",
                },
            )
            return None

    async def _utility(self, a: SubmitReading | CheckOutage) -> tuple[str, str, dict[str, Any]]:
        """A meter reading or an outage check: (the input, outcome, variables); a CRM
        that does not answer is the node's on_fail, logged."""
        now = dt.datetime.now(dt.UTC)
        try:
            if isinstance(a, SubmitReading):
                got = await utility_io.reading(
                    self.deps.pool, a, now, sip_call_id=self.call.sip_call_id
                )
                if got[0] == "ok":
                    log.info("meter reading stored",
                             extra={"call": self.call.id, "contract": a.contract,
                                    "channel": a.channel})  # fmt: skip
                return ("reading", *got)
            return ("outage", *(await utility_io.outage(self.deps.pool, a, now)))
        except Exception as e:
            log.error("ivr crm step failed; the flow's on_fail follows",
                      extra={"call": self.call.id, "error": str(e)})  # fmt: skip
            return ("reading" if isinstance(a, SubmitReading) else "outage", "failed", {})

    async def _crm_lookup(self, a: Lookup) -> dict[str, Any] | None:
        return await crm_lookup(self.deps.pool, a)


async def authorize(
    pool: AsyncConnectionPool[Any] | None, a: Authorize, *, dry_run: bool = False
) -> tuple[str, dict[str, Any]]:
    """An ``authorize`` node's answer from the CRM: ok (with the balance), locked or fail.
    ``dry_run``: the same answer with no failure counted (the flow editor's simulator)."""
    if pool is None or not a.contract or not a.pin:
        return "fail", {}
    async with pool.connection() as conn:
        r = await store.authorize_pin(
            conn, a.contract, a.pin, dt.datetime.now(dt.UTC), dry_run=dry_run
        )
    if r.outcome == "ok":
        return "ok", {
            "balance": r.balance,
            "currency": r.currency or "UAH",
            "contract_no": a.contract,
            "customer_id": r.customer_id,
        }
    if r.outcome == "locked":
        return "locked", {}
    return "fail", {"attempts_left": r.attempts_left}


async def crm_lookup(pool: AsyncConnectionPool[Any] | None, a: Lookup) -> dict[str, Any] | None:
    """A ``lookup`` node's CRM record (read only): the customer's card, the account, the
    service point (of the account, else of the caller) or a connection request."""
    if pool is None:
        return None
    if a.crm == "service_point":
        customer = int(a.customer) if a.customer.isdigit() else None
        async with pool.connection() as conn:
            sp = await utility.service_point(conn, contract_no=a.key, customer_id=customer)
        if sp is None:
            return None
        keys = ("contract_no", "customer_id", "address", "zones", "tariff", "meter",
                "last_day", "last_night")  # fmt: skip
        found = {k: sp[k] for k in keys}
        if sp["last_taken_at"] is not None:
            found["last_taken_at"] = sp["last_taken_at"].date().isoformat()
        return found
    if not a.key:
        return None
    async with pool.connection() as conn:
        if a.crm == "connection_request":
            language = a.language if a.language in utility.STAGE_NAMES else "en"
            return await utility.connection_request(conn, a.key, language)
        if a.crm == "customer":
            if not a.key.isdigit():
                return None
            return await store.customer_card(conn, int(a.key), dt.date.today())
        cur = await conn.execute(
            """SELECT contract_no, balance, currency, last_payment_at, last_payment_amount
               FROM accounts WHERE contract_no = %s""",
            (a.key,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    names = ("contract_no", "balance", "currency", "last_payment_at", "last_payment_amount")
    return dict(zip(names, row, strict=True))


async def fetch(pool: AsyncConnectionPool[Any] | None, a: Lookup) -> dict[str, Any]:
    """A lookup's variables; raises (TimeoutError, LookupError, OSError, ValueError) when
    the flow's fallback should follow."""
    return fields_of(await fetch_record(pool, a), a)


def fields_of(data: Any, a: Lookup) -> dict[str, Any]:
    return {var: _field(data, path) for var, path in a.fields}


async def fetch_record(pool: AsyncConnectionPool[Any] | None, a: Lookup) -> Any:
    """What a lookup found, whole (its fields are taken by ``fields_of``)."""
    if a.url is not None:
        data = await asyncio.wait_for(
            asyncio.to_thread(_http_json, a.url, a.timeout), a.timeout + 0.5
        )
    else:
        data = await asyncio.wait_for(crm_lookup(pool, a), a.timeout)
    if data is None:
        raise LookupError("nothing found")
    return data


_LOOKUP_MAX_BYTES = 65536


def _http_json(url: str, timeout: float) -> Any:
    """GET ``url``: its JSON (at most 64 KiB); an error status or non-JSON is a ValueError."""
    if not url.startswith(("http://", "https://")):  # the flow check's rule, kept here too
        raise ValueError("lookups are http:// or https://")
    req = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (scheme checked above)
        if r.status != 200:
            raise ValueError(f"HTTP {r.status}")
        body = r.read(_LOOKUP_MAX_BYTES + 1)
    if len(body) > _LOOKUP_MAX_BYTES:
        raise ValueError("answer larger than 64 KiB")
    return json.loads(body)


def _field(data: Any, path: str) -> Any:
    """``plan.name``, ``accounts.0.balance``: a field of nested objects and lists."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise LookupError(f"no field {path!r}")
    if isinstance(value, dict | list) or value is None:
        raise LookupError(f"field {path!r} is not a value")
    return value


_BACKGROUND: set[asyncio.Task[bool]] = set()  # voicemails kept after their call ended


def _beep() -> bytes:
    """The "speak after the tone" beep: 0.4 s of 1 kHz, 8 kHz PCM."""
    import math
    import struct

    n = int(0.4 * 8000)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 1000 * i / 8000))) for i in range(n)
    )


LISTEN_POLL = 0.25  # seconds between looks at what the caller said so far


def _wav_data(path: Path) -> bytes:
    """The caller's samples a recording has flushed so far (its header is rewritten at
    each flush)."""
    try:
        return _first_channel(path.read_bytes())
    except OSError:
        return b""


def _first_channel(wav: bytes) -> bytes:
    """The recorder's PCM16 WAV (44-byte header; a one-leg recording is stereo with the
    other side silent): its first channel."""
    if len(wav) < 44:
        return b""
    channels = int.from_bytes(wav[22:24], "little") or 1
    data = wav[44:]
    if channels == 1:
        return data
    samples = np.frombuffer(data[: len(data) // (2 * channels) * 2 * channels], dtype="<i2")
    return bytes(samples[::channels].tobytes())


async def _final_wav_data(path: Path, wait: float = 2.0) -> bytes:
    """The caller's samples of a stopped recording, once the writer has closed it (its
    header's data size matches the file)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    while True:
        data = await asyncio.to_thread(path.read_bytes)
        done = len(data) >= 44 and int.from_bytes(data[40:44], "little") == len(data) - 44
        if done or loop.time() >= until:
            return await asyncio.to_thread(_first_channel, data)
        await asyncio.sleep(0.05)


def _pcm8k(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        if w.getframerate() != 8000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: prompts are 8 kHz 16-bit mono WAV")
        return bytes(w.readframes(w.getnframes()))
