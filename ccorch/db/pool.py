"""The asyncio connection pool every request and call uses (psycopg 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ccorch.config import DatabaseConfig


async def open_pool(url: str, config: DatabaseConfig) -> AsyncConnectionPool:
    """Open a pool and wait until ``pool_min`` connections are up (fails fast if the server is not)."""
    pool = AsyncConnectionPool(
        url,
        min_size=config.pool_min,
        max_size=config.pool_max,
        timeout=config.acquire_timeout_seconds,
        open=False,
        name="ccorch",
    )
    await pool.open(wait=True, timeout=max(10.0, config.acquire_timeout_seconds))
    return pool


@asynccontextmanager
async def autocommit(
    pool: AsyncConnectionPool, acquire_timeout: float | None = None
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection in autocommit, for a call's path: each statement is one round
    trip and its own transaction, with no BEGIN before it and no ROLLBACK when the
    connection goes back (the pool's connections are otherwise transactional, which made
    three round trips of one SELECT). Statements that must stand or fall together go in
    one statement or in ``conn.transaction()``."""
    async with pool.connection(timeout=acquire_timeout) as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)
