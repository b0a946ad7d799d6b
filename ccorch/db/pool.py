"""The asyncio connection pool every request and call uses (psycopg 3)."""

from __future__ import annotations

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
