"""The registrar (RFC 3261 §10.3) for agents' phones, and its PostgreSQL persistence.

``Registrar.register`` is pure: it takes an authenticated REGISTER and the time and returns
the response status, the bindings after it and the rows to write. The service writes those
rows before it answers 200, so an acknowledged registration survives a restart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from ccorch.sip.digest import ha1
from ccorch.sip.message import Request, Uri
from ccorch.sip.transaction import Addr, TransportName

DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_CONTACTS = 10


@dataclass(slots=True)
class Binding:
    contact: str  # the Contact URI, as sent
    expires_at: float  # on the caller's clock (seconds)
    call_id: str
    cseq: int
    source: Addr
    user_agent: str = ""
    q: float = 1.0


@dataclass(slots=True)
class RegisterOutcome:
    status: int
    reason: str | None = None
    bindings: list[Binding] = field(default_factory=list)
    upserts: list[Binding] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    min_expires: int | None = None


@dataclass(slots=True)
class Account:
    username: str
    ha1_md5: str
    ha1_sha256: str
    display_name: str = ""
    user_id: int | None = None


class Registrar:
    def __init__(self, min_expires: int = MIN_EXPIRES, max_expires: int = MAX_EXPIRES) -> None:
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.bindings: dict[str, dict[str, Binding]] = {}

    def register(self, now: float, user: str, req: Request, source: Addr) -> RegisterOutcome:
        current = self.bindings.setdefault(user, {})
        self._expire(now, user)
        try:
            contacts = req.contacts()
        except ValueError as e:
            return RegisterOutcome(400, f"Bad Contact: {e}")
        header_expires = _int_or_none(req.get("expires"))
        if not contacts:
            return RegisterOutcome(200, bindings=list(current.values()))
        if any(c.star for c in contacts):
            if len(contacts) != 1 or header_expires != 0:
                return RegisterOutcome(400, "Contact * needs Expires: 0 and no other contact")
            gone = list(current)
            for k in gone:
                b = current[k]
                if b.call_id == req.call_id and req.cseq[0] <= b.cseq:
                    return RegisterOutcome(500, "Out of order REGISTER")
            current.clear()
            return RegisterOutcome(200, deletes=gone)
        out = RegisterOutcome(200)
        ua = req.get("user-agent") or ""
        for c in contacts:
            key = str(c.uri)
            exp = _int_or_none(c.params.get("expires"))
            if exp is None:
                exp = header_expires if header_expires is not None else DEFAULT_EXPIRES
            if 0 < exp < self.min_expires:
                return RegisterOutcome(423, min_expires=self.min_expires)
            exp = min(exp, self.max_expires)
            old = current.get(key)
            if old is not None and old.call_id == req.call_id and req.cseq[0] <= old.cseq:
                return RegisterOutcome(500, "Out of order REGISTER")
            if exp == 0:
                if old is not None:
                    del current[key]
                    out.deletes.append(key)
                continue
            try:
                q = float(c.params.get("q") or 1.0)
            except ValueError:
                q = 1.0
            b = Binding(key, now + exp, req.call_id, req.cseq[0], source, ua, q)
            if old is None and len(current) >= MAX_CONTACTS:
                return RegisterOutcome(403, "Too many contacts")
            current.pop(key, None)  # the dict keeps the order of the last registrations
            current[key] = b
            out.upserts.append(b)
        out.bindings = list(current.values())
        return out

    def _expire(self, now: float, user: str) -> list[str]:
        cur = self.bindings.get(user, {})
        gone = [k for k, b in cur.items() if b.expires_at <= now]
        for k in gone:
            del cur[k]
        return gone

    def lookup(self, now: float, user: str) -> list[Binding]:
        """Live contacts of ``user``, best q first, and of equal q the last registered first:
        a phone that restarted on another port leaves its old binding until it expires, and
        only the new one answers."""
        self._expire(now, user)
        newest_first = reversed(self.bindings.get(user, {}).values())
        return sorted(newest_first, key=lambda b: -b.q)

    def expire_all(self, now: float) -> int:
        return sum(len(self._expire(now, u)) for u in list(self.bindings))


def target(b: Binding, connected: Callable[[Addr], bool] = lambda a: False) -> Addr:
    """Where to send requests for a binding: the Contact's address (RFC 3261), except
    - the phone registered over TCP or TLS and that connection is still open: reuse it
      (RFC 5626);
    - the Contact is a private address other than the one the REGISTER came from: the phone
      is behind NAT, and only its public source address reaches it."""
    if b.source.transport in ("TCP", "TLS", "WS", "WSS") and connected(b.source):
        return b.source
    if b.source.transport in ("WS", "WSS"):
        return b.source  # a browser is reachable on its connection or not at all
    try:
        uri = Uri.parse(b.contact)
    except ValueError:
        return b.source
    host, port = uri.hostport()
    transport = (uri.params.get("transport") or "udp").upper()
    if host != b.source.host and _private(host):
        return b.source
    kind: TransportName = "TCP" if transport == "TCP" else "TLS" if transport == "TLS" else "UDP"
    return Addr(kind, host, port)


def _private(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback


def contact_header(b: Binding, now: float) -> str:
    return f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}"


def _int_or_none(v: str | None) -> int | None:
    if v is None:
        return None
    v = v.strip()
    return int(v) if v.isdigit() and len(v) < 10 else None


# --- persistence ---------------------------------------------------------------------------


async def load_accounts(conn: AsyncConnection[Any]) -> dict[str, Account]:
    cur = await conn.execute(
        "SELECT username, ha1_md5, ha1_sha256, display_name, user_id FROM sip_accounts WHERE enabled"
    )
    return {r[0]: Account(*r) for r in await cur.fetchall()}


# The demo's operators' phones (README): extension -> (password, name).
DEMO_PHONES = {
    "7001": ("agent7001", "Operator 7001"),
    "7002": ("agent7002", "Operator 7002"),
    "7003": ("agent7003", "Operator 7003"),
    "7004": ("agent7004", "Operator 7004"),
    "7009": ("agent7009", "Supervisor 7009"),
}


async def create_account(
    conn: AsyncConnection[Any],
    username: str,
    password: str,
    realm: str,
    display_name: str = "",
    *,
    replace: bool = True,
) -> None:
    conflict = (
        """DO UPDATE SET realm = EXCLUDED.realm, ha1_md5 = EXCLUDED.ha1_md5,
               ha1_sha256 = EXCLUDED.ha1_sha256, display_name = EXCLUDED.display_name"""
        if replace
        else "DO NOTHING"
    )
    await conn.execute(
        """INSERT INTO sip_accounts (username, realm, ha1_md5, ha1_sha256, display_name)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (username) """
        + conflict,
        (
            username,
            realm,
            ha1("MD5", username, realm, password),
            ha1("SHA-256", username, realm, password),
            display_name,
        ),
    )


async def load_demo_phones(conn: AsyncConnection[Any], realm: str) -> None:
    """The demo's phone accounts, if absent (a changed password is kept)."""
    for user, (password, name) in DEMO_PHONES.items():
        await create_account(conn, user, password, realm, name, replace=False)
    await conn.commit()


async def load_bindings(
    conn: AsyncConnection[Any], registrar: Registrar, now: float, wall: dt.datetime
) -> int:
    """Bring persisted, unexpired registrations back after a restart (times re-based on ``now``)."""
    cur = await conn.execute(
        """SELECT username, contact, expires_at, call_id, cseq, source, user_agent, q
           FROM sip_registrations WHERE expires_at > %s ORDER BY updated_at""",
        (wall,),
    )
    n = 0
    for user, contact, expires_at, call_id, cseq, source, ua, q in await cur.fetchall():
        transport, host, port = _parse_source(source)
        if transport in ("WS", "WSS"):
            continue  # its WebSocket died with the node: the browser registers again
        left = (expires_at - wall).total_seconds()
        registrar.bindings.setdefault(user, {})[contact] = Binding(
            contact, now + left, call_id, cseq, Addr(transport, host, port), ua, q
        )
        n += 1
    await conn.execute(
        """DELETE FROM sip_registrations WHERE expires_at <= %s
             OR source LIKE 'ws:%%' OR source LIKE 'wss:%%'""",
        (wall,),
    )
    return n


def _parse_source(s: str) -> tuple[Any, str, int]:
    transport, _, rest = s.partition(":")
    host, _, port = rest.rpartition(":")
    return transport.upper(), host, int(port)


async def persist(
    conn: AsyncConnection[Any],
    user: str,
    outcome: RegisterOutcome,
    now: float,
    wall: dt.datetime,
) -> None:
    async with conn.transaction():
        for key in outcome.deletes:
            await conn.execute(
                "DELETE FROM sip_registrations WHERE username = %s AND contact = %s", (user, key)
            )
        for b in outcome.upserts:
            await conn.execute(
                """INSERT INTO sip_registrations
                     (username, contact, expires_at, call_id, cseq, source, user_agent, q, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (username, contact) DO UPDATE SET expires_at = EXCLUDED.expires_at,
                     call_id = EXCLUDED.call_id, cseq = EXCLUDED.cseq, source = EXCLUDED.source,
                     user_agent = EXCLUDED.user_agent, q = EXCLUDED.q, updated_at = EXCLUDED.updated_at""",
                (
                    user,
                    b.contact,
                    wall + dt.timedelta(seconds=b.expires_at - now),
                    b.call_id,
                    b.cseq,
                    str(b.source),
                    b.user_agent,
                    b.q,
                    wall,
                ),
            )


async def store_user(
    conn: AsyncConnection[Any], user: str, bindings: list[Binding], now: float, wall: dt.datetime
) -> None:
    """Make the stored registrations of ``user`` exactly ``bindings`` (one transaction)."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM sip_registrations WHERE username = %s AND NOT (contact = ANY(%s))",
            (user, [b.contact for b in bindings]),
        )
        await persist(conn, user, RegisterOutcome(200, upserts=list(bindings)), now, wall)
