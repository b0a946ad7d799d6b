"""Abuse protection per source address: request-rate limits and temporary bans. Pure: time in.

- A token bucket per source IP for out-of-dialog requests (INVITE, REGISTER, OPTIONS...);
  a source that empties its bucket is banned for ``flood_ban`` seconds.
- Failed digest authentications per source IP in a sliding window; ``auth_failures`` of them
  ban the source for ``auth_ban`` seconds (REGISTER brute force).
Configured trunks are trusted and never limited (they carry a whole center's traffic).
A banned source's packets are dropped without an answer, so a scanner learns nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Source:
    tokens: float
    last: float
    failures: deque[float] = field(default_factory=deque)


class Guard:
    def __init__(
        self,
        *,
        rate: float = 20.0,
        burst: float = 60.0,
        auth_failures: int = 5,
        auth_window: float = 60.0,
        auth_ban: float = 600.0,
        flood_ban: float = 60.0,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.auth_failures = auth_failures
        self.auth_window = auth_window
        self.auth_ban = auth_ban
        self.flood_ban = flood_ban
        self._sources: dict[str, _Source] = {}
        self._bans: dict[str, float] = {}  # ip -> banned until
        self.dropped = 0
        self.bans_total = 0

    def banned(self, now: float, ip: str) -> bool:
        until = self._bans.get(ip)
        if until is None:
            return False
        if now >= until:
            del self._bans[ip]
            return False
        self.dropped += 1
        return True

    def allow(self, now: float, ip: str) -> bool:
        """One out-of-dialog request from ``ip`` (not a trunk): False, and a ban, when over its rate."""
        s = self._sources.get(ip)
        if s is None:
            if len(self._sources) > 100_000:
                self._sources.clear()  # bounded memory under a spoofed-source flood
            s = self._sources[ip] = _Source(self.burst, now)
        s.tokens = min(self.burst, s.tokens + (now - s.last) * self.rate)
        s.last = now
        if s.tokens < 1.0:
            self._ban(now, ip, self.flood_ban)
            self.dropped += 1
            return False
        s.tokens -= 1.0
        return True

    def auth_failed(self, now: float, ip: str) -> bool:
        """Count a failed authentication; True when this one got the source banned."""
        s = self._sources.get(ip)
        if s is None:
            s = self._sources[ip] = _Source(self.burst, now)
        while s.failures and now - s.failures[0] > self.auth_window:
            s.failures.popleft()
        s.failures.append(now)
        if len(s.failures) >= self.auth_failures:
            s.failures.clear()
            self._ban(now, ip, self.auth_ban)
            return True
        return False

    def auth_ok(self, ip: str) -> None:
        s = self._sources.get(ip)
        if s is not None:
            s.failures.clear()

    def _ban(self, now: float, ip: str, seconds: float) -> None:
        if ip not in self._bans:
            self.bans_total += 1
        self._bans[ip] = now + seconds

    def bans(self, now: float) -> dict[str, float]:
        return {ip: until - now for ip, until in self._bans.items() if until > now}
