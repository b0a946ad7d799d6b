"""The operator's personal workbench (seed 004: 智能桌面): the callbacks and tasks due, the
cases assigned to me, today's reminders of the customers I manage, my own schedule, the supervisors'
bulletin board, and the employee directory (seed 003), each user seeing the colleagues of
its own organization (the top org unit above it); supervisors and admins see everyone.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import json_body, pool, request_now
from ccorch.api.routes import Route
from ccorch.api.validation import Body, ValidationFailed, parse
from ccorch.crm.store import User, audit, reminder_due
from ccorch.errors import RequestRefused

READERS = ("operator", "supervisor", "complaints", "admin")
POSTERS = ("supervisor", "admin")
SEE_EVERYONE = {"supervisor", "admin"}


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for k, v in r.items()}
        for r in rows
    ]


# A task is mine when its case is assigned to me or was opened by me, or its customer is
# one I manage.
MY_TASKS = """FROM tasks t LEFT JOIN cases c ON c.id = t.case_id
              LEFT JOIN customers cu ON cu.id = t.customer_id"""
MINE = "(c.assignee_id = %(me)s OR c.created_by = %(me)s OR cu.manager_id = %(me)s)"


async def workbench(conn: AsyncConnection[Any], user: User, now: dt.datetime) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    # callbacks and reminders tasks: of cases assigned to me or opened by me, or of the
    # customers I manage; due within a day, overdue first
    await cur.execute(
        f"""SELECT t.id, t.kind, t.due_at, t.case_id, t.customer_id, c.subject,
                   cu.name AS customer_name
            {MY_TASKS}
            WHERE t.status = 'open' AND t.due_at < %(until)s AND {MINE}
            ORDER BY t.due_at LIMIT 100""",
        {"until": now + dt.timedelta(days=1), "me": user.id},
    )
    tasks = _plain(await cur.fetchall())
    await cur.execute(
        """SELECT id, kind, status, subject, due_at, customer_id FROM cases
           WHERE assignee_id = %s AND resolved_at IS NULL
             AND (NOT confidential OR %s)
           ORDER BY due_at NULLS LAST LIMIT 100""",
        (user.id, bool(user.roles & {"complaints", "admin"})),
    )
    cases = _plain(await cur.fetchall())
    await cur.execute(
        """SELECT r.id, r.kind, r.due_on, r.yearly, r.text, c.id AS customer_id,
                  c.name AS customer_name
           FROM customer_reminders r JOIN customers c ON c.id = r.customer_id
           WHERE c.manager_id = %s ORDER BY r.due_on""",
        (user.id,),
    )
    today = now.date()
    reminders = _plain(
        [r for r in await cur.fetchall() if reminder_due(r["due_on"], r["yearly"], today, 0)]
    )
    # my schedule: what is not done, from the start of today on
    await cur.execute(
        """SELECT id, at, text FROM agenda_items
           WHERE user_id = %s AND NOT done AND at >= %s ORDER BY at LIMIT 50""",
        (user.id, dt.datetime.combine(today, dt.time(0), now.tzinfo)),
    )
    agenda = _plain(await cur.fetchall())
    return {
        "tasks": tasks,
        "cases": cases,
        "reminders": reminders,
        "agenda": agenda,
        "announcements": await announcements(conn, now),
    }


async def announcements(conn: AsyncConnection[Any], now: dt.datetime) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT a.id, a.text, a.created_at, a.expires_at, u.full_name AS author
           FROM announcements a LEFT JOIN users u ON u.id = a.author_id
           WHERE a.expires_at > %s ORDER BY a.created_at DESC LIMIT 50""",
        (now,),
    )
    return _plain(await cur.fetchall())


async def employees(conn: AsyncConnection[Any], user: User, q: str) -> list[dict[str, Any]]:
    """The colleagues this user may see: everyone for supervisors and admins, else those of
    the same organization (the top org unit above one's own; no unit: the others without)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """WITH RECURSIVE up(user_id, unit, parent) AS (
               SELECT u.id, o.id, o.parent_id FROM users u LEFT JOIN org_units o ON o.id = u.org_unit_id
             UNION ALL
               SELECT up.user_id, o.id, o.parent_id FROM up JOIN org_units o ON o.id = up.parent
           ),
           top AS (SELECT user_id, unit FROM up WHERE parent IS NULL)
           SELECT u.id, u.full_name, u.extension, o.name AS unit,
                  array(SELECT role FROM user_roles r WHERE r.user_id = u.id ORDER BY role) AS roles
           FROM users u LEFT JOIN org_units o ON o.id = u.org_unit_id
                JOIN top t ON t.user_id = u.id
           WHERE u.active
             AND (%s OR t.unit IS NOT DISTINCT FROM (SELECT unit FROM top WHERE user_id = %s))
             AND (%s = '' OR u.full_name ILIKE %s OR u.extension LIKE %s OR o.name ILIKE %s)
           ORDER BY u.full_name LIMIT 200""",
        (bool(user.roles & SEE_EVERYONE), user.id, q, f"%{q}%", f"{q}%", f"%{q}%"),
    )
    return list(await cur.fetchall())


class NewAnnouncement(Body):
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    hours: (
        Annotated[int, Field(ge=1, le=24 * 30, description="shown for so long (default 8)")] | None
    ) = None


class AgendaItem(Body):
    at: Annotated[str, Field(max_length=40, description="ISO 8601 with an offset (or Z)")]
    text: Annotated[str, Field(min_length=1, max_length=500)]


# --- the API -------------------------------------------------------------------------------


async def get_workbench(request: Request) -> HTTPResponse:
    async with pool(request).connection() as conn:
        return json(await workbench(conn, request.ctx.user, request_now(request)))


async def task_done(request: Request, task_id: int) -> HTTPResponse:
    user: User = request.ctx.user
    async with pool(request).connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"SELECT 1 {MY_TASKS} WHERE t.id = %(task)s AND (%(boss)s OR {MINE})",
            {"task": task_id, "me": user.id, "boss": bool(user.roles & SEE_EVERYONE)},
        )
        if await cur.fetchone() is None:
            raise RequestRefused(404, f"no task {task_id} of yours")
        cur = await conn.execute(
            "UPDATE tasks SET status = 'done' WHERE id = %s AND status = 'open' RETURNING id",
            (task_id,),
        )
        if await cur.fetchone() is None:
            raise RequestRefused(409, f"task {task_id} is not open")
        await audit(conn, user.id, "done", "task", task_id, {"status": "open"}, {"status": "done"})
    return json({"id": task_id, "status": "done"})


async def add_agenda(request: Request) -> HTTPResponse:
    data = parse(AgendaItem, json_body(request))
    try:
        at = dt.datetime.fromisoformat(data["at"])
    except ValueError:
        raise ValidationFailed({"at": "expected ISO 8601 (2026-12-06T15:00:00+02:00)"}) from None
    if at.tzinfo is None:
        raise ValidationFailed({"at": "give the offset (+02:00, or Z)"})
    async with pool(request).connection() as conn:
        cur = await conn.execute(
            "INSERT INTO agenda_items (user_id, at, text) VALUES (%s, %s, %s) RETURNING id",
            (request.ctx.user.id, at, data["text"]),
        )
        row = await cur.fetchone()
        assert row is not None
    return json({"id": row[0], "at": at.isoformat(), "text": data["text"]}, status=201)


async def agenda_done(request: Request, item_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        cur = await conn.execute(
            "UPDATE agenda_items SET done = true WHERE id = %s AND user_id = %s RETURNING id",
            (item_id, request.ctx.user.id),
        )
        if await cur.fetchone() is None:  # someone else's is as unknown as a missing one
            raise RequestRefused(404, f"no agenda item {item_id} of yours")
    return json({"id": item_id, "done": True})


async def list_announcements(request: Request) -> HTTPResponse:
    async with pool(request).connection() as conn:
        return json({"items": await announcements(conn, request_now(request))})


async def post_announcement(request: Request) -> HTTPResponse:
    data = parse(NewAnnouncement, json_body(request))
    now = request_now(request)
    expires = now + dt.timedelta(hours=data.get("hours", 8))
    async with pool(request).connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO announcements (author_id, text, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (request.ctx.user.id, data["text"], now, expires),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit(conn, request.ctx.user.id, "create", "announcement", row[0], None,
                    {"text": data["text"], "expires_at": expires.isoformat()})  # fmt: skip
    item = {"id": row[0], "text": data["text"], "created_at": now.isoformat(),
            "expires_at": expires.isoformat(), "author": request.ctx.user.full_name}  # fmt: skip
    stream = getattr(request.app.ctx, "events", None)
    acd = getattr(request.app.ctx, "acd", None)
    if stream is not None:  # every operator of every queue sees it at once
        queues = set(acd.queue_ids) if acd is not None else set()
        stream.publish("announcement", item, queues=queues)
    return json(item, status=201)


async def delete_announcement(request: Request, announcement_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE announcements SET expires_at = %s WHERE id = %s AND expires_at > %s"
            " RETURNING id",
            (request_now(request), announcement_id, request_now(request)),
        )
        if await cur.fetchone() is None:
            raise RequestRefused(404, f"no announcement {announcement_id} showing")
        await audit(conn, request.ctx.user.id, "withdraw", "announcement", announcement_id)
    return json({"id": announcement_id, "withdrawn": True})


async def list_employees(request: Request) -> HTTPResponse:
    q = request.args.get("q", "").strip()
    if len(q) > 100 or "\x00" in q:
        raise RequestRefused(422, "q: at most 100 characters")
    async with pool(request).connection() as conn:
        items = await employees(conn, request.ctx.user, q)
    acd = getattr(request.app.ctx, "acd", None)
    for e in items:  # presence: the operator's ACD state now
        st = acd.agent_state(e["extension"]) if acd is not None and e["extension"] else None
        e["state"] = st[0] if st is not None else None
    return json({"items": items})


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/workbench",
        "My callbacks and tasks due, my cases, today's reminders, the bulletin board",
        READERS,
        get_workbench,
    ),
    Route(
        "POST",
        "/api/tasks/<task_id:int>/done",
        "Mark one of my tasks (a callback) done; audited",
        READERS,
        task_done,
        responses={404: "no such task of yours", 409: "not open"},
    ),
    Route(
        "POST",
        "/api/agenda",
        "Add to my schedule: a time and what",
        READERS,
        add_agenda,
        body=AgendaItem,
        responses={201: "added"},
    ),
    Route(
        "POST",
        "/api/agenda/<item_id:int>/done",
        "Tick an item of my schedule off",
        READERS,
        agenda_done,
        responses={404: "no such item of yours"},
    ),
    Route("GET", "/api/announcements", "The bulletin board now", READERS, list_announcements),
    Route(
        "POST",
        "/api/announcements",
        "Post on the bulletin board (shown for `hours`, default 8; event `announcement`)",
        POSTERS,
        post_announcement,
        body=NewAnnouncement,
        responses={201: "posted"},
    ),
    Route(
        "DELETE",
        "/api/announcements/<announcement_id:int>",
        "Take an announcement down",
        POSTERS,
        delete_announcement,
        responses={404: "not showing"},
    ),
    Route(
        "GET",
        "/api/employees",
        "The employee directory (?q= name, extension or unit), with each operator's state;"
        " one's own organization (supervisors: everyone)",
        READERS,
        list_employees,
    ),
)
