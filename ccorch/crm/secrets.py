"""Slow salted hashes for passwords and PINs (scrypt, from the standard library).

A PIN has only 10,000 values, so its hash alone cannot protect it; the attempt limit and
lockout do. The slow hash makes a stolen table expensive to use and keeps PINs and
passwords out of every log and dump. Verification runs off the event loop
(``asyncio.to_thread``): one check costs tens of milliseconds of CPU by design.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 2**14 × 8 × 1: ~16 MiB and ~40 ms per hash on this project's machine.
_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_token() -> tuple[str, bytes]:
    """A session token for the client and its SHA-256 for the database."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
