"""Who is refused before the IVR says a word: the blacklist (table ``blacklist``), checked
with the caller's identification in one query (``ccorch.crm.screen.look_up_caller``)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

# The demo's nuisance caller (README): +380 44 111 22 33.
DEMO_BLACKLIST = {"380441112233": "demo: a nuisance caller"}


async def load_demo_blacklist(conn: AsyncConnection[Any]) -> None:
    for number, reason in DEMO_BLACKLIST.items():
        await conn.execute(
            "INSERT INTO blacklist (number, reason) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (number, reason),
        )
    await conn.commit()
