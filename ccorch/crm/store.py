"""The CRM's data access on PostgreSQL (psycopg 3, async): identification, search,
registration, the customer card, PIN authorization with lockout, users and sessions,
and the audit log. Functions take a connection and, where time matters, ``now`` (so tests
drive a controllable clock instead of sleeping).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, Field, ValidationInfo

from ccorch.api.validation import Body, Day, Id, ValidationFailed, anchored, parse
from ccorch.crm.secrets import hash_secret, new_token, token_digest, verify_secret
from ccorch.phones import PhoneError, normalize, prefixes_of

ROLES = ("operator", "supervisor", "complaints", "admin")


async def audit(
    conn: AsyncConnection[Any],
    user_id: int | None,
    action: str,
    entity: str,
    entity_id: object,
    before: object = None,
    after: object = None,
) -> None:
    """Record one change, in the caller's transaction (so it lands with the change or not at all)."""
    await conn.execute(
        "INSERT INTO audit_log (user_id, action, entity, entity_id, before, after) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            user_id,
            action,
            entity,
            None if entity_id is None else str(entity_id),
            None if before is None else Jsonb(before),
            None if after is None else Jsonb(after),
        ),
    )


async def region_of(conn: AsyncConnection[Any], e164: str) -> str | None:
    """The region of a number from the longest matching prefix."""
    cur = await conn.execute(
        "SELECT region FROM phone_prefixes WHERE prefix = ANY(%s) ORDER BY length(prefix) DESC LIMIT 1",
        (prefixes_of(e164),),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class Match:
    customer_id: int
    name: str
    segment: str
    how: str  # "ani", "ani_last_digits", "contract", "name", "phone", "address"
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "segment": self.segment,
            "match": self.how,
            "score": round(self.score, 3),
        }


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


async def preferred_extensions(
    conn: AsyncConnection[Any], customer_id: int, last_agent_days: int = 30
) -> list[str]:
    """Who should take this customer's call first: the assigned manager's extension, then
    the operator who last talked with them (within ``last_agent_days``), without repeats."""
    cur = await conn.execute(
        """SELECT 0 AS rank, u.extension FROM customers c JOIN users u ON u.id = c.manager_id
           WHERE c.id = %s AND u.active AND u.extension IS NOT NULL
           UNION ALL
           (SELECT 1, agent FROM cdrs
            WHERE customer_id = %s AND agent IS NOT NULL AND answered_at IS NOT NULL
              AND arrived_at > now() - make_interval(days => %s)
            ORDER BY arrived_at DESC LIMIT 1)
           ORDER BY rank""",
        (customer_id, customer_id, last_agent_days),
    )
    out: list[str] = []
    for _, ext in await cur.fetchall():
        if ext not in out:
            out.append(ext)
    return out


def ani_key(ani: str, country: str) -> str | None:
    """What a calling number is looked up by: its E.164 form, or its digits when it cannot
    be normalized (None when fewer than seven: nothing to match)."""
    try:
        return normalize(ani, country)
    except PhoneError:
        digits = "".join(ch for ch in ani if ch.isdigit())
        return digits if len(digits) >= 7 else None


async def identify_by_ani(conn: AsyncConnection[Any], ani: str, country: str) -> list[Match]:
    """Customers owning the calling number: exact E.164 first; else the same last seven
    digits, ranked by how many trailing digits agree. No match: an empty list."""
    e164 = ani_key(ani, country)
    if e164 is None:
        return []
    cur = await conn.execute(
        """SELECT DISTINCT c.id, c.name, c.segment FROM customer_phones p JOIN customers c ON c.id = p.customer_id
           WHERE p.e164 = %s ORDER BY c.id LIMIT 20""",
        (e164,),
    )
    exact = await cur.fetchall()
    if exact:
        return [Match(r[0], r[1], r[2], "ani", 1.0) for r in exact]
    return await identify_by_tail(conn, e164)


async def identify_by_tail(conn: AsyncConnection[Any], e164: str) -> list[Match]:
    """Customers whose number ends in the same seven digits, best agreement first."""
    cur = await conn.execute(
        """SELECT c.id, c.name, c.segment, p.e164 FROM customer_phones p JOIN customers c ON c.id = p.customer_id
           WHERE p.tail7 = right(%s, 7) LIMIT 50""",
        (e164,),
    )
    return tail_matches(e164, await cur.fetchall())


def tail_matches(e164: str, rows: Sequence[Sequence[Any]]) -> list[Match]:
    """The last-digits candidates ``(id, name, segment, number)`` ranked by how many
    trailing digits agree, one per customer, the best twenty."""
    best: dict[int, Match] = {}
    for cid, name, segment, number in rows:
        score = _common_suffix(e164, number) / max(len(e164), len(number))
        if cid not in best or best[cid].score < score:
            best[cid] = Match(cid, name, segment, "ani_last_digits", score)
    return sorted(best.values(), key=lambda m: (-m.score, m.customer_id))[:20]


async def identify_by_contract(conn: AsyncConnection[Any], contract_no: str) -> list[Match]:
    cur = await conn.execute(
        """SELECT c.id, c.name, c.segment FROM accounts a JOIN customers c ON c.id = a.customer_id
           WHERE a.contract_no = %s""",
        (contract_no.strip(),),
    )
    return [Match(r[0], r[1], r[2], "contract", 1.0) for r in await cur.fetchall()]


async def search(conn: AsyncConnection[Any], q: str, limit: int = 20) -> list[Match]:
    """The search form: name, phone, contract or address, fuzzy (pg_trgm), ranked.

    Each kind of match is a branch of its own that only runs when the query can match it
    (digits for phones, a contract-like token), ranks its own candidates and keeps the best
    few, so a common surname among a million customers costs one index scan, not a sort
    of every namesake."""
    text = " ".join(q.lower().split())
    digits = "".join(ch for ch in q if ch.isdigit())
    raw = q.strip()
    if not text:
        return []
    params: dict[str, Any] = {"t": text, "raw": raw, "cap": max(limit * 3, 30), "limit": limit}
    branches = [
        """(SELECT c.id, 'name' AS how, word_similarity(%(t)s, lower(c.name)) AS score
              FROM customers c WHERE %(t)s <%% lower(c.name) ORDER BY %(t)s <<-> lower(c.name) LIMIT %(cap)s)""",
        """(SELECT a.customer_id, 'address', word_similarity(%(t)s, lower(a.text))
              FROM customer_addresses a WHERE %(t)s <%% lower(a.text) ORDER BY 3 DESC LIMIT %(cap)s)""",
    ]
    if len(text) >= 2 and _unspaced_script(text):
        # Substrings, for scripts written without spaces between words (Chinese, Japanese):
        # there a query is a part of one long "word" that trigram similarity ranks low.
        params["like"] = "%" + _like_escape(text) + "%"
        branches += [
            """(SELECT c.id, 'name', 0.7 + 0.3 * length(%(t)s)::float / length(c.name)
                  FROM customers c WHERE lower(c.name) LIKE %(like)s ORDER BY 3 DESC LIMIT %(cap)s)""",
            """(SELECT a.customer_id, 'address', 0.6 + 0.3 * length(%(t)s)::float / length(a.text)
                  FROM customer_addresses a WHERE lower(a.text) LIKE %(like)s ORDER BY 3 DESC LIMIT %(cap)s)""",
        ]
    if len(digits) >= 4:
        params["d"] = digits
        params["dlike"] = "%" + digits + "%"
        branches.append(
            """(SELECT p.customer_id, 'phone', 0.9 + 0.1 * length(%(d)s)::float / length(p.e164)
                  FROM customer_phones p WHERE p.e164 LIKE %(dlike)s ORDER BY 3 DESC LIMIT %(cap)s)"""
        )
    if raw and len(raw) <= 32 and " " not in raw:
        params["rlike"] = _like_escape(raw) + "%"
        branches.append(
            """(SELECT a.customer_id, 'contract', CASE WHEN a.contract_no = %(raw)s THEN 1.0 ELSE 0.85 END
                  FROM accounts a WHERE a.contract_no = %(raw)s OR (length(%(raw)s) >= 3 AND a.contract_no LIKE %(rlike)s)
                  LIMIT %(cap)s)"""
        )
    sql = f"""
        WITH hits AS ({" UNION ALL ".join(branches)}),
        best AS (SELECT DISTINCT ON (id) id, how, score FROM hits ORDER BY id, score DESC)
        SELECT b.id, c.name, c.segment, b.how, b.score FROM best b JOIN customers c ON c.id = b.id
        ORDER BY b.score DESC, b.id LIMIT %(limit)s"""
    cur = await conn.execute(sql.encode(), params)
    return [Match(r[0], r[1], r[2], r[3], float(r[4])) for r in await cur.fetchall()]


def _unspaced_script(s: str) -> bool:
    """True when ``s`` has CJK ideographs or kana."""
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"
        for ch in s
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _phone(value: str, info: ValidationInfo) -> str:
    """A phone number the tenant's country can read (kept as typed; stored as E.164)."""
    try:
        normalize(value, (info.context or {})["country"])
    except PhoneError as e:
        raise ValueError(str(e)) from None
    return value


Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
Phones = Annotated[list[Phone], Field(max_length=10, description="any format; stored as E.164")]
Addresses = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=500)]], Field(max_length=10)
]
Email = Annotated[str, Field(max_length=200, pattern=anchored(r"[^@\s]+@[^@\s]+\.[^@\s]+"))]
Segment = Annotated[str, Field(min_length=1, max_length=40)]
CustomerName = Annotated[str, Field(min_length=1, max_length=200)]


class _CustomerFields(Body):
    """What a new customer and a change to one have in common."""

    name: CustomerName | None = None
    phones: Phones | None = None
    addresses: Addresses | None = None
    email: Email | None = None
    birthday: Day | None = None
    segment: Segment | None = None
    group_id: Id | None = None
    notes: Annotated[str, Field(max_length=5000)] | None = None


class NewCustomer(_CustomerFields):
    kind: Literal["person", "organization"] | None = Field(None, description="default person")
    name: CustomerName


class CustomerUpdate(_CustomerFields):
    """A change to a customer: the given fields only (phones, addresses replace the lists)."""

    manager_id: Id | None = None


async def create_customer(
    conn: AsyncConnection[Any],
    body: Any,
    *,
    required: Sequence[str],
    country: str,
    actor: int | None,
) -> int:
    """Register a customer; ``required`` lists the fields the service insists on."""
    data = parse(NewCustomer, body, also_required=required, context={"country": country})
    phones = sorted({normalize(p, country) for p in data.get("phones", [])})
    region = await region_of(conn, phones[0]) if phones else None
    if data.get("group_id") is not None:
        cur = await conn.execute("SELECT 1 FROM customer_groups WHERE id = %s", (data["group_id"],))
        if await cur.fetchone() is None:
            raise ValidationFailed({"group_id": "no such customer group"})
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO customers (kind, name, segment, group_id, region, birthday, email, notes)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                data.get("kind", "person"),
                data["name"].strip(),
                data.get("segment", "standard"),
                data.get("group_id"),
                region,
                data.get("birthday"),
                data.get("email"),
                data.get("notes", ""),
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        cid = int(row[0])
        for p in phones:
            await conn.execute(
                "INSERT INTO customer_phones (customer_id, e164) VALUES (%s, %s)", (cid, p)
            )
        for a in data.get("addresses", []):
            await conn.execute(
                "INSERT INTO customer_addresses (customer_id, text) VALUES (%s, %s)", (cid, a)
            )
        if data.get("birthday"):
            await conn.execute(
                "INSERT INTO customer_reminders (customer_id, kind, due_on, yearly, text) VALUES (%s, 'birthday', %s, true, 'Birthday')",
                (cid, data["birthday"]),
            )
        after = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in data.items()}
        await audit(conn, actor, "create", "customer", cid, None, after | {"phones": phones})
    return cid


async def update_customer(
    conn: AsyncConnection[Any], customer_id: int, body: Any, *, country: str, actor: int | None
) -> bool:
    """Change the given fields of a customer (phones and addresses, when given, replace the
    old lists); the audit log keeps before and after. False when there is no such customer."""
    data = parse(CustomerUpdate, body, context={"country": country})
    for key, table in (("group_id", "customer_groups"), ("manager_id", "users")):
        if data.get(key) is not None:
            cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (data[key],))
            if await cur.fetchone() is None:
                raise ValidationFailed({key: f"no such {key.removesuffix('_id')}"})
    columns = [
        k
        for k in ("name", "segment", "group_id", "manager_id", "birthday", "email", "notes")
        if k in data
    ]
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT name, segment, group_id, manager_id, birthday, email, notes FROM customers WHERE id = %s FOR UPDATE",
            (customer_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        before: dict[str, Any] = dict(
            zip(
                ("name", "segment", "group_id", "manager_id", "birthday", "email", "notes"),
                row,
                strict=True,
            )
        )
        if columns:
            sets = ", ".join(f"{c} = %s" for c in columns)
            await conn.execute(
                f"UPDATE customers SET {sets}, updated_at = now() WHERE id = %s",
                (*[data[c] for c in columns], customer_id),
            )
        if "phones" in data:
            phones = sorted({normalize(p, country) for p in data["phones"]})
            await conn.execute("DELETE FROM customer_phones WHERE customer_id = %s", (customer_id,))
            for p in phones:
                await conn.execute(
                    "INSERT INTO customer_phones (customer_id, e164) VALUES (%s, %s)",
                    (customer_id, p),
                )
            await conn.execute(
                "UPDATE customers SET region = %s WHERE id = %s",
                (await region_of(conn, phones[0]) if phones else None, customer_id),
            )
            data["phones"] = phones
        if "addresses" in data:
            await conn.execute(
                "DELETE FROM customer_addresses WHERE customer_id = %s", (customer_id,)
            )
            for a in data["addresses"]:
                await conn.execute(
                    "INSERT INTO customer_addresses (customer_id, text) VALUES (%s, %s)",
                    (customer_id, a),
                )
        plain = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in data.items()}
        await audit(
            conn,
            actor,
            "update",
            "customer",
            customer_id,
            {
                k: (v.isoformat() if isinstance(v, dt.date) else v)
                for k, v in before.items()
                if k in data
            },
            plain,
        )
    return True


def reminder_due(due: dt.date, yearly: bool, today: dt.date, window_days: int = 7) -> bool:
    if yearly:
        try:
            this_year = due.replace(year=today.year)
        except ValueError:  # 29 February in a common year
            this_year = dt.date(today.year, 3, 1)
        return 0 <= (this_year - today).days <= window_days or -1 <= (this_year - today).days < 0
    return abs((due - today).days) <= window_days


async def customer_card(
    conn: AsyncConnection[Any], customer_id: int, today: dt.date
) -> dict[str, Any] | None:
    """Everything the desktop shows when the customer calls (reminders due within a week)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, kind, name, segment, manager_id,
                  (SELECT full_name FROM users u WHERE u.id = manager_id) AS manager_name,
                  group_id, region, birthday, email, notes, created_at
           FROM customers WHERE id = %s""",
        (customer_id,),
    )
    c = await cur.fetchone()
    if c is None:
        return None
    await cur.execute(
        "SELECT e164, label FROM customer_phones WHERE customer_id = %s ORDER BY id", (customer_id,)
    )
    phones = await cur.fetchall()
    await cur.execute(
        "SELECT kind, text FROM customer_addresses WHERE customer_id = %s ORDER BY id",
        (customer_id,),
    )
    addresses = await cur.fetchall()
    await cur.execute(
        """SELECT contract_no, balance, currency, locked_until FROM accounts WHERE customer_id = %s ORDER BY contract_no""",
        (customer_id,),
    )
    accounts = await cur.fetchall()
    await cur.execute(
        "SELECT kind, due_on, yearly, text FROM customer_reminders WHERE customer_id = %s ORDER BY due_on",
        (customer_id,),
    )
    reminders = [r for r in await cur.fetchall() if reminder_due(r["due_on"], r["yearly"], today)]
    card: dict[str, Any] = json.loads(
        json.dumps(
            c
            | {
                "phones": phones,
                "addresses": addresses,
                "accounts": accounts,
                "reminders_due": reminders,
            },
            default=_json_default,
        )
    )
    return card


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A database row for JSON: dates and times as ISO text, decimals as text."""
    return {
        k: (
            v.isoformat()
            if isinstance(v, dt.date | dt.datetime)
            else str(v)
            if isinstance(v, Decimal)
            else v
        )
        for k, v in row.items()
    }


def _json_default(v: object) -> object:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(type(v))


@dataclass(frozen=True)
class PinResult:
    outcome: str  # "ok", "wrong_pin", "locked", "unknown_contract", "no_pin"
    attempts_left: int | None = None
    locked_until: dt.datetime | None = None
    balance: Decimal | None = None
    currency: str | None = None
    customer_id: int | None = None


async def _count_failure(
    conn: AsyncConnection[Any],
    acc_id: int,
    contract_no: str,
    failed: int,
    now: dt.datetime,
    max_attempts: int,
    lockout: dt.timedelta,
) -> PinResult:
    """Record one more failed attempt; the last allowed one locks the contract."""
    until = now + lockout if failed >= max_attempts else None
    await conn.execute(
        "UPDATE accounts SET failed_attempts = %s, locked_until = %s WHERE id = %s",
        (failed, until, acc_id),
    )
    if until is not None:
        await audit(
            conn, None, "lockout", "account", contract_no, None, {"locked_until": until.isoformat()}
        )
        return PinResult("locked", 0, until)
    return PinResult("wrong_pin", max_attempts - failed)


async def authorize_pin(
    conn: AsyncConnection[Any],
    contract_no: str,
    pin: str,
    now: dt.datetime,
    *,
    max_attempts: int = 3,
    lockout: dt.timedelta = dt.timedelta(minutes=30),
    dry_run: bool = False,
) -> PinResult:
    """Check a contract's PIN. ``max_attempts`` wrong PINs in a row lock it for ``lockout``;
    while locked even the right PIN is refused. The row is locked while checking, so two
    simultaneous guesses cannot both slip under the limit. ``dry_run`` (the flow editor's
    simulator): the same answer, nothing counted or written."""
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT id, pin_hash, failed_attempts, locked_until, balance, currency, customer_id
               FROM accounts WHERE contract_no = %s"""
            + ("" if dry_run else " FOR UPDATE"),
            (contract_no.strip(),),
        )
        row = await cur.fetchone()
        if row is None:
            return PinResult("unknown_contract")
        acc_id, pin_hash, failed, locked_until, balance, currency, customer_id = row
        if locked_until is not None and locked_until > now:
            return PinResult("locked", 0, locked_until)
        if pin_hash is None:
            return PinResult("no_pin")
        if locked_until is not None:  # the lock has run out: a fresh set of attempts
            failed = 0
        ok = await asyncio.to_thread(verify_secret, pin, pin_hash)
        if dry_run:
            if ok:
                return PinResult("ok", max_attempts, None, balance, currency, customer_id)
            return PinResult("wrong_pin", max(0, max_attempts - failed - 1))
        if ok:
            await conn.execute(
                "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE id = %s",
                (acc_id,),
            )
            return PinResult("ok", max_attempts, None, balance, currency, customer_id)
        return await _count_failure(
            conn, acc_id, contract_no, failed + 1, now, max_attempts, lockout
        )


QUESTIONS = {
    "last_payment_amount": "What was the amount of your last payment?",
    "address_street": "Which street is your service address on?",
}


async def security_questions(
    conn: AsyncConnection[Any], contract_no: str
) -> list[dict[str, str]] | None:
    """Questions built from the customer's own data, for callers who forgot their PIN
    (None: no such contract). Only questions the data can answer are offered."""
    cur = await conn.execute(
        """SELECT a.last_payment_amount, (SELECT text FROM customer_addresses d WHERE d.customer_id = a.customer_id ORDER BY id LIMIT 1)
           FROM accounts a WHERE a.contract_no = %s""",
        (contract_no.strip(),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    out = []
    if row[0] is not None:
        out.append({"id": "last_payment_amount", "text": QUESTIONS["last_payment_amount"]})
    if row[1]:
        out.append({"id": "address_street", "text": QUESTIONS["address_street"]})
    return out


def _answer_ok(kind: str, given: str, payment: Decimal | None, address: str | None) -> bool:
    given = given.strip()
    if kind == "last_payment_amount" and payment is not None:
        try:
            return Decimal(given.replace(",", ".")) == payment
        except ArithmeticError:
            return False
    if kind == "address_street" and address:
        # The street's name, at least four letters of it, as the address has it.
        words = [w.strip(",.").lower() for w in address.split()]
        g = given.lower()
        return len(g) >= 4 and any(
            len(w) >= 4 and (w.startswith(g) or g.startswith(w)) for w in words
        )
    return False


async def authorize_by_answers(
    conn: AsyncConnection[Any],
    contract_no: str,
    answers: dict[str, str],
    now: dt.datetime,
    *,
    max_attempts: int = 3,
    lockout: dt.timedelta = dt.timedelta(minutes=30),
) -> PinResult:
    """Authorize by answering every offered question right; wrong answers count against
    the same attempt limit and lockout as wrong PINs."""
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT a.id, a.failed_attempts, a.locked_until, a.balance, a.currency, a.customer_id, a.last_payment_amount,
                      (SELECT text FROM customer_addresses d WHERE d.customer_id = a.customer_id ORDER BY id LIMIT 1)
               FROM accounts a WHERE a.contract_no = %s FOR UPDATE""",
            (contract_no.strip(),),
        )
        row = await cur.fetchone()
        if row is None:
            return PinResult("unknown_contract")
        acc_id, failed, locked_until, balance, currency, customer_id, payment, address = row
        if locked_until is not None and locked_until > now:
            return PinResult("locked", 0, locked_until)
        if locked_until is not None:
            failed = 0
        offered = [
            k
            for k, present in (
                ("last_payment_amount", payment is not None),
                ("address_street", bool(address)),
            )
            if present
        ]
        if not offered:
            return PinResult("no_pin")
        if all(_answer_ok(k, answers.get(k, ""), payment, address) for k in offered):
            await conn.execute(
                "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE id = %s",
                (acc_id,),
            )
            return PinResult("ok", max_attempts, None, balance, currency, customer_id)
        return await _count_failure(
            conn, acc_id, contract_no, failed + 1, now, max_attempts, lockout
        )


@dataclass(frozen=True)
class User:
    id: int
    login: str
    full_name: str
    roles: frozenset[str]


async def create_user(
    conn: AsyncConnection[Any],
    login: str,
    full_name: str,
    password: str,
    roles: Sequence[str],
    actor: int | None,
) -> int:
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValidationFailed({"roles": f"unknown role(s): {', '.join(bad)}"})
    pw_hash = await asyncio.to_thread(hash_secret, password)
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO users (login, full_name, password_hash) VALUES (%s, %s, %s) ON CONFLICT (login) DO NOTHING RETURNING id",
            (login, full_name, pw_hash),
        )
        row = await cur.fetchone()
        if row is None:
            raise ValidationFailed({"login": "already taken"})
        uid = int(row[0])
        for r in roles:
            await conn.execute("INSERT INTO user_roles (user_id, role) VALUES (%s, %s)", (uid, r))
        await audit(
            conn,
            actor,
            "create",
            "user",
            uid,
            None,
            {"login": login, "full_name": full_name, "roles": list(roles)},
        )
    return uid


async def login(
    conn: AsyncConnection[Any], login_name: str, password: str, now: dt.datetime, ttl: dt.timedelta
) -> tuple[str, User] | None:
    cur = await conn.execute(
        "SELECT id, full_name, password_hash FROM users WHERE login = %s AND active", (login_name,)
    )
    row = await cur.fetchone()
    # Hash even for an unknown login, so timing does not tell which logins exist.
    stored = (
        row[2]
        if row
        else "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    )
    ok = await asyncio.to_thread(verify_secret, password, stored)
    if row is None or not ok:
        return None
    token, digest = new_token()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (token_sha256, user_id, expires_at) VALUES (%s, %s, %s)",
            (digest, row[0], now + ttl),
        )
        await audit(conn, row[0], "login", "user", row[0])
    user = await user_by_id(conn, row[0])
    assert user is not None
    return token, user


async def user_by_id(conn: AsyncConnection[Any], user_id: int) -> User | None:
    cur = await conn.execute(
        """SELECT u.id, u.login, u.full_name, coalesce(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}')
           FROM users u LEFT JOIN user_roles r ON r.user_id = u.id WHERE u.id = %s AND u.active GROUP BY u.id""",
        (user_id,),
    )
    row = await cur.fetchone()
    return None if row is None else User(row[0], row[1], row[2], frozenset(row[3]))


async def session_user(conn: AsyncConnection[Any], token: str, now: dt.datetime) -> User | None:
    cur = await conn.execute(
        "SELECT user_id FROM sessions WHERE token_sha256 = %s AND expires_at > %s",
        (token_digest(token), now),
    )
    row = await cur.fetchone()
    return None if row is None else await user_by_id(conn, row[0])


async def logout(conn: AsyncConnection[Any], token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_sha256 = %s", (token_digest(token),))


async def user_extension(conn: AsyncConnection[Any], user_id: int) -> str | None:
    """The operator's phone extension of a CRM user, if it has one."""
    cur = await conn.execute("SELECT extension FROM users WHERE id = %s", (user_id,))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


async def can_see_customer(
    conn: AsyncConnection[Any], user: User, customer_id: int, *, edit: bool = False
) -> bool:
    """Customers outside any group are open to every CRM role; a group's customers only to
    the roles its access list names (admins always). A customer that does not exist is
    seen by nobody (an admin's reminder for customer 0 was a 500, found by the fuzzer)."""
    if "admin" in user.roles:  # every customer, but only one that exists
        cur = await conn.execute("SELECT 1 FROM customers WHERE id = %s", (customer_id,))
        return await cur.fetchone() is not None
    cur = await conn.execute(
        """SELECT c.group_id IS NULL OR EXISTS (
               SELECT 1 FROM customer_group_access g
               WHERE g.group_id = c.group_id AND g.role = ANY(%s) AND (g.can_edit OR NOT %s))
           FROM customers c WHERE c.id = %s""",
        (list(user.roles), edit, customer_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])
