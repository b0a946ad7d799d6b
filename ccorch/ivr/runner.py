"""Runs one call's IVR session: the I/O around the sans-IO interpreter.

Inputs (keys and prompt ends from the media engine, timers, CRM answers) are handled one at
a time by the call's own task, in arrival order, so the interpreter never sees two at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from ccorch.crm import store
from ccorch.ivr import tts
from ccorch.ivr.interpreter import (
    Action,
    Authorize,
    Hangup,
    Play,
    Prompt,
    Session,
    StopPrompts,
    Transfer,
    Visited,
)
from ccorch.media import DtmfDigit, MediaEngine, PlaybackFinished

if TYPE_CHECKING:
    from ccorch.calls.b2bua import Call

log = logging.getLogger(__name__)


@dataclass
class IvrDeps:
    media: MediaEngine
    pool: AsyncConnectionPool | None
    tts_dir: Path


class IvrRunner:
    def __init__(self, call: Call, session: Session, deps: IvrDeps, leg: int) -> None:
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

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"ivr-{self.call.id}")

    def stop(self) -> None:
        """The call ended (or left the IVR): no more actions."""
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def on_media(self, ev: object) -> None:
        if isinstance(ev, DtmfDigit):
            self.inputs.put_nowait(("digit", ev.digit))
        elif isinstance(ev, PlaybackFinished) and ev.reason == "done":
            self.inputs.put_nowait(("done", ev.play_id))

    def transfer_failed(self) -> None:
        self.inputs.put_nowait(("transfer_failed",))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._do(self.session.start(loop.time()))
            while not self.stopped:
                item = await self.inputs.get()
                now = loop.time()
                kind = item[0]
                if kind == "digit":
                    actions = self.session.on_digit(now, item[1])
                elif kind == "done":
                    actions = self.session.on_prompts_done(now) if item[1] == self.play_id else []
                elif kind == "timeout":
                    actions = self.session.on_timeout(now)
                elif kind == "auth":
                    actions = self.session.on_authorized(now, item[1], item[2])
                elif kind == "transfer_failed":
                    actions = self.session.on_transfer_failed(now)
                else:
                    actions = []
                await self._do(actions)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ivr failed", extra={"call": self.call.id})
            self.call.end_from(self.call.a, "ivr-error")

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
            elif isinstance(a, Play):
                pcm = await self._render(a.prompts)
                self.play_id = self.deps.media.play_pcm(self.leg, pcm, barge_in=a.barge_in)
            elif isinstance(a, StopPrompts):
                self.play_id = None
                self.deps.media.stop_playback(self.leg)
            elif isinstance(a, Authorize):
                outcome, values = await self._authorize(a)
                self.inputs.put_nowait(("auth", outcome, values))
            elif isinstance(a, Transfer):
                if not self.call.transfer_from_ivr(a.to):
                    self.inputs.put_nowait(("transfer_failed",))
            elif isinstance(a, Hangup):
                self.stopped = True
                self.call.end_from(self.call.a, f"ivr-{a.reason}")
                return
        self._arm()

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
        if self.deps.pool is None or not a.contract or not a.pin:
            return "fail", {}
        async with self.deps.pool.connection() as conn:
            r = await store.authorize_pin(conn, a.contract, a.pin, dt.datetime.now(dt.UTC))
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


def _pcm8k(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        if w.getframerate() != 8000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: prompts are 8 kHz 16-bit mono WAV")
        return bytes(w.readframes(w.getnframes()))
