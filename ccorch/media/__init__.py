"""The Python face of the Rust media engine: typed events delivered on the asyncio loop.

The engine (``ccorch._core.MediaEngine``) runs its own threads and sockets. When it has
events it writes one byte to a pipe; :class:`MediaEvents` watches that pipe with
``loop.add_reader`` and fans the decoded events out to subscribers' queues, so the loop is
never blocked and no part polls.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccorch._core import MediaEngine

__all__ = [
    "AmdResult",
    "DtmfDigit",
    "MediaEngine",
    "MediaEvent",
    "MediaEvents",
    "MediaTimeout",
    "PlaybackFinished",
    "RecordingFailed",
    "RecordingStopped",
    "RtcpBye",
    "WebRtcState",
    "decode_event",
    "raise_open_file_limit",
]


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    leg: int
    digit: str
    duration_ms: int
    source: str  # "rfc4733" or "inband"


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    leg: int
    silent_ms: int


@dataclass(frozen=True, slots=True)
class AmdResult:
    leg: int
    result: str  # "human", "machine" or "silence"
    reason: str
    decision_ms: int
    words: int


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    leg: int
    play_id: int
    reason: str  # "done", "stopped" or "barge_in"


@dataclass(frozen=True, slots=True)
class RtcpBye:
    leg: int


@dataclass(frozen=True, slots=True)
class WebRtcState:
    """A browser leg's session connected (ICE and DTLS done), or failed with the reason."""

    leg: int
    connected: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingStopped:
    recording: int
    path: Path
    duration_ms: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    recording: int
    error: str


MediaEvent = (
    DtmfDigit
    | MediaTimeout
    | AmdResult
    | PlaybackFinished
    | RtcpBye
    | WebRtcState
    | RecordingStopped
    | RecordingFailed
)

_DECODERS: dict[str, Callable[..., MediaEvent]] = {
    "dtmf": DtmfDigit,
    "media_timeout": MediaTimeout,
    "amd": AmdResult,
    "playback_finished": PlaybackFinished,
    "rtcp_bye": RtcpBye,
    "webrtc_state": WebRtcState,
    "recording_stopped": lambda rec, path, ms, size: RecordingStopped(rec, Path(path), ms, size),
    "recording_failed": RecordingFailed,
}


def decode_event(raw: tuple[Any, ...]) -> MediaEvent:
    """Turn one tuple from ``MediaEngine.drain_events`` into its typed event."""
    kind, *fields = raw
    return _DECODERS[kind](*fields)


class MediaEvents:
    """Delivers a media engine's events to asyncio subscribers."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self._fd = engine.events_fd()
        self._queues: list[asyncio.Queue[MediaEvent]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching the engine's wake-up pipe on ``loop`` (the running loop by default)."""
        self._loop = loop or asyncio.get_running_loop()
        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._on_readable)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def subscribe(self) -> asyncio.Queue[MediaEvent]:
        q: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[MediaEvent]) -> None:
        self._queues.remove(q)

    def _on_readable(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.dispatch()

    def dispatch(self) -> list[MediaEvent]:
        """Drain the engine now and hand every event to every subscriber."""
        events = [decode_event(raw) for raw in self.engine.drain_events()]
        for q in self._queues:
            for e in events:
                q.put_nowait(e)
        return events


def raise_open_file_limit(wanted: int) -> int:
    """Each leg holds two sockets: raise the soft descriptor limit toward ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
