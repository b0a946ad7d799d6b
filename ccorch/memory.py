"""Giving memory back after a load peak.

Measured before: 122 MiB idle, 338 MiB held after load steps with no call up. Two things
held it. A call's objects refer to each other (the call and its legs, dialogs, timers), so
they are freed by the cyclic collector, not by reference counts; the node runs that
collector rarely on purpose (``gc.set_threshold(10_000, 20, 20)`` in ``ccorch.app``: it cost
~20% of a call's CPU), so after a burst the ended calls waited in the oldest generation for
a full collection that a quiet node never triggers. And what was freed, in Python or in the
media engine's threads, stays in glibc's malloc arenas for reuse.

So when the node got quieter (fewer calls up than ``every`` seconds ago) it runs one full
collection and ``malloc_trim(0)``, which hands the arenas' free pages back to the kernel.
Not under a steady or rising load, where both would cost time for nothing. Where malloc is
not glibc's only the collection runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[], bool] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


async def give_back_when_quieter(active: Callable[[], int], every: float = 15.0) -> None:
    """Collect and trim each time the node carries fewer calls than ``every`` ago."""
    trim = _malloc_trim()
    last = active()
    while True:
        await asyncio.sleep(every)
        now = active()
        if now < last:
            freed = gc.collect()
            released = trim() if trim is not None else False
            log.debug(
                "memory given back", extra={"calls": now, "objects": freed, "trimmed": released}
            )
        last = now
