"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616 computation, RFC 8760 SHA-256).

Server side: challenges offer SHA-256 first and MD5 second, qop=auth. Nonces are stateless
(time + HMAC) and expire; an expired but otherwise valid nonce gets ``stale=true`` so the
phone retries without asking its user. The nonce count must grow: a replayed nc is refused.
Unknown users are answered exactly as a wrong password is (no user enumeration).

Client side: ``authorization`` answers a trunk's 401/407 for outbound calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ccorch.sip.message import parse_params, quote

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}


def h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def ha1(algorithm: str, user: str, realm: str, password: str) -> str:
    return h(algorithm, f"{user}:{realm}:{password}")


def parse_credentials(value: str) -> dict[str, str] | None:
    """``Digest username="a", realm="b", ...`` → lower-cased keys, unquoted values."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    # auth-params are comma-separated; reuse the ;-param parser on a rewritten string
    out: dict[str, str] = {}
    for item in _split_commas(rest):
        params = parse_params(item)
        for k, v in params.items():
            if v is not None:
                out[k] = v
    return out


def _split_commas(text: str) -> list[str]:
    out, quoted, start = [], False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return [x.strip() for x in out if x.strip()]


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    user: str | None = None
    stale: bool = False
    reason: str = ""


class DigestServer:
    """Challenges and checks credentials. ``lookup(user, algorithm)`` gives the stored HA1
    (or None for an unknown user); it is called on the loop, so it must be in memory."""

    def __init__(
        self,
        realm: str,
        nonce_ttl: float = 300.0,
        secret: bytes | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        self.realm = realm
        self.algorithms = algorithms
        self.nonce_ttl = nonce_ttl
        self._secret = secret or os.urandom(32)
        self._nc: dict[str, int] = {}  # nonce -> highest nonce-count seen
        self._dummy = os.urandom(16).hex()

    def nonce(self, now: float) -> str:
        stamp = struct.pack(">d", now) + os.urandom(8)
        mac = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def _nonce_time(self, nonce: str) -> float | None:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32:
            return None
        stamp, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(
            mac, hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]
        ):
            return None
        t: float = struct.unpack(">d", stamp[:8])[0]
        return t

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """Header values for WWW-Authenticate (401) or Proxy-Authenticate (407), best first."""
        nonce = self.nonce(now)
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm={quote(self.realm)}, nonce="{nonce}", algorithm={alg}, qop="auth"{tail}'
            for alg in self.algorithms
        ]

    def verify(
        self,
        now: float,
        method: str,
        header: str | None,
        lookup: Callable[[str, str], str | None],
    ) -> Verdict:
        if header is None:
            return Verdict(False, reason="no credentials")
        cred = parse_credentials(header)
        if cred is None:
            return Verdict(False, reason="not digest")
        user = cred.get("username", "")
        alg = (cred.get("algorithm") or "MD5").upper()
        nonce = cred.get("nonce", "")
        if alg not in self.algorithms:
            return Verdict(False, user, reason=f"algorithm {alg} not offered")
        if cred.get("realm") != self.realm:
            return Verdict(False, user, reason="wrong realm")
        if cred.get("qop") != "auth" or "cnonce" not in cred or "nc" not in cred:
            return Verdict(False, user, reason="qop=auth required")
        issued = self._nonce_time(nonce)
        if issued is None:
            return Verdict(False, user, reason="nonce not ours")
        stored = lookup(user, alg)
        # unknown users are checked against a random HA1: the same work, the same answer
        key = stored if stored is not None else h(alg, self._dummy)
        ha2 = h(alg, f"{method}:{cred.get('uri', '')}")
        expected = h(alg, f"{key}:{nonce}:{cred['nc']}:{cred['cnonce']}:auth:{ha2}")
        if not hmac.compare_digest(expected, cred.get("response", "").lower()) or stored is None:
            return Verdict(False, user, reason="wrong credentials")
        if now - issued > self.nonce_ttl:
            return Verdict(False, user, stale=True, reason="nonce expired")
        try:
            nc = int(cred["nc"], 16)
        except ValueError:
            return Verdict(False, user, reason="bad nc")
        if nc <= self._nc.get(nonce, 0):
            return Verdict(False, user, reason="nonce count replayed")
        self._nc[nonce] = nc
        if len(self._nc) > 100_000:
            self._prune(now)
        return Verdict(True, user)

    def _prune(self, now: float) -> None:
        for n in list(self._nc):
            t = self._nonce_time(n)
            if t is None or now - t > self.nonce_ttl:
                del self._nc[n]


def authorization(
    challenge: str, method: str, uri: str, user: str, password: str, *, nc: int = 1
) -> str:
    """An Authorization / Proxy-Authorization value answering ``challenge`` (client side)."""
    c = parse_credentials(challenge) or {}
    alg = (c.get("algorithm") or "MD5").upper()
    if alg not in ALGORITHMS:
        alg = "MD5"
    realm = c.get("realm", "")
    nonce = c.get("nonce", "")
    k = ha1(alg, user, realm, password)
    ha2 = h(alg, f"{method}:{uri}")
    parts = [
        f"username={quote(user)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f"algorithm={alg}",
    ]
    if "auth" in (c.get("qop") or "").split(","):
        cnonce = os.urandom(8).hex()
        ncs = f"{nc:08x}"
        resp = h(alg, f"{k}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        parts += [f"response={quote(resp)}", "qop=auth", f"nc={ncs}", f"cnonce={quote(cnonce)}"]
    else:
        parts.append(f"response={quote(h(alg, f'{k}:{nonce}:{ha2}'))}")
    if "opaque" in c:
        parts.append(f"opaque={quote(c['opaque'])}")
    return "Digest " + ", ".join(parts)
