"""Who is refused before the IVR says a word: the blacklist (table ``blacklist``)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

# The demo's nuisance caller (README): +380 44 111 22 33.
DEMO_BLACKLIST = {"380441112233": "demo: a nuisance caller"}


async def blacklisted(conn: AsyncConnection[Any], e164: str) -> str | None:
    """The reason ``e164`` is refused, or None."""
    cur = await conn.execute("SELECT reason FROM blacklist WHERE number = %s", (e164,))
    row = await cur.fetchone()
    return None if row is None else str(row[0] or "blacklisted")


async def load_demo_blacklist(conn: AsyncConnection[Any]) -> None:
    for number, reason in DEMO_BLACKLIST.items():
        await conn.execute(
            "INSERT INTO blacklist (number, reason) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (number, reason),
        )
    await conn.commit()
