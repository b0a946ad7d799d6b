"""The screen pop: what the operator's desktop shows about a caller before the operator says
a word (seed 004: 来电弹屏, 号码归属地, 提醒). Gathered when the call arrives (and again when
the flow authorizes the caller), so the offer to an operator carries it without waiting on
the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ccorch.crm import store
from ccorch.phones import PhoneError, normalize

LAST_CONTACTS = 5


async def about_caller(
    conn: AsyncConnection[Any],
    ani: str,
    country: str,
    today: dt.date,
    customer_id: int | None = None,
) -> dict[str, Any]:
    """The region of the number, the customer (one match, or ``customer_id`` when the flow
    authorized the caller) or the candidates (several match), that customer's reminders due
    within a week and last contacts."""
    pop: dict[str, Any] = {"region": None, "customer": None, "candidates": [],
                           "reminders_due": [], "last_contacts": []}  # fmt: skip
    try:
        pop["region"] = await store.region_of(conn, normalize(ani, country)) if ani else None
    except PhoneError:
        pop["region"] = None
    if customer_id is None:
        matches = await store.identify_by_ani(conn, ani, country) if ani else []
        if len(matches) == 1:
            customer_id = matches[0].customer_id
        else:
            pop["candidates"] = [m.as_dict() for m in matches[:10]]
    if customer_id is None:
        return pop
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, name, segment, kind, region FROM customers WHERE id = %s", (customer_id,)
    )
    customer = await cur.fetchone()
    if customer is None:
        return pop
    pop["customer"] = customer
    if pop["region"] is None:
        pop["region"] = customer["region"]
    await cur.execute(
        "SELECT kind, due_on, yearly, text FROM customer_reminders WHERE customer_id = %s"
        " ORDER BY due_on",
        (customer_id,),
    )
    pop["reminders_due"] = [
        {**r, "due_on": r["due_on"].isoformat()}
        for r in await cur.fetchall()
        if store.reminder_due(r["due_on"], r["yearly"], today)
    ]
    await cur.execute(
        """SELECT i.started_at, i.channel, i.direction, i.queue, i.disposition, i.notes,
                  u.extension AS agent
           FROM interactions i LEFT JOIN users u ON u.id = i.agent_id
           WHERE i.customer_id = %s ORDER BY i.started_at DESC, i.id DESC LIMIT %s""",
        (customer_id, LAST_CONTACTS),
    )
    pop["last_contacts"] = [
        {**r, "started_at": r["started_at"].isoformat()} for r in await cur.fetchall()
    ]
    return pop
