"""Cases (work orders): three kinds with their status workflows, every transition recorded,
SLA deadlines in business hours over a holiday calendar, overdue alarms, callback tasks.

Kinds and workflows (``final`` states end the SLA clock):
* instant answer: open → resolved → closed;
* escalation to a department, with supervisor approval:
  open → pending_approval → approved → in_progress → resolved → closed (or → rejected);
* dispatch with field tracking: open → dispatched → on_site → resolved → closed.
A resolved case with ``callback_required`` creates a callback task for the customer.
Times come from the caller (``now``), so tests run on a controllable clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from pydantic import Field

from ccorch.api.validation import Body, Id, OneOf, ValidationFailed, parse
from ccorch.crm import recordings
from ccorch.crm.store import User, audit, can_see_customer
from ccorch.errors import RequestRefused

WORKFLOWS: dict[str, dict[str, tuple[str, ...]]] = {
    "instant": {"open": ("resolved",), "resolved": ("closed", "open"), "closed": ()},
    "escalation": {
        "open": ("pending_approval",),
        "pending_approval": ("approved", "rejected"),
        "approved": ("in_progress",),
        "in_progress": ("resolved",),
        "resolved": ("closed", "in_progress"),
        "rejected": ("closed",),
        "closed": (),
    },
    "dispatch": {
        "open": ("dispatched",),
        "dispatched": ("on_site", "open"),
        "on_site": ("resolved",),
        "resolved": ("closed", "dispatched"),
        "closed": (),
    },
}
# Only a supervisor (or admin) decides an escalation.
APPROVALS = {("pending_approval", "approved"), ("pending_approval", "rejected")}
RESOLVED = {"resolved", "closed", "rejected"}


class CaseError(RequestRefused):
    """A case operation that the workflow or the user's roles do not allow."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)


KYIV = ZoneInfo("Europe/Kyiv")


@dataclass(frozen=True)
class BusinessHours:
    """Working hours (same each working day) in a time zone, with holidays off."""

    tz: ZoneInfo = KYIV
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(18, 0)
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0

    def add(self, t: dt.datetime, hours: float, holidays: Iterable[dt.date] = ()) -> dt.datetime:
        """The instant ``hours`` of working time after ``t``."""
        off = set(holidays)
        left = dt.timedelta(hours=hours)
        local = t.astimezone(self.tz)
        for _ in range(3660):  # at most ten years of days
            day = local.date()
            if day.weekday() in self.weekdays and day not in off:
                open_at = dt.datetime.combine(day, self.start, self.tz)
                close_at = dt.datetime.combine(day, self.end, self.tz)
                begin = max(local, open_at)
                if begin < close_at:
                    available = close_at - begin
                    if left <= available:
                        return (begin + left).astimezone(dt.UTC)
                    left -= available
            local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), self.tz)
        raise CaseError(422, "no working time found within ten years")


class NewCase(Body):
    customer_id: Id | None = None
    topic_id: Id | None = None
    kind: Annotated[str, OneOf(WORKFLOWS)]
    subject: Annotated[str, Field(min_length=1, max_length=300)]
    description: Annotated[str, Field(max_length=10000)] | None = None
    confidential: bool | None = Field(
        None, description="a complaint: only the complaints role may read it"
    )
    callback_required: bool | None = None
    department_id: Id | None = None
    assignee_id: Id | None = None
    interaction_id: Id | None = Field(
        None,
        description="the contact the case is about (e.g. a recorded call): it joins the"
        " case, and a confidential case makes the call's recording confidential",
    )


class CaseTransition(Body):
    to: Annotated[str, Field(min_length=1, max_length=40)]
    comment: Annotated[str, Field(max_length=5000)] | None = None


async def sla_hours(conn: AsyncConnection[Any], kind: str, topic_id: int | None) -> float | None:
    cur = await conn.execute(
        """SELECT hours FROM sla_rules WHERE kind = %s AND (topic_id = %s OR topic_id IS NULL)
           ORDER BY topic_id IS NULL LIMIT 1""",
        (kind, topic_id),
    )
    row = await cur.fetchone()
    return None if row is None else float(row[0])


async def holidays(conn: AsyncConnection[Any], start: dt.date) -> list[dt.date]:
    cur = await conn.execute("SELECT day FROM holidays WHERE day >= %s", (start,))
    return [r[0] for r in await cur.fetchall()]


async def record_transition(
    conn: AsyncConnection[Any],
    case_id: int,
    at: dt.datetime,
    user_id: int | None,
    from_status: str | None,
    to_status: str,
    comment: str = "",
) -> None:
    """One step of a case's history (``case_transitions``); ``user_id`` None: the system
    (the IVR, a customer's e-mail)."""
    await conn.execute(
        """INSERT INTO case_transitions (case_id, at, user_id, from_status, to_status, comment)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (case_id, at, user_id, from_status, to_status, comment),
    )


async def create_case(
    conn: AsyncConnection[Any], body: Any, user: User, now: dt.datetime, hours: BusinessHours
) -> dict[str, Any]:
    data = parse(NewCase, body)
    for key, table in (
        ("customer_id", "customers"),
        ("topic_id", "topics"),
        ("department_id", "org_units"),
        ("assignee_id", "users"),
    ):
        if data.get(key) is not None:
            cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (data[key],))
            if await cur.fetchone() is None:
                raise ValidationFailed({key: f"no such {key.removesuffix('_id')}"})
    if data.get("customer_id") is not None and not await can_see_customer(
        conn, user, data["customer_id"]
    ):
        raise ValidationFailed({"customer_id": "no such customer"})
    about: int | None = data.get("interaction_id")
    if about is not None:
        cur = await conn.execute(
            "SELECT customer_id, case_id FROM interactions WHERE id = %s FOR UPDATE", (about,)
        )
        contact = await cur.fetchone()
        if contact is None or (
            contact[0] is not None and not await can_see_customer(conn, user, contact[0])
        ):
            raise ValidationFailed({"interaction_id": "no such interaction"})
        if contact[1] is not None:
            raise CaseError(409, f"interaction {about} already belongs to case {contact[1]}")
        if data.get("customer_id") is None:
            data["customer_id"] = contact[0]
    sla = await sla_hours(conn, data["kind"], data.get("topic_id"))
    due = hours.add(now, sla, await holidays(conn, now.date())) if sla else None
    callback = data.get("callback_required", data["kind"] == "dispatch")
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO cases (customer_id, topic_id, kind, status, subject, description, confidential,
                                  callback_required, department_id, assignee_id, created_by, created_at, due_at)
               VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                data.get("customer_id"),
                data.get("topic_id"),
                data["kind"],
                data["subject"],
                data.get("description", ""),
                data.get("confidential", False),
                callback,
                data.get("department_id"),
                data.get("assignee_id"),
                user.id,
                now,
                due,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        case_id = int(row[0])
        await record_transition(conn, case_id, now, user.id, None, "open")
        if about is not None:
            await conn.execute(
                "UPDATE interactions SET case_id = %s WHERE id = %s", (case_id, about)
            )
        await audit(
            conn,
            user.id,
            "create",
            "case",
            case_id,
            None,
            {"kind": data["kind"], "subject": data["subject"]},
        )
    return {"id": case_id, "status": "open", "due_at": due.isoformat() if due else None}


async def request_from_ivr(
    conn: AsyncConnection[Any],
    *,
    what: str,
    number: str,
    customer_id: int | None,
    started_at: dt.datetime,
    now: dt.datetime,
    hours: BusinessHours,
    queue: str | None = None,
    recording: Path | None = None,
    sip_call_id: str | None = None,
) -> int:
    """A caller's voicemail or callback request, left in the IVR: the interaction (channel
    voicemail, or a call), an open instant case that needs a callback (due by the instant
    kind's SLA), and the callback task, in one transaction. Returns the case id."""
    if what not in ("voicemail", "callback"):
        raise ValueError(what)
    subject = (
        f"Voicemail from {number or 'an unknown number'}"
        if what == "voicemail"
        else f"Callback requested by {number or 'an unknown number'}"
    )
    sla = await sla_hours(conn, "instant", None)
    due = hours.add(now, sla, await holidays(conn, now.date())) if sla else now
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO cases (customer_id, kind, status, subject, description,
                                  callback_required, created_at, due_at)
               VALUES (%s, 'instant', 'open', %s, %s, true, %s, %s) RETURNING id""",
            (customer_id, subject, f"left in the IVR; call back {number}", now, due),
        )
        row = await cur.fetchone()
        assert row is not None
        case_id = int(row[0])
        await record_transition(conn, case_id, now, None, None, "open", "from the IVR")
        recording_id = (
            await recordings.link(
                conn,
                recording,
                "voicemail",
                sip_call_id=sip_call_id,
                customer_id=customer_id,
                case_id=case_id,
                created_at=started_at,
            )
            if recording is not None
            else None
        )
        await conn.execute(
            """INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at,
                                         queue, disposition, notes, recording_id, case_id)
               VALUES (%s, %s, 'in', %s, %s, %s, %s, %s, %s, %s)""",
            (
                customer_id,
                "voicemail" if what == "voicemail" else "call",
                started_at,
                now,
                queue,
                f"{what}-request" if what == "callback" else "voicemail",
                f"from {number}",
                recording_id,
                case_id,
            ),
        )
        await conn.execute(
            """INSERT INTO tasks (kind, case_id, customer_id, due_at, created_at, phone, queue)
               VALUES ('callback', %s, %s, %s, %s, %s, %s)""",
            (case_id, customer_id, due, now, number or None, queue),
        )
        await audit(conn, None, "create", "case", case_id, None, {"kind": what, "number": number})
    return case_id


def _may_read(user: User, confidential: bool) -> bool:
    return not confidential or bool(user.roles & {"complaints", "admin"})


def next_states(user: User, kind: str, status: str) -> list[str]:
    """The states this user may move a case to from ``status`` (approvals: supervisors)."""
    boss = bool(user.roles & {"supervisor", "admin"})
    return [
        to
        for to in WORKFLOWS.get(kind, {}).get(status, ())
        if boss or (status, to) not in APPROVALS
    ]


async def of_customer(
    conn: AsyncConnection[Any], customer_id: int, user: User, limit: int = 50
) -> list[dict[str, Any]]:
    """The customer's cases the user may read, open ones first, then newest first."""
    cur = await conn.execute(
        """SELECT id, kind, status, subject, topic_id, confidential, created_at, due_at,
                  resolved_at
           FROM cases WHERE customer_id = %s
           ORDER BY resolved_at IS NOT NULL, created_at DESC, id DESC LIMIT %s""",
        (customer_id, limit),
    )
    keys = ("id", "kind", "status", "subject", "topic_id", "confidential", "created_at",
            "due_at", "resolved_at")  # fmt: skip
    out = []
    for row in await cur.fetchall():
        if not _may_read(user, row[5]):
            continue
        case = {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in zip(keys, row, strict=True)
        }
        case["next"] = next_states(user, case["kind"], case["status"])
        out.append(case)
    return out


async def transition(
    conn: AsyncConnection[Any], case_id: int, body: Any, user: User, now: dt.datetime
) -> dict[str, Any]:
    data = parse(CaseTransition, body)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT kind, status, confidential, callback_required, customer_id FROM cases WHERE id = %s FOR UPDATE",
            (case_id,),
        )
        row = await cur.fetchone()
        if row is None or not _may_read(user, row[2]):
            raise CaseError(404, f"no case {case_id}")
        kind, status, _, callback, customer_id = row
        to = data["to"]
        allowed = WORKFLOWS[kind].get(status, ())
        if to not in allowed:
            raise CaseError(
                409,
                f"a {kind} case cannot go from {status} to {to}; allowed: {', '.join(allowed) or 'nothing'}",
            )
        if (status, to) in APPROVALS and not user.roles & {"supervisor", "admin"}:
            raise CaseError(403, "only a supervisor approves or rejects an escalation")
        resolved_at = now if to in RESOLVED else None
        await conn.execute(
            "UPDATE cases SET status = %s, resolved_at = CASE WHEN %s THEN coalesce(resolved_at, %s) ELSE NULL END WHERE id = %s",
            (to, to in RESOLVED, resolved_at, case_id),
        )
        await record_transition(conn, case_id, now, user.id, status, to, data.get("comment", ""))
        task_id = None
        if to == "resolved" and callback:
            cur = await conn.execute(
                """INSERT INTO tasks (kind, case_id, customer_id, due_at, created_at)
                   VALUES ('callback', %s, %s, %s, %s) RETURNING id""",
                (case_id, customer_id, now + dt.timedelta(hours=4), now),
            )
            task = await cur.fetchone()
            task_id = task[0] if task else None
        await audit(
            conn, user.id, "transition", "case", case_id, {"status": status}, {"status": to}
        )
    return {"id": case_id, "status": to, "callback_task_id": task_id}


class CaseAssignment(Body):
    department_id: Id | None = Field(None, description="the department it goes to")
    assignee_id: Id | None = Field(None, description="the user who works it")


async def assign(conn: AsyncConnection[Any], case_id: int, body: Any, user: User) -> dict[str, Any]:
    """Give the case to another department or user (supervisors); the audit log keeps who
    had it before."""
    data = parse(CaseAssignment, body)
    if not data:
        raise ValidationFailed({"(body)": "give department_id, assignee_id or both"})
    for key, table in (("department_id", "org_units"), ("assignee_id", "users")):
        if key in data:
            cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (data[key],))
            if await cur.fetchone() is None:
                raise ValidationFailed({key: f"no such {key.removesuffix('_id')}"})
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT confidential, department_id, assignee_id FROM cases WHERE id = %s FOR UPDATE",
            (case_id,),
        )
        row = await cur.fetchone()
        if row is None or not _may_read(user, row[0]):
            raise CaseError(404, f"no case {case_id}")
        before = {"department_id": row[1], "assignee_id": row[2]}
        after = before | data
        await conn.execute(
            "UPDATE cases SET department_id = %s, assignee_id = %s WHERE id = %s",
            (after["department_id"], after["assignee_id"], case_id),
        )
        await audit(conn, user.id, "assign", "case", case_id, before, after)
    return await get_case(conn, case_id, user)


async def get_case(conn: AsyncConnection[Any], case_id: int, user: User) -> dict[str, Any]:
    cur = await conn.execute(
        """SELECT id, customer_id, topic_id, kind, status, subject, description, confidential, callback_required,
                  department_id, assignee_id, created_at, due_at, resolved_at, overdue_alarmed_at
           FROM cases WHERE id = %s""",
        (case_id,),
    )
    row = await cur.fetchone()
    if row is None or not _may_read(user, row[7]):
        raise CaseError(404, f"no case {case_id}")
    keys = (
        "id",
        "customer_id",
        "topic_id",
        "kind",
        "status",
        "subject",
        "description",
        "confidential",
        "callback_required",
        "department_id",
        "assignee_id",
        "created_at",
        "due_at",
        "resolved_at",
        "overdue_alarmed_at",
    )
    case = {
        k: (v.isoformat() if isinstance(v, dt.datetime) else v)
        for k, v in zip(keys, row, strict=True)
    }
    case["next"] = next_states(user, case["kind"], case["status"])
    cur = await conn.execute(
        "SELECT at, user_id, from_status, to_status, comment FROM case_transitions WHERE case_id = %s ORDER BY at, id",
        (case_id,),
    )
    case["transitions"] = [
        {"at": r[0].isoformat(), "user_id": r[1], "from": r[2], "to": r[3], "comment": r[4]}
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT id, kind, due_at, status FROM tasks WHERE case_id = %s ORDER BY id", (case_id,)
    )
    case["tasks"] = [
        {"id": r[0], "kind": r[1], "due_at": r[2].isoformat(), "status": r[3]}
        for r in await cur.fetchall()
    ]
    return case


async def raise_overdue_alarms(
    conn: AsyncConnection[Any], now: dt.datetime
) -> list[dict[str, Any]]:
    """Mark every open case past its deadline as alarmed (once) and return them: the events
    supervision publishes, and the overdue report's new rows."""
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE cases SET overdue_alarmed_at = %s
               WHERE resolved_at IS NULL AND due_at < %s AND overdue_alarmed_at IS NULL
               RETURNING id, kind, subject, due_at, department_id, assignee_id""",
            (now, now),
        )
        rows = await cur.fetchall()
        for r in rows:
            await audit(conn, None, "overdue", "case", r[0], None, {"due_at": r[3].isoformat()})
    return [
        {
            "case_id": r[0],
            "kind": r[1],
            "subject": r[2],
            "due_at": r[3].isoformat(),
            "department_id": r[4],
            "assignee_id": r[5],
        }
        for r in rows
    ]


async def count_overdue(conn: AsyncConnection[Any], now: dt.datetime) -> int:
    """Open cases past their deadline now."""
    cur = await conn.execute(
        "SELECT count(*) FROM cases WHERE resolved_at IS NULL AND due_at < %s", (now,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def overdue_report(
    conn: AsyncConnection[Any], now: dt.datetime, user: User
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, kind, status, subject, due_at, confidential FROM cases
           WHERE resolved_at IS NULL AND due_at < %s ORDER BY due_at""",
        (now,),
    )
    return [
        {
            "case_id": r[0],
            "kind": r[1],
            "status": r[2],
            "subject": r[3],
            "due_at": r[4].isoformat(),
            "overdue_hours": round((now - r[4]).total_seconds() / 3600, 2),
        }
        for r in await cur.fetchall()
        if _may_read(user, r[5])
    ]


class NewInteraction(Body):
    customer_id: Id
    channel: Literal["call", "voicemail", "sms", "email", "chat"]
    direction: Literal["in", "out"]
    started_at: Annotated[str, Field(max_length=40, description="ISO 8601 with offset")]
    ended_at: Annotated[str, Field(max_length=40)] | None = None
    queue: Annotated[str, Field(max_length=100)] | None = None
    disposition: Annotated[str, Field(max_length=100)] | None = None
    notes: Annotated[str, Field(max_length=10000)] | None = None
    case_id: Id | None = None


def _instant(name: str, v: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValidationFailed({name: "expected an ISO 8601 date and time"}) from None
    if t.tzinfo is None:
        raise ValidationFailed({name: "needs a UTC offset (e.g. +00:00)"})
    return t


async def add_interaction(conn: AsyncConnection[Any], body: Any, user: User) -> int:
    data = parse(NewInteraction, body)
    started = _instant("started_at", data["started_at"])
    ended = _instant("ended_at", data["ended_at"]) if data.get("ended_at") else None
    if ended is not None and ended < started:
        raise ValidationFailed({"ended_at": "before started_at"})
    cur = await conn.execute("SELECT 1 FROM customers WHERE id = %s", (data["customer_id"],))
    if await cur.fetchone() is None:
        raise ValidationFailed({"customer_id": "no such customer"})
    if data.get("case_id") is not None:
        # the case is checked as the user may read it, like a case fetched by id
        cur = await conn.execute("SELECT confidential FROM cases WHERE id = %s", (data["case_id"],))
        case = await cur.fetchone()
        if case is None or not _may_read(user, bool(case[0])):
            raise ValidationFailed({"case_id": "no such case"})
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO interactions (customer_id, channel, direction, started_at, ended_at, queue, agent_id,
                                         disposition, notes, case_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                data["customer_id"],
                data["channel"],
                data["direction"],
                started,
                ended,
                data.get("queue"),
                user.id,
                data.get("disposition"),
                data.get("notes", ""),
                data.get("case_id"),
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit(
            conn, user.id, "create", "interaction", row[0], None, {"channel": data["channel"]}
        )
    return int(row[0])


def _cursor(before: str | None) -> tuple[dt.datetime, int] | None:
    if not before:
        return None
    at, _, ident = before.rpartition("|")
    try:
        return dt.datetime.fromisoformat(at), int(ident)
    except ValueError:
        raise ValidationFailed({"before": "a cursor from next_before"}) from None


async def history(
    conn: AsyncConnection[Any], customer_id: int, limit: int, before: str | None
) -> dict[str, Any]:
    """Every contact of a customer in any channel, newest first, a page at a time
    (keyset paging on start time and id, so contacts logged late still sort right)."""
    cursor = _cursor(before)
    cur = await conn.execute(
        """SELECT id, channel, direction, started_at, ended_at, queue, agent_id, disposition, notes, recording_id, case_id
           FROM interactions WHERE customer_id = %s AND (%s::timestamptz IS NULL OR (started_at, id) < (%s, %s))
           ORDER BY started_at DESC, id DESC LIMIT %s""",
        (customer_id, cursor and cursor[0], cursor and cursor[0], cursor and cursor[1], limit),
    )
    keys = (
        "id",
        "channel",
        "direction",
        "started_at",
        "ended_at",
        "queue",
        "agent_id",
        "disposition",
        "notes",
        "recording_id",
        "case_id",
    )
    items = [
        {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in zip(keys, r, strict=True)
        }
        for r in await cur.fetchall()
    ]
    last = items[-1] if len(items) == limit else None
    return {"items": items, "next_before": f"{last['started_at']}|{last['id']}" if last else None}
