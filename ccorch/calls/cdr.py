"""Call detail records and the customer's history, written when a call ends.

One transaction per call: the CDR row and, when the caller was identified, an interaction in
the customer's history (channel ``call``, the queue, how it ended). The call controller
releases the call's media only once its record is committed (:class:`CdrSink`). When the
database cannot take it (after retries), the record goes to a local spool file, fsynced,
and is replayed at the next start; a unique key on (Call-ID, arrival) makes a replay or a
retry after a lost acknowledgement write nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ccorch.db.pool import autocommit

log = logging.getLogger(__name__)


@dataclass
class Cdr:
    call_ref: int
    sip_call_id: str
    ani: str
    dnis: str
    origin: str
    flow: str | None
    queue: str | None
    agent: str | None
    customer_id: int | None
    outcome: str
    status: int
    arrived_at: dt.datetime
    ivr_ended_at: dt.datetime | None
    queued_at: dt.datetime | None
    offered_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime
    waited_ms: int | None
    talk_seconds: float
    recording_path: str | None = None
    disposition: str | None = None  # the operator's wrap-up code
    note: str | None = None
    direction: str = "in"  # "out": an operator's click-to-dial
    # stretches of the recording paused by the operator, [from_ms, to_ms] from its start
    recording_gaps: list[list[int]] = field(default_factory=list)
    queue_outcome: str | None = None  # how it left its last queue, as the ACD decided
    hold_seconds: float = 0.0  # on hold by the operator (part of talk_seconds)
    case_id: int | None = None  # the case the call is about (a callback's): its interaction's


_COLUMNS = [c for c in Cdr.__dataclass_fields__ if c not in ("recording_gaps", "case_id")]


# The CDR, its recording, the interaction in the customer's history and the guided-service
# steps joining it, as one statement: one round trip, atomic on its own (autocommit), and
# nothing after the CDR when the CDR was already there (a replay, a retry).
_WRITE = f"""
WITH cdr AS (
    INSERT INTO cdrs ({", ".join(_COLUMNS)})
    VALUES ({", ".join(f"%(c_{c})s" for c in _COLUMNS)})
    ON CONFLICT (sip_call_id, arrived_at) DO NOTHING RETURNING id
), rec AS (
    INSERT INTO recordings (path, kind, sip_call_id, customer_id, created_at, gaps)
    SELECT %(rec_path)s::text, 'call', %(c_sip_call_id)s, %(c_customer_id)s::bigint,
           %(rec_created)s::timestamptz, %(rec_gaps)s
      FROM cdr WHERE %(rec_path)s::text IS NOT NULL
    ON CONFLICT (path) DO UPDATE SET path = EXCLUDED.path RETURNING id
), interaction AS (
    INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at, queue,
                              agent_id, disposition, notes, recording_id, cdr_id, case_id)
    SELECT %(c_customer_id)s::bigint, 'call', %(c_direction)s, %(c_arrived_at)s,
           %(c_ended_at)s, %(c_queue)s,
           -- the CRM user whose phone is the extension that answered
           (SELECT id FROM users WHERE extension = %(c_agent)s::text),
           %(disposition)s::text, %(notes)s::text, (SELECT id FROM rec), cdr.id,
           %(case_id)s::bigint
      FROM cdr WHERE %(c_customer_id)s::bigint IS NOT NULL
    RETURNING id
), steps AS (
    -- the guided-service steps the operator took on the call join its interaction
    UPDATE service_steps s SET interaction_id = interaction.id FROM interaction
     WHERE s.sip_call_id = %(c_sip_call_id)s AND s.call_arrived_at = %(c_arrived_at)s
       AND s.interaction_id IS NULL
)
SELECT id FROM cdr
"""


async def write(
    pool: AsyncConnectionPool, cdr: Cdr, acquire_timeout: float | None = None
) -> int | None:
    """Insert the CDR (and the interaction): its id, or None when it was already there.
    ``acquire_timeout``: the longest wait for a pooled connection (default: the pool's)."""
    params: dict[str, Any] = {f"c_{c}": getattr(cdr, c) for c in _COLUMNS}
    params |= {
        "rec_path": cdr.recording_path or None,
        "rec_created": cdr.answered_at or cdr.arrived_at,
        "rec_gaps": Jsonb(cdr.recording_gaps or []),
        "disposition": cdr.disposition or cdr.outcome,
        "notes": cdr.note or f"DNIS {cdr.dnis}" + (f", operator {cdr.agent}" if cdr.agent else ""),
        "case_id": cdr.case_id,
    }
    async with autocommit(pool, acquire_timeout=acquire_timeout) as conn:
        cur = await conn.execute(_WRITE, params)
        got = await cur.fetchone()
    return None if got is None else int(got[0])


_FIELDS = tuple(f.name for f in fields(Cdr))


def json_ready(cdr: Cdr) -> dict[str, Any]:
    """The record as JSON types (times as ISO 8601). Field by field, not ``asdict``: that
    deep-copies every value, and the journal takes this at every answer of every call."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        v = getattr(cdr, name)
        out[name] = v.isoformat() if isinstance(v, dt.datetime) else v
    return out


def to_json(cdr: Cdr) -> str:
    return json.dumps(json_ready(cdr), ensure_ascii=False)


_TIMES = {f.name for f in fields(Cdr) if "datetime" in str(f.type)}


def from_json(line: str) -> Cdr:
    raw: dict[str, Any] = json.loads(line)
    values: dict[str, Any] = {
        k: dt.datetime.fromisoformat(v) if k in _TIMES and v is not None else v
        for k, v in raw.items()
    }
    return Cdr(**values)


class CdrSink:
    """Where ended calls' records go: the database, or the spool until it is back."""

    # The database gets this long, over several attempts, before the record is spooled.
    # Each attempt is bounded on its own: the pool's acquire timeout (5 s by default) once
    # made three attempts take ~18 s while the caller's media and the operator waited.
    BUDGET_SECONDS = 3.0
    PAUSES = (0.1, 0.3, 0.6)  # between attempts

    def __init__(self, pool: AsyncConnectionPool, spool: Path) -> None:
        self.pool = pool
        self.spool = spool
        self.written = 0
        self.spooled = 0
        # told each record once it is durable (supervision's handle times)
        self.listeners: list[Callable[[Cdr], None]] = []

    async def commit(self, cdr: Cdr) -> int | None:
        """Returns once the record is durable: committed (its id), or fsynced to the spool
        (None; after at most ``BUDGET_SECONDS`` of trying the database)."""
        cdr_id = await self._commit(cdr)
        for listener in self.listeners:
            listener(cdr)
        return cdr_id

    async def _commit(self, cdr: Cdr) -> int | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.BUDGET_SECONDS
        error: BaseException | None = None
        for pause in (*self.PAUSES, None):
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                # A lost answer after a commit is harmless: the replay writes nothing twice.
                cdr_id = await asyncio.wait_for(write(self.pool, cdr, acquire_timeout=left), left)
                self.written += 1
                return cdr_id
            except Exception as e:  # down, slow beyond the budget, or refused the row
                error = e
            if pause is not None:
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        await asyncio.to_thread(self._append, cdr)
        self.spooled += 1
        log.error(
            "CDR not written to the database; spooled for replay at the next start",
            extra={
                "error": str(error) or type(error).__name__,
                "call_ref": cdr.call_ref,
                "spool": str(self.spool),
            },
        )
        return None

    def _append(self, cdr: Cdr) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a", encoding="utf-8") as f:
            f.write(to_json(cdr) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def replay(self) -> int:
        """Write what the spool holds; what still fails stays in it. Returns rows written."""
        if not self.spool.exists():
            return 0
        lines = (await asyncio.to_thread(self.spool.read_text, "utf-8")).splitlines()
        kept: list[str] = []
        done = 0
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = from_json(line)
            except (ValueError, TypeError) as e:
                # A torn last line (a crash mid-append) cannot be read: keep it for a person.
                log.error("CDR spool line unreadable", extra={"line": n, "error": str(e)})
                kept.append(line)
                continue
            try:
                if await write(self.pool, record) is not None:
                    done += 1
            except Exception as e:
                log.error("CDR spool replay failed", extra={"line": n, "error": str(e)})
                kept.append(line)
        tmp = self.spool.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_text, "".join(k + "\n" for k in kept), "utf-8")
        await asyncio.to_thread(os.replace, tmp, self.spool)
        if not kept:
            await asyncio.to_thread(self.spool.unlink)
        log.info("CDR spool replayed", extra={"written": done, "kept": len(kept)})
        return done


async def set_disposition(
    pool: AsyncConnectionPool,
    sip_call_id: str,
    arrived_at: dt.datetime,
    disposition: str,
    note: str | None,
) -> bool:
    """The operator's wrap-up on a call whose CDR is written already: on the CDR and on its
    interaction. False when the CDR is not (yet) there."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE cdrs SET disposition = %s, note = coalesce(%s, note)"
            " WHERE sip_call_id = %s AND arrived_at = %s RETURNING id",
            (disposition, note, sip_call_id, arrived_at),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await conn.execute(
            "UPDATE interactions SET disposition = %s, notes = coalesce(%s, notes)"
            " WHERE cdr_id = %s",
            (disposition, note, row[0]),
        )
    return True
