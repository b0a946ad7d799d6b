"""Time per state, for reports: each stretch an operator spent in one ACD state (and, for
Not ready, its reason) goes to ``agent_state_time`` when the stretch ends.

The ACD's ``AgentChanged`` events drive it (every change, whoever caused it: the operator,
a supervisor, a call, a timer). Ended stretches are written in batches every second; at a
clean stop the open ones are closed at that moment. What a crash loses: the stretches that
ended in the last second, and the open ones (the node cannot know when they ended).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ccorch.acd import AgentChanged

log = logging.getLogger(__name__)

# extension, state, reason, started, ended, the call (busy and its wrap-up)
Stretch = tuple[str, str, str | None, dt.datetime, dt.datetime, int | None]


class AgentStateTime:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        reason_name: Callable[[int | None], str | None],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.pool = pool
        self.reason_name = reason_name
        self.clock = clock
        self.open: dict[str, tuple[str, str | None, dt.datetime, int | None]] = {}
        self.ended: list[Stretch] = []

    def on_event(self, ev: Any) -> None:
        """An ACD listener: close the agent's open stretch, open the next."""
        if not isinstance(ev, AgentChanged):
            return
        ext = str(ev.agent)
        reason = self.reason_name(ev.detail) if ev.state == "not_ready" else None
        now = self.clock()
        was = self.open.get(ext)
        if was is not None and was[:2] == (ev.state, reason):
            return  # the same state with a new detail (a wrap-up extended): one stretch
        if was is not None:
            self.ended.append((ext, was[0], was[1], was[2], now, was[3]))
        # busy: detail is the call; its wrap-up follows that call
        call = ev.detail if ev.state == "busy" else None
        if ev.state == "wrap_up" and was is not None and was[0] == "busy":
            call = was[3]
        if ev.state == "logged_out":
            self.open.pop(ext, None)
        else:
            self.open[ext] = (ev.state, reason, now, call)

    async def flush(self) -> int:
        batch, self.ended = self.ended, []
        if not batch:
            return 0
        try:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO agent_state_time
                       (extension, state, reason, started_at, ended_at, call_ref)
                       VALUES (%s, %s, %s, %s, %s, %s)""",
                    batch,
                )
        except Exception as e:  # the database is away: keep them for the next try
            self.ended = batch + self.ended
            log.warning("agent state time not written", extra={"error": str(e)})
            return 0
        return len(batch)

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            await self.flush()

    async def close(self) -> None:
        """At a clean stop: the open stretches end now."""
        now = self.clock()
        for ext, (state, reason, since, call) in self.open.items():
            self.ended.append((ext, state, reason, since, now, call))
        self.open.clear()
        await self.flush()
