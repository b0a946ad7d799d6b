"""The ACD in service: queues and agents from a TOML file, the Rust engine driven on the loop.

    [[queue]]
    name = "tech"
    skills = "tech"              # skill expression an agent must satisfy
    wrap_up_seconds = 10         # after-call work ("Работаю") before Ready again
    ring_seconds = 15            # how long an agent's phone rings before the call goes back
    strategy = "longest_idle"
    expected_handle_seconds = 180   # talk + wrap-up expected before calls were seen: where
                                    # the estimated wait starts (it then learns from calls)
    service_level_seconds = 20   # the service level counts calls answered within this
    service_level_target = 0.8   # the share of calls to answer so (wallboard, alarms)

    [[agent]]
    extension = "7001"           # the agent's SIP account; logged in while registered
    skills = { tech = 5 }
    queues = ["tech"]

The engine (``ccorch._core.Acd``) is sans-IO: this service gives it the loop's time in ms,
carries out its decisions (ring an agent, stop ringing) through the call controller, and
wakes it at ``next_timeout``. Agents are logged in and Ready while their phone is registered
(the desktop will add explicit states and reasons).
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ccorch._core import Acd
from ccorch.acd import (
    DEFAULT_REASONS,
    FIRST_CENTER_REASON,
    AgentChanged,
    CallLeft,
    Moved,
    Offer,
    Reason,
    RevokeOffer,
    decode,
)
from ccorch.errors import ConfigError

log = logging.getLogger(__name__)
ENGINE_WINDOW_FIELDS = (
    "entered", "answered", "abandoned", "service_level", "asa_seconds", "abandon_rate",
    "aht_seconds",
)  # fmt: skip
DEVICE_LOST = int(Reason.DEVICE_LOST)
OUTBOUND = int(Reason.OUTBOUND)


@dataclass(frozen=True)
class QueueConfig:
    name: str
    skills: str
    wrap_up_seconds: float = 10.0
    ring_seconds: float = 15.0
    strategy: str = "longest_idle"
    expected_handle_seconds: float = 180.0
    service_level_seconds: float = 20.0
    service_level_target: float = 0.8


@dataclass(frozen=True)
class AgentConfig:
    extension: str
    skills: dict[str, int] = field(default_factory=dict)
    queues: tuple[str, ...] = ()


def load_queues(path: Path) -> tuple[list[QueueConfig], list[AgentConfig]]:
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("queues file", src, f"valid TOML ({e})", src) from None
    queues: list[QueueConfig] = []
    for i, q in enumerate(data.get("queue", [])):
        try:
            queues.append(
                QueueConfig(
                    name=str(q["name"]),
                    skills=str(q["skills"]),
                    wrap_up_seconds=float(q.get("wrap_up_seconds", 10)),
                    ring_seconds=float(q.get("ring_seconds", 15)),
                    strategy=str(q.get("strategy", "longest_idle")),
                    expected_handle_seconds=float(q.get("expected_handle_seconds", 180)),
                    service_level_seconds=float(q.get("service_level_seconds", 20)),
                    service_level_target=float(q.get("service_level_target", 0.8)),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"queue[{i}]", q, f"name, skills and numbers ({e})", src) from None
        if not (
            0 < queues[-1].service_level_seconds <= 3600
            and 0 < queues[-1].service_level_target <= 1
        ):
            raise ConfigError(
                f"queue[{i}]",
                q,
                "service_level_seconds in (0, 3600] and service_level_target in (0, 1]",
                src,
            )
    names = {q.name for q in queues}
    agents: list[AgentConfig] = []
    for i, a in enumerate(data.get("agent", [])):
        try:
            agent = AgentConfig(
                extension=str(a["extension"]),
                skills={str(k): int(v) for k, v in dict(a.get("skills", {})).items()},
                queues=tuple(str(x) for x in a.get("queues", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"agent[{i}]", a, f"extension, skills and queues ({e})", src
            ) from None
        unknown = set(agent.queues) - names
        if unknown or not agent.extension.isdigit():
            raise ConfigError(
                f"agent[{i}]",
                a,
                f"a numeric extension and known queues (unknown: {sorted(unknown)})",
                src,
            )
        agents.append(agent)
    return queues, agents


class CallSide(Protocol):
    """What the ACD needs from a call (``ccorch.calls.call.Call`` provides it)."""

    id: int

    def offer_to_agent(self, extension: str, queue: str) -> bool: ...
    def revoke_offer(self, extension: str) -> None: ...
    def left_queue(self, outcome: str, waited_ms: int) -> None: ...


class AcdService:
    def __init__(self, queues: list[QueueConfig], agents: list[AgentConfig]) -> None:
        self.acd = Acd()
        self.queues = {q.name: q for q in queues}
        self.queue_ids: dict[str, int] = {}
        self.queue_names: dict[int, str] = {}
        for q in queues:
            qid = self.acd.add_queue(
                q.name,
                q.skills,
                strategy_name=q.strategy,
                wrap_up_ms=int(q.wrap_up_seconds * 1000),
                offer_timeout_ms=int(q.ring_seconds * 1000),
                expected_handle_ms=int(q.expected_handle_seconds * 1000),
                sl_threshold_ms=int(q.service_level_seconds * 1000),
            )
            self.queue_ids[q.name] = qid
            self.queue_names[qid] = q.name
        self.agents = {a.extension: a for a in agents}
        self.calls: dict[int, CallSide] = {}
        self.logged_in: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # operators whose phones may still be in a call of a node that died: not logged in
        # until their phone has answered the BYE that ends it (see ccorch.calls.recovery)
        self.held_back: set[str] = set()
        self.listeners: list[Callable[[Any], None]] = []  # typed ACD events, for metrics/desktop
        self.entry_listeners: list[Callable[[str], None]] = []  # a call joined this queue
        # supervision's figures of a queue (today, the last 15 min), added to its snapshot
        self.queue_figures: Callable[[str], dict[str, Any]] | None = None
        self.registered: Callable[[str], bool] = lambda extension: False
        # registration logs the agent in (no desktop needed); off: operators log in themselves
        self.auto_login = True
        self.working: dict[str, tuple[str, ...]] = {}  # the groups chosen for this shift
        self.desk: set[str] = set()  # logged in by the operator (desktop or API), not the phone
        self.reasons: dict[str, int] = {}  # the not-ready reasons operators choose: code
        self.set_reasons(DEFAULT_REASONS)
        self.wrap_up_extension_ms = 60_000  # how much longer "more time" makes a wrap-up

    def set_reasons(self, names: Sequence[str]) -> None:
        """The center's not-ready reasons, numbered in the order given (keep the order when
        adding one: a restart restores operators' reasons by name, reports keep names)."""
        self.reasons = {n: FIRST_CENTER_REASON + i for i, n in enumerate(names)}

    def reason_name(self, code: int | None) -> str | None:
        if code is None:
            return None
        for name, c in self.reasons.items():
            if c == code:
                return name
        try:
            return Reason(code).name.lower()
        except ValueError:
            return str(code)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()

    def now_ms(self) -> int:
        assert self._loop is not None
        return int((self._loop.time() - self._t0) * 1000)

    # --- agents ---

    def phone_registered(self, extension: str) -> None:
        """An agent's phone is reachable: with ``auto_login`` (the demo's way, no desktop)
        log the agent in to all its groups and make it Ready."""
        a = self.agents.get(extension)
        if a is None or extension in self.logged_in or extension in self.held_back:
            return
        if self.auto_login:
            self.login(extension, a.queues)

    def login(self, extension: str, queues: Sequence[str], *, ready: bool = True) -> None:
        """Log an operator in to ``queues`` (some of its configured groups) for this shift,
        Ready or Not ready; again while logged in: the groups change (a fresh login)."""
        a = self.agents[extension]
        unknown = set(queues) - set(a.queues)
        if unknown or not queues:
            raise ValueError(f"groups of {extension}: {sorted(a.queues)} (not {sorted(unknown)})")
        now = self.now_ms()
        if extension in self.logged_in:
            self.acd.logout(now, int(extension))
        self.acd.login(
            now, int(extension), list(a.skills.items()), [self.queue_ids[q] for q in queues]
        )
        self.working[extension] = tuple(queues)
        if ready:
            self.acd.set_ready(now, int(extension))
        self.logged_in.add(extension)
        log.info("agent logged in", extra={"agent": extension, "queues": list(queues)})
        self._pump()

    def set_ready(self, extension: str) -> None:
        self.acd.set_ready(self.now_ms(), int(extension))
        self._pump()

    def set_not_ready(self, extension: str, reason: int) -> None:
        """Not ready at once, or after the call in progress (the engine defers it)."""
        self.acd.set_not_ready(self.now_ms(), int(extension), reason)
        self._pump()

    def hold_for_outbound(self, extension: str) -> bool:
        """Keep a Ready operator from queue offers while the node dials a call for them (a
        preview they look at, a personal callback): Not ready (outbound) until
        ``end_outbound``. False when the operator is not Ready (nothing is held)."""
        state = self.agent_state(extension)
        if state is None or state[0] != "ready":
            return False
        self.set_not_ready(extension, OUTBOUND)
        return True

    def end_outbound(self, extension: str) -> None:
        """The call placed for the operator is over: Ready again, unless they chose another
        state meanwhile (a break asked for, logged out)."""
        if self.agent_state(extension) == ("not_ready", OUTBOUND):
            self.set_ready(extension)

    def end_wrap_up(self, extension: str) -> None:
        """The after-call work is done: Ready, or the Not ready asked for during the call."""
        self.acd.end_wrap_up(self.now_ms(), int(extension))
        self._pump()

    def extend_wrap_up(self, extension: str) -> float:
        """More after-call work (once per wrap-up): the seconds left until Ready."""
        now = self.now_ms()
        until = self.acd.extend_wrap_up(now, int(extension), self.wrap_up_extension_ms)
        self._pump()
        return (until - now) / 1000

    def logout(self, extension: str) -> None:
        self.acd.logout(self.now_ms(), int(extension))
        self.logged_in.discard(extension)
        self.working.pop(extension, None)
        self.desk.discard(extension)
        self._pump()

    def hold_back(self, extensions: set[str]) -> None:
        self.held_back |= extensions

    def release(self, extension: str, *, reachable: bool) -> None:
        """The operator's phone is out of the dead node's call: log in if it is reachable
        and registered (``registered`` tells), else wait for its next registration."""
        self.held_back.discard(extension)
        if reachable and self.registered(extension):
            self.phone_registered(extension)

    def phone_gone(self, extension: str) -> None:
        if extension not in self.logged_in:
            return
        if extension in self.desk:
            # logged in from the desktop: the person is still there, the device is not
            try:
                self.set_not_ready(extension, DEVICE_LOST)
            except Exception as e:  # already not ready for that reason
                log.info("agent device lost", extra={"agent": extension, "error": str(e)})
            return
        try:
            self.acd.logout(self.now_ms(), int(extension))
        except Exception as e:  # busy agents are logged out after their call by the next try
            log.info("agent logout deferred", extra={"agent": extension, "error": str(e)})
            return
        self.logged_in.discard(extension)
        self._pump()

    def queue_now(self, queue: str) -> dict[str, Any]:
        """The engine's count of a queue now (waiting, ringing, oldest wait, agents by
        state), without the expected wait or supervision's figures: for /metrics."""
        return dict(self.acd.queue_stats(self.now_ms(), self.queue_ids[queue]))

    def queue_snapshot(self, queue: str) -> dict[str, Any]:
        """A queue now: calls waiting and ringing, the oldest wait, its agents by state,
        the wait a new caller can expect, and the last window's service figures."""
        qid = self.queue_ids[queue]
        now = self.now_ms()
        stats = dict(self.acd.queue_stats(now, qid))
        stats["queue"] = queue
        stats["estimated_wait_seconds"] = self.acd.queue_estimated_wait(now, qid)
        if self.queue_figures is not None:
            # supervision's figures replace the engine's own window (same names on the
            # wallboard, /metrics and reports; short abandons left out of the rates)
            for key in ENGINE_WINDOW_FIELDS:
                stats.pop(key, None)
            stats.update(self.queue_figures(queue))
        return stats

    def agent_state(self, extension: str) -> tuple[str, int | None] | None:
        return self.acd.agent_state(int(extension)) if extension.isdigit() else None

    # --- calls ---

    def enqueue(
        self,
        call: CallSide,
        queue: str,
        priority: int = 0,
        preferred: Sequence[tuple[str, float]] = (),
        *,
        waited_ms: int = 0,
    ) -> bool:
        """Queue the call; ``preferred`` (extension, seconds): for so long from now, the
        call is offered only to these operators (the first of them Ready, in the order
        given; if logged in and serving this queue), then to anyone skilled.
        ``waited_ms``: what the caller waited already (a call an operator transfers back
        into a queue keeps its place and its wait). False if the queue is unknown or full."""
        qid = self.queue_ids.get(queue)
        if qid is None:
            return False
        self.calls[call.id] = call
        now = self.now_ms()
        # The engine takes each preference's end as a deadline on the service clock, not
        # as a duration: a duration read as a deadline expires once the node is older.
        known = [
            (int(ext), now + int(seconds * 1000))
            for ext, seconds in preferred
            if ext in self.logged_in and queue in self.agents[ext].queues and seconds > 0
        ]
        try:
            self.acd.enqueue(now, call.id, qid, priority, known, waited_ms)
        except Exception as e:  # a full queue without overflow, the call queued already
            log.info("call not queued", extra={"call": call.id, "queue": queue, "error": str(e)})
            self.calls.pop(call.id, None)
            return False
        for listener in self.entry_listeners:
            listener(queue)
        self._pump()
        return True

    def estimated_wait(self, call: CallSide) -> float | None:
        """Seconds the call can expect to wait (the ACD's Erlang A estimate, see
        ``core-rs/acd/src/ewt.rs``); 0.0 when it is not waiting any more (an operator's
        phone is ringing for it: it is being connected); None when the wait is unknown
        (nobody works its queue: every operator logged out or not ready)."""
        if self.acd.position(call.id) is None:
            return 0.0 if call.id in self.calls else None
        return self.acd.estimated_wait(self.now_ms(), call.id)

    def position(self, call: CallSide) -> int | None:
        return self.acd.position(call.id)

    def answered(self, call: CallSide) -> None:
        self.acd.answer(self.now_ms(), call.id)
        self._pump()

    def not_answered(self, call: CallSide) -> None:
        """The offered agent did not take it (busy, declined, failed): back to its place."""
        self.acd.reject(self.now_ms(), call.id)
        self._pump()

    def withdraw(self, call: CallSide) -> None:
        """The caller took another way out (voicemail, callback): not an abandon."""
        if call.id in self.calls:
            self.acd.withdraw(self.now_ms(), call.id)
            self._pump()

    def caller_gone(self, call: CallSide) -> None:
        if call.id in self.calls:
            self.acd.hangup(self.now_ms(), call.id)
            self._pump()

    def call_ended(self, call: CallSide) -> None:
        """A served call ended: its agent goes to wrap-up."""
        if self.acd.serving_agent(call.id) is not None:
            self.acd.end_call(self.now_ms(), call.id)
        self.calls.pop(call.id, None)
        self._pump()

    # --- the engine's decisions ---

    def _pump(self) -> None:
        for raw in self.acd.poll_actions():
            ev = decode(raw)
            for listener in self.listeners:
                listener(ev)
            if isinstance(ev, Offer):
                call = self.calls.get(ev.call)
                ext = str(ev.agent)
                if call is None or not call.offer_to_agent(ext, self.queue_names.get(ev.queue, "")):
                    self.acd.reject(self.now_ms(), ev.call)
            elif isinstance(ev, RevokeOffer):
                call = self.calls.get(ev.call)
                if call is not None:
                    call.revoke_offer(str(ev.agent))
            elif isinstance(ev, CallLeft):
                call = self.calls.get(ev.call)
                if call is not None:
                    if ev.outcome != "answered":
                        self.calls.pop(ev.call, None)
                    call.left_queue(ev.outcome, ev.waited_ms)
            elif isinstance(ev, AgentChanged | Moved):
                log.info("acd", extra={"event": repr(ev)})
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self.acd.next_timeout()
        if t is not None and self._loop is not None:
            self._timer = self._loop.call_at(self._t0 + t / 1000, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.acd.handle_timeout(self.now_ms())
        self._pump()


__all__ = ["AcdService", "AgentConfig", "QueueConfig", "load_queues"]
