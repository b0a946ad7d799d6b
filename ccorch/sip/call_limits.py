"""Calls admitted per trunk and per source address. Pure: time in, no I/O.

The abuse guard (``ccorch.sip.guard``) limits requests per untrusted address; this limits
*calls*: how many may be up at once and how many may start per second, per trunk (what the
carrier's contract allows, both directions) and per phone address (a hijacked phone or a
runaway softphone must not take the node's capacity). A call past a limit is refused with
503 and Retry-After before it costs a dialog or media; the count falls when the call ends.

Keys are ``trunk:<name>`` and ``source:<ip>``; a limit of 0 is no limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    max_calls: int = 0  # up at once; 0: no limit
    per_second: float = 0.0  # started per second, with a burst of twice that; 0: no limit

    @property
    def burst(self) -> float:
        return max(1.0, 2 * self.per_second)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


class CallLimits:
    def __init__(self) -> None:
        self._up: Counter[str] = Counter()
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, now: float, key: str, limit: Limit) -> str | None:
        """Count one call in under ``key``: None, or why it is refused (nothing counted)."""
        if limit.max_calls and self._up[key] >= limit.max_calls:
            n = limit.max_calls
            return f"its limit of {n} call{'s' if n != 1 else ''} up at once"
        if limit.per_second:
            bucket = self._refill(now, key, limit)
            if bucket.tokens < 1:
                return f"over its {limit.per_second:g} calls per second"
            bucket.tokens -= 1
        self._up[key] += 1
        return None

    def release(self, key: str) -> None:
        """One call counted under ``key`` ended."""
        if self._up[key] <= 1:
            del self._up[key]
        else:
            self._up[key] -= 1

    def up(self, key: str) -> int:
        return self._up.get(key, 0)

    def room(self, now: float, key: str, limit: Limit) -> int | None:
        """How many calls ``admit`` would take now; None when nothing limits them."""
        rooms: list[int] = []
        if limit.max_calls:
            rooms.append(max(0, limit.max_calls - self.up(key)))
        if limit.per_second:
            rooms.append(int(self._refill(now, key, limit).tokens))
        return min(rooms) if rooms else None

    def _refill(self, now: float, key: str, limit: Limit) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:  # many sources: forget the full buckets
                self._buckets = {
                    k: b for k, b in self._buckets.items() if now - b.last < 60 or k in self._up
                }
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
        else:
            elapsed = max(0.0, now - bucket.last)
            bucket.tokens = min(limit.burst, bucket.tokens + elapsed * limit.per_second)
            bucket.last = now
        return bucket
