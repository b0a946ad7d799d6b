"""Call detail records and the customer's history, written when a call ends.

One transaction per call: the CDR row and, when the caller was identified, an interaction in
the customer's history (channel ``call``, the queue, how it ended). Written off the call's
path (its own task); a failure is logged with the whole record, so nothing is lost silently.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

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


_COLUMNS = list(Cdr.__dataclass_fields__)


async def write(pool: AsyncConnectionPool, cdr: Cdr) -> int:
    row: dict[str, Any] = asdict(cdr)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"INSERT INTO cdrs ({', '.join(_COLUMNS)}) VALUES ({', '.join('%s' for _ in _COLUMNS)}) RETURNING id",
            [row[c] for c in _COLUMNS],
        )
        got = await cur.fetchone()
        assert got is not None
        if cdr.customer_id is not None:
            await conn.execute(
                """INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at,
                                             queue, disposition, notes, recording_ref)
                   VALUES (%s, 'call', 'in', %s, %s, %s, %s, %s, %s)""",
                (
                    cdr.customer_id,
                    cdr.arrived_at,
                    cdr.ended_at,
                    cdr.queue,
                    cdr.outcome,
                    f"DNIS {cdr.dnis}" + (f", operator {cdr.agent}" if cdr.agent else ""),
                    cdr.recording_path,
                ),
            )
    return int(got[0])


async def write_logged(pool: AsyncConnectionPool | None, cdr: Cdr) -> None:
    if pool is None:
        return
    try:
        await write(pool, cdr)
    except Exception as e:
        log.error(
            "CDR not written",
            extra={"error": str(e), "cdr": {k: str(v) for k, v in asdict(cdr).items()}},
        )
