""" "Call back at": the callback an operator's wrap-up asks for.

A campaign call's contact is called again at that time, by the same operator when the
callback is personal (the campaign manager holds the operator for it once they are free).
Any other call becomes a callback task of the queue it came through, with the number, the
customer and the operator for a personal one: the queue's callback campaign dials it when
it is due, to that operator when personal. Either way nothing is dialed outside the
campaign's calling window; a time outside it moves to the window's next opening.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ccorch.calls.commands import Refused

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from ccorch.dialer.manager import CampaignManager


@dataclass(frozen=True)
class CallbackAsked:
    at: dt.datetime
    agent: str | None  # a personal callback's operator


@dataclass(frozen=True)
class CallFacts:
    """What a callback task needs of a call still up (its record is written at the end)."""

    ani: str
    queue: str | None
    customer_id: int | None
    case_id: int | None


async def schedule(
    pool: AsyncConnectionPool[Any],
    manager: CampaignManager | None,
    asked: CallbackAsked,
    *,
    sip_call_id: str,
    attempt_id: int | None = None,
    facts: CallFacts | None = None,
) -> dict[str, Any]:
    """Schedule the callback of the call ``sip_call_id`` (the customer's leg). A campaign
    call names its ``attempt_id`` while it is up; after it ended the attempt is found by
    the Call-ID; a call still up gives its ``facts`` (after, they come from its record).
    Returns what was scheduled; raises ``Refused`` (409) for a call that came
    through no queue (nobody would make the callback)."""
    async with pool.connection() as conn:
        if attempt_id is None:
            cur = await conn.execute(
                "SELECT id FROM campaign_attempts WHERE sip_call_id = %s ORDER BY id DESC LIMIT 1",
                (sip_call_id,),
            )
            row = await cur.fetchone()
            attempt_id = row[0] if row else None
        if attempt_id is not None:
            if manager is None:
                raise Refused(409, "conflict", "campaigns are not running on this node")
            manager.callback(attempt_id, asked)
            return {"attempt": attempt_id, "at": asked.at.isoformat(), "agent": asked.agent}
        if facts is None:
            facts = await _facts_of_record(conn, sip_call_id)
        if not facts.queue:
            raise Refused(409, "conflict", "the call came through no queue: nobody would call back")
        cur = await conn.execute(
            """INSERT INTO tasks (kind, case_id, customer_id, due_at, created_at, phone, queue,
                                  agent)
               VALUES ('callback', %s, %s, %s, now(), %s, %s, %s) RETURNING id""",
            (
                facts.case_id,
                facts.customer_id,
                asked.at,
                facts.ani.lstrip("+"),
                facts.queue,
                asked.agent,
            ),
        )
        task = await cur.fetchone()
        assert task is not None
        return {"task": task[0], "at": asked.at.isoformat(), "agent": asked.agent}


async def _facts_of_record(conn: AsyncConnection[Any], sip_call_id: str) -> CallFacts:
    cur = await conn.execute(
        """SELECT c.ani, c.queue, c.customer_id,
                  (SELECT i.case_id FROM interactions i
                    WHERE i.cdr_id = c.id AND i.case_id IS NOT NULL LIMIT 1)
             FROM cdrs c WHERE c.sip_call_id = %s ORDER BY c.arrived_at DESC LIMIT 1""",
        (sip_call_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise Refused(409, "conflict", "the call's record is not written yet: try again")
    return CallFacts(*row)
