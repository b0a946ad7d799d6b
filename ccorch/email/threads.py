"""E-mail in the CRM: a received message becomes an interaction in a case (a new case for a
new thread, the thread's case for an answer), a reply is written before it is sent, and a
thread is read only by those who may read its case and its customer.

Threading: a message answering one we hold (In-Reply-To, then References) joins that
message's case. One that lost its headers but carries the case's tag ("[#123]") joins the
case only when its sender already wrote in that case or was written to from it, so a
stranger cannot put mail in someone else's case by guessing a number. An answer to a
resolved case reopens it (an automatic answer, such as an out-of-office, is kept in the case
without reopening it); to a closed (or rejected) one it starts a new case that says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from ccorch.crm.cases import (
    RESOLVED,
    WORKFLOWS,
    BusinessHours,
    CaseError,
    get_case,
    holidays,
    record_transition,
    sla_hours,
)
from ccorch.crm.store import User, audit, can_see_customer
from ccorch.email.message import ParsedMail, reply_subject
from ccorch.email.rules import Rule, classify
from ccorch.errors import RequestRefused


@dataclass(frozen=True)
class Taken:
    email_id: int
    case_id: int
    customer_id: int | None
    new_case: bool


async def load_rules(conn: AsyncConnection[Any]) -> list[Rule]:
    cur = await conn.execute(
        "SELECT field, pattern, topic_id, kind, confidential FROM email_rules ORDER BY position"
    )
    return [Rule(*r) for r in await cur.fetchall()]


async def replace_rules(conn: AsyncConnection[Any], rules: list[Rule], user: User) -> None:
    for i, rule in enumerate(rules):
        if rule.topic_id is not None:
            cur = await conn.execute("SELECT 1 FROM topics WHERE id = %s", (rule.topic_id,))
            if await cur.fetchone() is None:
                raise CaseError(422, f"rules[{i}].topic_id: no such topic")
    async with conn.transaction():
        before = [r.__dict__ for r in await load_rules(conn)]
        await conn.execute("DELETE FROM email_rules")
        for i, r in enumerate(rules):
            await conn.execute(
                "INSERT INTO email_rules (position, field, pattern, topic_id, kind, confidential)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (i, r.field, r.pattern, r.topic_id, r.kind, r.confidential),
            )
        await audit(conn, user.id, "update", "email_rules", 0, {"rules": before},
                    {"rules": [r.__dict__ for r in rules]})  # fmt: skip


async def _thread_case(conn: AsyncConnection[Any], mail: ParsedMail) -> int | None:
    if mail.thread_ids:
        cur = await conn.execute(
            """SELECT case_id FROM email_messages
               WHERE message_id = ANY(%s) AND case_id IS NOT NULL
               ORDER BY array_position(%s, message_id), received_at DESC LIMIT 1""",
            (mail.thread_ids, mail.thread_ids),
        )
        row = await cur.fetchone()
        if row is not None:
            return int(row[0])
    tag = mail.case_tag
    if tag is not None:
        cur = await conn.execute(
            """SELECT case_id FROM email_messages
               WHERE case_id = %s AND (from_addr = %s OR %s = ANY(to_addrs)) LIMIT 1""",
            (tag, mail.from_addr, mail.from_addr),
        )
        row = await cur.fetchone()
        if row is not None:
            return int(row[0])
    return None


async def _customer_by_address(conn: AsyncConnection[Any], address: str) -> int | None:
    """The one customer with this address on their card (none when two share it)."""
    cur = await conn.execute(
        "SELECT id FROM customers WHERE lower(email) = lower(%s) LIMIT 2", (address,)
    )
    rows = await cur.fetchall()
    return int(rows[0][0]) if len(rows) == 1 else None


async def take_incoming(
    conn: AsyncConnection[Any],
    mail: ParsedMail,
    raw: bytes,
    *,
    now: dt.datetime,
    hours: BusinessHours,
) -> Taken | None:
    """Keep a received message with its interaction and case, in the caller's transaction.
    None when this Message-ID is already kept (the mailbox read twice after a restart)."""
    cur = await conn.execute(
        "SELECT 1 FROM email_messages WHERE message_id = %s", (mail.message_id,)
    )
    if await cur.fetchone() is not None:
        return None
    case_id = await _thread_case(conn, mail)
    customer_id: int | None = None
    follows: int | None = None
    if case_id is not None:
        cur = await conn.execute(
            "SELECT kind, status, customer_id FROM cases WHERE id = %s FOR UPDATE", (case_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        kind, status, customer_id = row
        if status in ("closed", "rejected"):
            follows, case_id = case_id, None
        elif status in RESOLVED and not mail.auto_reply:  # (an out-of-office reopens nothing)
            reopen = next(s for s in WORKFLOWS[kind][status] if s not in RESOLVED)
            await conn.execute(
                "UPDATE cases SET status = %s, resolved_at = NULL WHERE id = %s", (reopen, case_id)
            )
            await record_transition(
                conn, case_id, now, None, status, reopen, "the customer wrote again"
            )
    if customer_id is None:
        customer_id = await _customer_by_address(conn, mail.from_addr)
    new_case = case_id is None
    if case_id is None:
        rule = classify(await load_rules(conn), mail)
        kind = rule.kind if rule else "instant"
        topic = rule.topic_id if rule else None
        sla = await sla_hours(conn, kind, topic)
        due = hours.add(now, sla, await holidays(conn, now.date())) if sla else None
        sender = f"{mail.from_name} <{mail.from_addr}>" if mail.from_name else mail.from_addr
        description = f"E-mail from {sender}" + (f", after case {follows}" if follows else "")
        cur = await conn.execute(
            """INSERT INTO cases (customer_id, topic_id, kind, status, subject, description,
                                  confidential, created_at, due_at)
               VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s) RETURNING id""",
            (customer_id, topic, kind, mail.subject[:300] or "(no subject)",
             f"{description}\n\n{mail.text}"[:10000], rule.confidential if rule else False,
             now, due),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        case_id = int(row[0])
        await record_transition(conn, case_id, now, None, None, "open", "from an e-mail")
    started = min(mail.sent_at or now, now)
    cur = await conn.execute(
        """INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at,
                                     disposition, notes, case_id)
           VALUES (%s, 'email', 'in', %s, %s, 'email', %s, %s) RETURNING id""",
        (customer_id, started, now, f"{mail.from_addr}: {mail.subject}"[:1000], case_id),
    )
    row = await cur.fetchone()
    assert row is not None
    interaction = int(row[0])
    email_id = await _insert_message(
        conn,
        direction="in",
        mail=mail,
        raw=raw,
        state="received",
        sent_at=mail.sent_at,
        received_at=now,
        customer_id=customer_id,
        case_id=case_id,
        interaction_id=interaction,
        user_id=None,
    )
    await audit(conn, None, "receive", "email", email_id, None,
                {"from": mail.from_addr, "case_id": case_id, "new_case": new_case})  # fmt: skip
    return Taken(email_id, case_id, customer_id, new_case)


async def _insert_message(
    conn: AsyncConnection[Any],
    *,
    direction: str,
    mail: ParsedMail,
    raw: bytes,
    state: str,
    sent_at: dt.datetime | None,
    received_at: dt.datetime,
    customer_id: int | None,
    case_id: int,
    interaction_id: int,
    user_id: int | None,
) -> int:
    cur = await conn.execute(
        """INSERT INTO email_messages (direction, message_id, in_reply_to, refs, from_addr,
               from_name, to_addrs, cc_addrs, subject, body_text, sent_at, received_at, raw,
               state, customer_id, case_id, interaction_id, created_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING id""",
        (direction, mail.message_id, mail.in_reply_to, mail.references, mail.from_addr,
         mail.from_name, mail.to_addrs, mail.cc_addrs, mail.subject, mail.text, sent_at,
         received_at, raw, state, customer_id, case_id, interaction_id, user_id),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    email_id = int(row[0])
    for a in mail.attachments:
        await conn.execute(
            """INSERT INTO email_attachments (message_id, filename, content_type, size, sha256, data)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (email_id, a.filename, a.content_type, len(a.data), a.sha256, a.data),
        )
    return email_id


async def readable_case(conn: AsyncConnection[Any], case_id: int, user: User) -> dict[str, Any]:
    """The case, when this user may read it and its customer (404 otherwise, as for a case
    that does not exist)."""
    case = await get_case(conn, case_id, user)
    if case["customer_id"] is not None and not await can_see_customer(
        conn, user, case["customer_id"]
    ):
        raise CaseError(404, f"no case {case_id}")
    return case


@dataclass(frozen=True)
class Reply:
    """What a reply needs from its case: to whom, under which message, with which subject."""

    to: str
    subject: str
    in_reply_to: str | None
    references: list[str]


async def reply_target(conn: AsyncConnection[Any], case: dict[str, Any]) -> Reply:
    """The customer's last message in the case is answered; a case with none (opened by
    phone, or only an unreadable message) writes to the address on the customer's card, in
    a new thread."""
    cur = await conn.execute(
        """SELECT from_addr, subject, message_id, refs FROM email_messages
           WHERE case_id = %s AND direction = 'in' AND from_addr <> ''
           ORDER BY received_at DESC, id DESC LIMIT 1""",
        (case["id"],),
    )
    row = await cur.fetchone()
    if row is not None:
        return Reply(row[0], reply_subject(row[1] or case["subject"], case["id"]), row[2],
                     list(row[3]))  # fmt: skip
    if case["customer_id"] is not None:
        cur = await conn.execute(
            "SELECT email FROM customers WHERE id = %s", (case["customer_id"],)
        )
        found = await cur.fetchone()
        if found is not None and found[0]:
            return Reply(found[0], f"{case['subject']} [#{case['id']}]", None, [])
    raise RequestRefused(409, f"case {case['id']} has no e-mail address to write to")


async def queue_reply(
    conn: AsyncConnection[Any],
    case: dict[str, Any],
    mail: ParsedMail,
    raw: bytes,
    *,
    user: User,
    now: dt.datetime,
) -> int:
    """Write the reply (state queued) with its interaction, in one transaction: from here
    it is sent even if the node stops before the SMTP server takes it."""
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at,
                                         agent_id, disposition, notes, case_id)
               VALUES (%s, 'email', 'out', %s, %s, %s, 'email', %s, %s) RETURNING id""",
            (case["customer_id"], now, now, user.id, f"to {mail.to_addrs[0]}: {mail.subject}"[:1000],
             case["id"]),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        email_id = await _insert_message(
            conn,
            direction="out",
            mail=mail,
            raw=raw,
            state="queued",
            sent_at=None,
            received_at=now,
            customer_id=case["customer_id"],
            case_id=case["id"],
            interaction_id=int(row[0]),
            user_id=user.id,
        )
        await audit(conn, user.id, "send", "email", email_id, None,
                    {"to": mail.to_addrs, "case_id": case["id"]})  # fmt: skip
    return email_id


async def thread(conn: AsyncConnection[Any], case_id: int, user: User) -> dict[str, Any]:
    case = await readable_case(conn, case_id, user)
    cur = await conn.execute(
        """SELECT m.id, m.direction, m.message_id, m.from_addr, m.from_name, m.to_addrs,
                  m.cc_addrs, m.subject, m.body_text, m.sent_at, m.received_at, m.state, m.error,
                  u.full_name
           FROM email_messages m LEFT JOIN users u ON u.id = m.created_by
           WHERE m.case_id = %s ORDER BY m.received_at, m.id""",
        (case_id,),
    )
    keys = ("id", "direction", "message_id", "from", "from_name", "to", "cc", "subject",
            "text", "sent_at", "received_at", "state", "error", "written_by")  # fmt: skip
    messages = [
        {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in zip(keys, r, strict=True)
        }
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        """SELECT a.message_id, a.id, a.filename, a.content_type, a.size FROM email_attachments a
           JOIN email_messages m ON m.id = a.message_id WHERE m.case_id = %s ORDER BY a.id""",
        (case_id,),
    )
    files: dict[int, list[dict[str, Any]]] = {}
    for mid, aid, name, ctype, size in await cur.fetchall():
        files.setdefault(mid, []).append(
            {"id": aid, "filename": name, "content_type": ctype, "size": size}
        )
    for m in messages:
        m["attachments"] = files.get(int(m["id"]), [])
    customer = None
    if case["customer_id"] is not None:
        cur = await conn.execute(
            "SELECT id, name, email FROM customers WHERE id = %s", (case["customer_id"],)
        )
        r = await cur.fetchone()
        customer = {"id": r[0], "name": r[1], "email": r[2]} if r else None
    return {"case": case, "customer": customer, "messages": messages}


async def threads(
    conn: AsyncConnection[Any], user: User, *, unanswered: bool, limit: int = 200
) -> list[dict[str, Any]]:
    """E-mail threads this user may read: unanswered ones (the customer wrote last and the
    case is not resolved) oldest first, the way they are worked; or all, newest first."""
    cur = await conn.execute(
        f"""WITH last AS (
                SELECT DISTINCT ON (case_id) case_id, direction, from_addr, from_name,
                       subject, received_at
                FROM email_messages WHERE case_id IS NOT NULL
                ORDER BY case_id, received_at DESC, id DESC)
            SELECT c.id, c.subject, c.status, c.kind, c.topic_id, t.name, c.customer_id,
                   cu.name, last.direction, last.from_addr, last.from_name, last.received_at,
                   c.due_at,
                   (SELECT count(*) FROM email_messages m WHERE m.case_id = c.id)
            FROM last JOIN cases c ON c.id = last.case_id
            LEFT JOIN customers cu ON cu.id = c.customer_id
            LEFT JOIN topics t ON t.id = c.topic_id
            WHERE (NOT c.confidential OR %(complaints)s)
              AND (cu.id IS NULL OR cu.group_id IS NULL OR %(admin)s OR EXISTS (
                   SELECT 1 FROM customer_group_access g
                   WHERE g.group_id = cu.group_id AND g.role = ANY(%(roles)s)))
              AND (NOT %(unanswered)s OR (last.direction = 'in' AND c.resolved_at IS NULL))
            ORDER BY last.received_at {"ASC" if unanswered else "DESC"}, c.id
            LIMIT %(limit)s""",
        {
            "complaints": bool(user.roles & {"complaints", "admin"}),
            "admin": "admin" in user.roles,
            "roles": list(user.roles),
            "unanswered": unanswered,
            "limit": limit,
        },
    )
    keys = ("case_id", "subject", "status", "kind", "topic_id", "topic", "customer_id",
            "customer", "last_direction", "from", "from_name", "last_at", "due_at",
            "messages")  # fmt: skip
    return [
        {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in zip(keys, r, strict=True)
        }
        for r in await cur.fetchall()
    ]


async def classify_thread(
    conn: AsyncConnection[Any],
    case_id: int,
    user: User,
    *,
    topic_id: int | None,
    customer_id: int | None,
    hours: BusinessHours,
) -> dict[str, Any]:
    """The operator classifies a thread: its topic (the deadline follows the topic's rule)
    and, for a sender the CRM did not know, the customer it is from."""
    async with conn.transaction():
        case = await readable_case(conn, case_id, user)
        before = {"topic_id": case["topic_id"], "customer_id": case["customer_id"]}
        after = dict(before)
        if topic_id is not None:
            cur = await conn.execute("SELECT 1 FROM topics WHERE id = %s", (topic_id,))
            if await cur.fetchone() is None:
                raise CaseError(422, "topic_id: no such topic")
            after["topic_id"] = topic_id
            sla = await sla_hours(conn, case["kind"], topic_id)
            created = dt.datetime.fromisoformat(case["created_at"])
            due = hours.add(created, sla, await holidays(conn, created.date())) if sla else None
            await conn.execute(
                "UPDATE cases SET topic_id = %s, due_at = %s WHERE id = %s",
                (topic_id, due, case_id),
            )
        if customer_id is not None:
            if not await can_see_customer(conn, user, customer_id):
                raise CaseError(422, "customer_id: no such customer")
            after["customer_id"] = customer_id
            await conn.execute(
                "UPDATE cases SET customer_id = %s WHERE id = %s", (customer_id, case_id)
            )
            for table in ("email_messages", "interactions"):
                await conn.execute(
                    f"UPDATE {table} SET customer_id = %s WHERE case_id = %s"
                    " AND (customer_id IS NULL OR customer_id = %s)",
                    (customer_id, case_id, before["customer_id"]),
                )
        await audit(conn, user.id, "classify", "case", case_id, before, after)
    return await thread(conn, case_id, user)


async def attachment(
    conn: AsyncConnection[Any], attachment_id: int, user: User
) -> tuple[str, str, bytes]:
    """An attachment's name, type and bytes, for one who may read its message's case."""
    cur = await conn.execute(
        """SELECT m.case_id, a.filename, a.content_type, a.data FROM email_attachments a
           JOIN email_messages m ON m.id = a.message_id WHERE a.id = %s""",
        (attachment_id,),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise RequestRefused(404, f"no attachment {attachment_id}")
    try:
        await readable_case(conn, row[0], user)
    except CaseError:
        raise RequestRefused(404, f"no attachment {attachment_id}") from None
    return row[1], row[2], bytes(row[3])
