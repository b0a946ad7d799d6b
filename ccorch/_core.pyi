"""Type stubs for the native extension built from core-rs/py (checked in CI by mypy and stubtest)."""

import os
from typing import Any, final

__all__ = [
    "Acd",
    "DialerPacer",
    "MediaEngine",
    "__version__",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "erlang_c_forecast",
    "g711_decode",
    "g711_encode",
    "g711_transcode",
    "simulate_campaign",
    "sip_is_ack_of_refusal",
    "sip_refuse_new_invite",
    "sip_split",
    "staffing_erlang_a",
    "staffing_erlang_c",
]

__version__: str

def g711_encode(pcm: bytes | bytearray, law: str) -> bytes:
    """Encode little-endian signed 16-bit PCM into G.711 codes of ``law`` ("PCMU" or "PCMA").

    Raises ``ccorch.errors.CodecError`` for an odd byte count or an unknown law.
    """

def g711_decode(codes: bytes | bytearray, law: str) -> bytes:
    """Decode G.711 codes of ``law`` into little-endian signed 16-bit PCM."""

def g711_transcode(codes: bytes | bytearray, src: str, dst: str) -> bytes:
    """Convert G.711 codes from law ``src`` to law ``dst``."""

def sip_split(data: bytes) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """The start line, headers and body of a well-formed SIP message, else None."""

def sip_refuse_new_invite(
    data: bytes,
    source_host: str,
    source_port: int,
    status: int,
    reason: str,
    retry_after: int,
) -> tuple[str, bytes, int | None] | None:
    """Refuse a new INVITE straight from its datagram: ``(server transaction key, response,
    port)`` where port None means the source's (rport), else None for anything that is not
    a well-formed new INVITE (the full parser's job)."""

def sip_is_ack_of_refusal(data: bytes) -> bool:
    """Whether ``data`` is the ACK of a response made by ``sip_refuse_new_invite``."""

@final
class Acd:
    """The skill-based ACD: a sans-IO state machine; every method takes ``now_ms``."""

    def __new__(cls, seed: int = 0) -> Acd: ...
    def add_queue(
        self,
        name: str,
        skills: str,
        *,
        strategy_name: str = "longest_idle",
        expansions: list[tuple[int, str]] = ...,
        priority_weight: int = 0,
        sl_threshold_ms: int = 20000,
        wrap_up_ms: int = 10000,
        offer_timeout_ms: int = 15000,
        max_wait_ms: int | None = None,
        max_length: int | None = None,
        overflow_queue: int | None = None,
        overflow_external: int | None = None,
        missed_offers_to_not_ready: int = 1,
        stats_window_ms: int = 900000,
        expected_handle_ms: int = 180000,
    ) -> int: ...
    def login(
        self, now_ms: int, agent: int, skills: list[tuple[str, int]], queues: list[int]
    ) -> None: ...
    def set_ready(self, now_ms: int, agent: int) -> None: ...
    def set_not_ready(self, now_ms: int, agent: int, reason: int) -> None: ...
    def end_wrap_up(self, now_ms: int, agent: int) -> None: ...
    def extend_wrap_up(self, now_ms: int, agent: int, extra_ms: int) -> int: ...
    def logout(self, now_ms: int, agent: int) -> None: ...
    def enqueue(
        self,
        now_ms: int,
        call: int,
        queue: int,
        priority: int = 0,
        preferred: list[tuple[int, int]] = ...,
        waited_ms: int = 0,
    ) -> None: ...
    def answer(self, now_ms: int, call: int) -> None: ...
    def reject(self, now_ms: int, call: int) -> None: ...
    def hangup(self, now_ms: int, call: int) -> None: ...
    def withdraw(self, now_ms: int, call: int) -> None: ...
    def end_call(self, now_ms: int, call: int) -> None: ...
    def handle_timeout(self, now_ms: int) -> None: ...
    def next_timeout(self) -> int | None: ...
    def poll_actions(self) -> list[tuple[Any, ...]]: ...
    def agent_state(self, agent: int) -> tuple[str, int | None] | None: ...
    def ready_order(self, queue: int) -> list[int]: ...
    def serving_agent(self, call: int) -> int | None: ...
    def position(self, call: int) -> int | None: ...
    def estimated_wait(self, now_ms: int, call: int) -> float | None: ...
    def queue_estimated_wait(self, now_ms: int, queue: int) -> float | None: ...
    def queue_stats(self, now_ms: int, queue: int) -> dict[str, Any]: ...
    def agent_stats(self, now_ms: int, agent: int) -> dict[str, Any]: ...
    def check_invariants(self) -> str | None: ...
    @property
    def waiting_calls(self) -> int: ...
    @property
    def logged_in_agents(self) -> int: ...

def erlang_b(agents: int, traffic: float) -> float: ...
def erlang_c(agents: int, traffic: float) -> float: ...
def erlang_c_forecast(
    agents: int, traffic: float, aht_seconds: float, sl_seconds: float
) -> dict[str, float]: ...
def erlang_a(
    agents: int,
    calls_per_hour: float,
    aht_seconds: float,
    patience_seconds: float,
    sl_seconds: float,
) -> dict[str, float]: ...
def staffing_erlang_c(
    traffic: float,
    aht_seconds: float,
    *,
    service_level: float | None = None,
    within_seconds: float | None = None,
    asa_seconds: float | None = None,
) -> int: ...
def staffing_erlang_a(
    calls_per_hour: float,
    aht_seconds: float,
    patience_seconds: float,
    *,
    service_level: float | None = None,
    within_seconds: float | None = None,
    asa_seconds: float | None = None,
    abandon_rate: float | None = None,
) -> int: ...

@final
class DialerPacer:
    """The campaign's pacer (sans-IO): feed it events, ask how many numbers to dial."""

    def __new__(
        cls,
        mode_name: str,
        *,
        ratio: float | None = None,
        max_abandon_rate: float = 0.03,
        aim_abandon_rate: float = 0.025,
        amd_false_positive_share: float = 0.02,
        prior_live_probability: float = 0.25,
        prior_ring_seconds: float = 10.0,
        prior_talk_seconds: float = 120.0,
        prior_wrap_seconds: float = 10.0,
        utc_offset_minutes: int = 0,
        warm_up_live: int = 0,
    ) -> DialerPacer: ...
    def handle(
        self,
        now_ms: int,
        kind: str,
        id: int,
        *,
        agent: int | None = None,
        human: bool | None = None,
    ) -> None: ...
    def dials(self, now_ms: int) -> int: ...
    def abandon_rate_24h(self, now_ms: int) -> float | None: ...
    def abandon_rate_30d(self, now_ms: int) -> float | None: ...

def simulate_campaign(
    scenario: dict[str, Any], pacer: str, seed: int = 1, days: int = 1, *, warm_up_live: int = 0
) -> dict[str, Any]: ...

@final
class MediaEngine:
    """The RTP media engine: legs, rooms (bridges, conferences), recordings, prompts, DTMF, AMD.

    Errors raise ``ccorch.errors.MediaError``.
    """

    def __new__(
        cls,
        *,
        bind_ip: str = "127.0.0.1",
        port_min: int = 10000,
        port_max: int = 20000,
        shards: int = 1,
        passthrough: bool = True,
        browser_opus: bool = True,
    ) -> MediaEngine: ...
    def allocate_leg(
        self,
        group: int,
        *,
        law: str = "PCMU",
        dtmf_pt: int | None = ...,
        inband_dtmf: bool = False,
        media_timeout_ms: int = 30000,
        symmetric: bool = True,
        jitter_min_ms: int = 20,
        jitter_max_ms: int = 200,
    ) -> tuple[int, int]: ...
    def allocate_webrtc_leg(
        self, group: int, offer: str | None = None, *, media_timeout_ms: int = 30000
    ) -> tuple[int, int, str]: ...
    def webrtc_accept_offer(self, leg: int, offer: str) -> str: ...
    def webrtc_offer(self, leg: int, direction: str = "sendrecv") -> str: ...
    def webrtc_accept_answer(self, leg: int, answer: str) -> None: ...
    def release_leg(self, leg: int) -> None: ...
    def set_remote(self, leg: int, host: str, port: int, rtcp_port: int | None = None) -> None: ...
    def set_codec(self, leg: int, law: str, dtmf_pt: int | None = ...) -> None: ...
    def set_inband_dtmf(self, leg: int, on: bool) -> None: ...
    def set_srtp(self, leg: int, local: bytes, remote: bytes) -> None: ...
    def set_media_timeout(self, leg: int, ms: int) -> None: ...
    def play_file(
        self, leg: int, path: str | os.PathLike[str], *, loop_: bool = False, barge_in: bool = False
    ) -> int: ...
    def play_pcm(
        self, leg: int, pcm: bytes | bytearray, *, loop_: bool = False, barge_in: bool = False
    ) -> int: ...
    def stop_playback(self, leg: int) -> None: ...
    def send_dtmf(self, leg: int, digits: str, duration_ms: int = 100) -> None: ...
    def start_amd(
        self,
        leg: int,
        *,
        initial_silence_ms: int = 2500,
        greeting_ms: int = 1500,
        after_greeting_silence_ms: int = 800,
        total_analysis_ms: int = 5000,
        min_word_length_ms: int = 100,
        between_words_silence_ms: int = 50,
        maximum_words: int = 3,
        silence_threshold: int = 256,
    ) -> None: ...
    def create_room(self, group: int) -> int: ...
    def join_room(
        self, room: int, leg: int, mode: str = "full", whisper_to: int | None = None
    ) -> None: ...
    def leave_room(self, room: int, leg: int) -> None: ...
    def destroy_room(self, room: int) -> None: ...
    def bridge(self, a: int, b: int) -> int: ...
    def start_recording(
        self, path: str | os.PathLike[str], left: int | None, right: int | None = None
    ) -> int: ...
    def pause_recording(self, recording: int, paused: bool) -> None: ...
    def set_recording_sources(
        self, recording: int, left: int | None, right: int | None = None
    ) -> None: ...
    def stop_recording(self, recording: int) -> None: ...
    def leg_stats(self, leg: int) -> dict[str, Any]: ...
    def stats(self, reset: bool = False) -> dict[str, Any]: ...
    def events_fd(self) -> int: ...
    def drain_events(self) -> list[tuple[Any, ...]]: ...
    def shutdown(self) -> None: ...
