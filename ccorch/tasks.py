"""Stopping the node's background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task, then wait for each to end. A task that had already failed is
    logged, not raised: a stop must go on stopping the rest."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception as e:
                log.warning(
                    "task failed before the stop", extra={"task": task.get_name(), "error": str(e)}
                )
