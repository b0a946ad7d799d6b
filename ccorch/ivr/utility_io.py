"""The CRM side of the utility's IVR nodes (``meter_reading``, ``outage``): what the runner
and the flow editor's dry run both carry out. Each answers the interpreter's input: an
outcome and the variables it sets."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from ccorch.crm import utility
from ccorch.ivr.interpreter import CheckOutage, SubmitReading

MAX_READING_DIGITS = 9


async def reading(
    pool: AsyncConnectionPool[Any] | None,
    a: SubmitReading,
    now: dt.datetime,
    *,
    sip_call_id: str | None = None,
    store: bool = True,
) -> tuple[str, dict[str, Any]]:
    """ok (stored), rejected (``reading_error`` and the figures to explain it) or failed.
    An empty night value is no night reading (a one-zone meter); ``store`` False checks
    only."""
    if pool is None or not a.contract:
        return "failed", {}
    values: list[int | None] = []
    for text in (a.day, a.night or ""):
        if text == "":
            values.append(None)
        elif text.isdigit() and len(text) <= MAX_READING_DIGITS:
            values.append(int(text))
        else:
            return "rejected", {"reading_error": "invalid"}
    day, night = values
    if day is None:
        return "rejected", {"reading_error": "invalid"}
    async with pool.connection() as conn:
        got = await utility.submit_reading(
            conn, a.contract, day, night, channel=a.channel, now=now,
            sip_call_id=sip_call_id, store=store,
        )  # fmt: skip
    if got is None:
        return "failed", {}
    last = got.last
    out: dict[str, Any] = {
        "reading_error": got.check.error or "",
        "previous_day": last.day if last else "",
        "previous_night": last.night if last and last.night is not None else "",
        "previous_date": last.taken_at.astimezone(ZoneInfo(a.timezone)).date().isoformat()
        if last
        else "",
        "used": got.check.used,
        "limit": got.check.limit,
        "meter_zones": got.zones,
    }
    return ("rejected" if got.check.error else "ok"), out


async def outage(
    pool: AsyncConnectionPool[Any] | None, a: CheckOutage, now: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """affected (on now), planned (starting within the node's hours), clear or failed."""
    if pool is None:
        return "failed", {}
    customer = int(a.customer) if a.customer.isdigit() else None
    async with pool.connection() as conn:
        sp = await utility.service_point(conn, contract_no=a.contract, customer_id=customer)
        if sp is None:
            return "failed", {}
        found = await utility.outages_at(conn, sp, now, dt.timedelta(hours=a.ahead_hours))
    if not found:
        return "clear", {"address": sp["address"], "contract_no": sp["contract_no"]}
    first = found[0]
    values = {
        "address": sp["address"],
        "contract_no": sp["contract_no"],
        "outage_kind": first["kind"],
        "outage_reason": first["reason"],
        **utility.local_moments(first, a.timezone),
    }
    return ("affected" if first["current"] else "planned"), values
