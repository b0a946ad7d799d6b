"""Sessions for browsers as well as programs, and the login's brakes.

A login answers with a bearer token (programs send ``Authorization: Bearer <token>``) and
sets two cookies for the browser app: ``ccorch_session`` (the token; HttpOnly,
SameSite=Strict, Secure over HTTPS) and ``ccorch_csrf`` (readable by the page's script).
A state-changing request authenticated by the cookie alone must carry the CSRF value in
``X-CSRF-Token`` (double submit: another site can make the browser send the cookie, not read
it). The CSRF value is derived from the token, so nothing more is stored.

Logins are throttled: an account with ``ACCOUNT_FAILURES`` failed logins within
``WINDOW_SECONDS`` gets 429 until the window passes (a correct password included); so does
an address with ``ADDRESS_FAILURES`` failures (password spraying over many accounts).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field

SESSION_COOKIE = "ccorch_session"
CSRF_COOKIE = "ccorch_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

WINDOW_SECONDS = 900.0
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20


def csrf_for(token: str) -> str:
    """The CSRF value that goes with a session token."""
    return hashlib.sha256(b"ccorch-csrf:" + token.encode()).hexdigest()[:40]


def csrf_ok(token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_for(token), given)


@dataclass
class LoginThrottle:
    """Failed logins per account and per address in a sliding window (sans-IO: the caller
    gives the time). Kept in memory: a restart forgets it, which is acceptable for a brake
    (the passwords' scrypt cost is the other)."""

    window: float = WINDOW_SECONDS
    per_account: int = ACCOUNT_FAILURES
    per_address: int = ADDRESS_FAILURES
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return deque()
        return q

    def retry_after(self, account: str, address: str, now: float) -> float | None:
        """Seconds until a login may be tried again, or None if it may be tried now."""
        waits = []
        for key, limit in (
            (f"a:{account.lower()}", self.per_account),
            (f"ip:{address}", self.per_address),
        ):
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window - now)
        return max(waits) if waits else None

    def failed(self, account: str, address: str, now: float) -> None:
        for key in (f"a:{account.lower()}", f"ip:{address}"):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"a:{account.lower()}", None)
