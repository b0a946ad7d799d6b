"""The screen pop: what the operator's desktop shows about a caller before the operator says
a word (seed 004: 来电弹屏, 号码归属地, 提醒). Gathered when the call arrives (and again when
the flow authorizes the caller), so the offer to an operator carries it without waiting on
the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ccorch.crm import store
from ccorch.phones import PhoneError, normalize, prefixes_of

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
    pop = _empty_pop(None)
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
    await _customer_part(conn, pop, customer_id, today)
    return pop


def _empty_pop(region: str | None) -> dict[str, Any]:
    return {"region": region, "customer": None, "candidates": [],
            "reminders_due": [], "last_contacts": []}  # fmt: skip


async def _customer_part(
    conn: AsyncConnection[Any], pop: dict[str, Any], customer_id: int, today: dt.date
) -> None:
    """The customer, their reminders due and last contacts, into ``pop``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, name, segment, kind, region FROM customers WHERE id = %s", (customer_id,)
    )
    customer = await cur.fetchone()
    if customer is None:
        return
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


@dataclass
class Caller:
    """What a trunk call's start knows about its caller."""

    blacklisted: str | None = None  # why the number is refused
    matches: list[store.Match] = field(default_factory=list)
    screen: dict[str, Any] = field(default_factory=lambda: _empty_pop(None))
    preferred: list[str] = field(default_factory=list)  # the customer's operators first


async def look_up_caller(
    conn: AsyncConnection[Any], ani: str, country: str, today: dt.date
) -> Caller:
    """The blacklist, the identification by ANI, the screen pop and the preferred operators
    of a new call, in as few round trips as the answers allow: the blacklist, the number's
    region, the exact matches and (only when nobody owns the exact number) the last-digits
    candidates come in one; the customer's card and operators only when one customer
    matched. An unknown caller is one round trip.
    (Separately, these were six queries and two identifications for an unknown caller.)"""
    key = store.ani_key(ani, country) if ani else None
    try:
        prefixes = prefixes_of(normalize(ani, country)) if ani else []
    except PhoneError:
        prefixes = []
    cur = await conn.execute(
        """SELECT b.listed, b.reason,
                  (SELECT region FROM phone_prefixes WHERE prefix = ANY(%(prefixes)s)
                    ORDER BY length(prefix) DESC LIMIT 1),
                  (SELECT coalesce(json_agg(json_build_array(m.id, m.name, m.segment)
                                            ORDER BY m.id), '[]'::json)
                     FROM (SELECT DISTINCT c.id, c.name, c.segment
                             FROM customer_phones p JOIN customers c ON c.id = p.customer_id
                            WHERE p.e164 = %(key)s ORDER BY c.id LIMIT 20) m),
                  -- the last-digits candidates, only when nobody owns the exact number
                  CASE WHEN NOT EXISTS (SELECT 1 FROM customer_phones WHERE e164 = %(key)s)
                  THEN (SELECT coalesce(json_agg(json_build_array(t.id, t.name, t.segment,
                                                                  t.e164)), '[]'::json)
                          FROM (SELECT c.id, c.name, c.segment, p.e164
                                  FROM customer_phones p JOIN customers c ON c.id = p.customer_id
                                 WHERE p.tail7 = right(%(key)s, 7) LIMIT 50) t)
                  END
             FROM (SELECT count(*) > 0 AS listed, max(reason) AS reason
                     FROM blacklist WHERE number = %(ani)s) b""",
        {"ani": ani, "key": key, "prefixes": prefixes},
    )
    row = await cur.fetchone()
    assert row is not None  # an aggregate always gives its row
    listed, reason, region, exact, tail = row
    caller = Caller(screen=_empty_pop(region))
    if listed:
        caller.blacklisted = str(reason or "blacklisted")
        return caller
    if exact:
        caller.matches = [store.Match(i, n, seg, "ani", 1.0) for i, n, seg in exact]
    elif key is not None and tail:
        caller.matches = store.tail_matches(key, tail)
    if len(caller.matches) != 1:
        caller.screen["candidates"] = [m.as_dict() for m in caller.matches[:10]]
        return caller
    customer_id = caller.matches[0].customer_id
    await _customer_part(conn, caller.screen, customer_id, today)
    caller.preferred = await store.preferred_extensions(conn, customer_id)
    return caller
