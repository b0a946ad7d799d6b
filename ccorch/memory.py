"""When the node runs a full collection of Python's cyclic garbage.

A call is a web of objects that refer to each other (the call and its legs, each leg and its
dialog and transactions), so it is freed by the cyclic collector, not when its last
reference goes. After start-up the node freezes what it loaded and lets the collector run
rarely (``app._freeze_startup_objects``: with the defaults the collector took ~20% of a
call's CPU). A call outlives the young generations, and the full collection that would free
it came after millions of allocations: under load every ended call stayed, the heap grew to
hold thousands of them (3,151 of 3,151 ended calls were still in memory after a 15 s step at
300 calls/s), and the freed heap stayed fragmented, so the node's memory never went back
to its idle level.

The rule here: collect fully once ``every_calls`` calls have ended since the last collection,
or ``every_seconds`` after one when fewer did, and go on for ``tail_seconds`` after the last
call ended: a request still waiting for its answer (a BYE the far end never answers) keeps
its transaction, and so its call, for up to 32 s (Timer F), and only then is the call garbage.
Pure: counts and times in, a decision out; ``watch`` applies it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class CyclePolicy:
    def __init__(
        self, *, every_calls: int = 500, every_seconds: float = 5.0, tail_seconds: float = 40.0
    ) -> None:
        self.every_calls = every_calls
        self.every_seconds = every_seconds
        self.tail_seconds = tail_seconds
        self._ended_at_last = 0  # calls ended by the last collection
        self._last = 0.0  # when it ran
        self._last_end_seen = 0  # the count when it last changed...
        self._last_end_at: float | None = None  # ...and when

    def due(self, now: float, ended: int) -> bool:
        """Whether to collect now, ``ended`` being how many calls have ended so far."""
        if ended != self._last_end_seen:
            self._last_end_seen, self._last_end_at = ended, now
        if self._last_end_at is None:
            return False  # no call has ended yet: nothing of theirs to collect
        since = ended - self._ended_at_last
        if since >= self.every_calls:
            return True
        if now - self._last < self.every_seconds:
            return False
        # a few calls ended, or none but the last ones' transactions have just let them go
        return since > 0 or now - self._last_end_at <= self.tail_seconds

    def collected(self, now: float, ended: int) -> None:
        self._ended_at_last, self._last = ended, now


async def watch(
    ended: Callable[[], int],
    policy: CyclePolicy | None = None,
    *,
    period: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Apply ``policy`` every ``period`` seconds, ``ended()`` giving the calls ended so far."""
    policy = policy or CyclePolicy()
    while True:
        await asyncio.sleep(period)
        now, n = clock(), ended()
        if policy.due(now, n):
            t = time.perf_counter()
            found = gc.collect()
            policy.collected(clock(), n)
            log.debug(
                "garbage collected",
                extra={"objects": found, "ms": round(1000 * (time.perf_counter() - t), 2)},
            )
