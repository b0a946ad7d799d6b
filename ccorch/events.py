"""The node's live event stream: what happens to calls, agents and queues, in order.

Every event gets the node's next sequence number. The last ``buffer`` events are kept, so a
client that lost its connection asks again from the last number it saw and gets what it
missed exactly once; further back than the buffer it is told to take a fresh snapshot
(``resync``). A subscriber that does not keep up is cut off (its queue full), never slowing
the publisher: the calls that publish must not wait for a browser.

``EventStream`` is the interface users depend on; ``InProcessStream`` is this node's
implementation (a broker between nodes can implement the same later).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    seq: int
    type: str  # "call.arrived", "call.answered", "agent.state", ...
    at: float  # Unix time, seconds
    data: dict[str, Any]
    # who may see it besides supervisors: the operators (extensions) and queues concerned
    agents: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()

    @functools.cached_property
    def text(self) -> str:
        """The frame as JSON, encoded once however many clients it goes to."""
        return json.dumps(self.wire(), ensure_ascii=False, default=str)

    def wire(self) -> dict[str, Any]:
        # the stream's own fields win: a source's "at" (a monotonic clock) is not wall time
        return {**self.data, "seq": self.seq, "type": self.type, "at": self.at}


class Subscription:
    """One reader's queue; ``cut`` is set when it fell too far behind and was dropped."""

    def __init__(
        self,
        backlog: list[Event],
        resync: bool,
        maxsize: int,
        wants: Callable[[Event], bool] | None = None,
    ) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.wants = wants  # the reader's filter (its role's view), applied when published
        self.backlog = [e for e in backlog if wants is None or wants(e)]
        self.resync = resync  # what it asked for is older than the buffer
        self.cut = False

    def offer(self, ev: Event) -> bool:
        """Queue the event if the reader wants it (an event it does not see wakes nobody);
        False when the reader is too far behind."""
        if self.wants is not None and not self.wants(ev):
            return True
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.cut = True
            return False
        return True


class EventStream(Protocol):
    def publish(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        agents: Iterable[str] = (),
        queues: Iterable[str] = (),
    ) -> Event: ...

    def subscribe(
        self, since: int | None = None, wants: Callable[[Event], bool] | None = None
    ) -> Subscription: ...

    def unsubscribe(self, sub: Subscription) -> None: ...

    @property
    def last_seq(self) -> int: ...


_NONE: frozenset[str] = frozenset()


def _set_of(names: Iterable[str]) -> frozenset[str]:
    """Most events concern no operator or no queue: they share one empty set (two new
    ones per event were ~4 MiB of the 10,000 kept)."""
    return frozenset(names) or _NONE


@dataclass
class InProcessStream:
    buffer: int = 10_000
    queue_size: int = 1_000  # events a subscriber may lag before it is cut off
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _kept: deque[Event] = field(init=False)
    _subs: set[Subscription] = field(default_factory=set)
    cut_off: int = 0  # subscribers dropped for lagging

    def __post_init__(self) -> None:
        self._kept = deque(maxlen=self.buffer)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def last_seq(self) -> int:
        return self._kept[-1].seq if self._kept else 0

    def publish(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        agents: Iterable[str] = (),
        queues: Iterable[str] = (),
    ) -> Event:
        ev = Event(next(self._seq), type_, time.time(), data, _set_of(agents), _set_of(queues))
        self._kept.append(ev)
        for sub in list(self._subs):
            if not sub.offer(ev):
                self._subs.discard(sub)
                self.cut_off += 1
        return ev

    def subscribe(
        self, since: int | None = None, wants: Callable[[Event], bool] | None = None
    ) -> Subscription:
        """From now on; with ``since``, first every kept event after that number. ``wants``:
        only the events it accepts are queued (and replayed)."""
        backlog: list[Event] = []
        resync = False
        if since is not None:
            oldest = self._kept[0].seq if self._kept else self.last_seq + 1
            resync = since < oldest - 1
            backlog = [e for e in self._kept if e.seq > since]
        sub = Subscription(backlog, resync, self.queue_size, wants)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
