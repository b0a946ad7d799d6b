"""Reference data behind the CRM, managed over the API: org units, case topics, SLA rules,
holidays, knowledge-base categories, customer groups and who may see and edit them.

Each table is one :class:`RefTable` row: the same four routes (list, create, change,
delete) are built from it, with admin-only changes, the ``Shape`` check of the body, the
rows it refers to checked (422 naming the field), uniqueness and "still in use" as 409,
and every change in the audit log with before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import error, json_body, pool
from ccorch.api.validation import Field, Shape, ValidationFailed
from ccorch.crm.store import ROLES, audit

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


@dataclass(frozen=True)
class RefTable:
    resource: str  # the URL's name: /api/<resource>
    table: str
    summary: str  # what one row is, for the OpenAPI document
    shape: Shape  # a new row; a change takes the same fields, none required
    key: str = "id"
    key_kind: str = "int"  # "int" or "str" (holidays are keyed by their date)
    refs: dict[str, str] = field(default_factory=dict)  # field -> the table it names


NAME = Field("string", required=True, min_len=1, max_len=200)
TABLES: tuple[RefTable, ...] = (
    RefTable(
        "org-units",
        "org_units",
        "an org unit (company, division, department, team)",
        Shape(
            "OrgUnit",
            {
                "name": NAME,
                "parent_id": Field("integer", minimum=1),
                "kind": Field("string", choices=("company", "division", "department", "team")),
            },
        ),
        refs={"parent_id": "org_units"},
    ),
    RefTable(
        "topics",
        "topics",
        "a case topic (subtopics name their parent)",
        Shape("Topic", {"name": NAME, "parent_id": Field("integer", minimum=1)}),
        refs={"parent_id": "topics"},
    ),
    RefTable(
        "sla-rules",
        "sla_rules",
        "a deadline in business hours for a case kind, optionally one topic",
        Shape(
            "SlaRule",
            {
                "kind": Field(
                    "string", required=True, choices=("instant", "escalation", "dispatch")
                ),
                "topic_id": Field("integer", minimum=1),
                "hours": Field("number", required=True, minimum=0.01, maximum=100_000),
            },
        ),
        refs={"topic_id": "topics"},
    ),
    RefTable(
        "holidays",
        "holidays",
        "a day off in the business-hours calendar (SLA deadlines skip it)",
        Shape("Holiday", {"day": Field("date", required=True), "name": NAME}),
        key="day",
        key_kind="str",
    ),
    RefTable(
        "kb-categories",
        "kb_categories",
        "a knowledge-base category",
        Shape("KbCategory", {"name": NAME, "parent_id": Field("integer", minimum=1)}),
        refs={"parent_id": "kb_categories"},
    ),
    RefTable(
        "customer-groups",
        "customer_groups",
        "a customer group (its access list says which roles see and edit its customers)",
        Shape("CustomerGroup", {"name": NAME}),
    ),
)

READ_ROLES = ROLES
CHANGE_ROLES = ("admin",)
MAX_ROWS = 5000


def loose(t: RefTable) -> Shape:
    """A change: the new row's fields, none required."""
    return Shape(
        t.shape.name + "Change",
        {k: Field(**{**f.__dict__, "required": False}) for k, f in t.shape.fields.items()},
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, dt.date) else float(v) if isinstance(v, Decimal) else v
        for k, v in row.items()
    }


def _key_value(t: RefTable, raw: object) -> object:
    if t.key_kind == "int":
        return raw
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise ValidationFailed({t.key: "expected a date (YYYY-MM-DD)"}) from None


async def _check_refs(
    conn: psycopg.AsyncConnection[Any], t: RefTable, data: dict[str, Any]
) -> None:
    bad = {}
    for name, table in t.refs.items():
        if name in data:
            cur = await conn.execute(
                SQL("SELECT 1 FROM {} WHERE id = %s").format(Identifier(table)), (data[name],)
            )
            if await cur.fetchone() is None:
                bad[name] = f"no such {name.removesuffix('_id')}"
    if bad:
        raise ValidationFailed(bad)


async def _row(
    conn: psycopg.AsyncConnection[Any], t: RefTable, key: object
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        SQL("SELECT * FROM {} WHERE {} = %s").format(Identifier(t.table), Identifier(t.key)),
        (key,),
    )
    row = await cur.fetchone()
    return None if row is None else _plain(row)


def _conflict(e: psycopg.Error) -> HTTPResponse:
    if isinstance(e, psycopg.errors.UniqueViolation):
        return error(409, "conflict", "such a row exists already")
    if isinstance(e, psycopg.errors.ForeignKeyViolation):
        return error(409, "conflict", "other rows still refer to it")
    return error(422, "invalid", (e.diag.message_primary or "refused by the database")[:200])


def handlers(t: RefTable) -> dict[str, Handler]:
    """The four handlers of one table (the API module wraps them in its guard)."""

    async def list_rows(request: Request) -> HTTPResponse:
        async with pool(request).connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                SQL("SELECT * FROM {} ORDER BY {} LIMIT %s").format(
                    Identifier(t.table), Identifier(t.key)
                ),
                (MAX_ROWS,),
            )
            items = [_plain(r) for r in await cur.fetchall()]
            if t.table == "customer_groups":
                await cur.execute(
                    "SELECT group_id, role, can_edit FROM customer_group_access ORDER BY role"
                )
                access: dict[int, list[dict[str, Any]]] = {}
                for a in await cur.fetchall():
                    access.setdefault(a["group_id"], []).append(
                        {"role": a["role"], "can_edit": a["can_edit"]}
                    )
                for g in items:
                    g["access"] = access.get(g["id"], [])
        return json({"items": items})

    async def create(request: Request) -> HTTPResponse:
        data = t.shape.validate(json_body(request))
        async with pool(request).connection() as conn:
            await _check_refs(conn, t, data)
            columns = list(data)
            try:
                async with conn.transaction():
                    cur = await conn.execute(
                        SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
                            Identifier(t.table),
                            SQL(", ").join(map(Identifier, columns)),
                            SQL(", ").join(SQL("%s") for _ in columns),
                            Identifier(t.key),
                        ),
                        [data[c] for c in columns],
                    )
                    got = await cur.fetchone()
                    assert got is not None
                    row = await _row(conn, t, got[0])
                    await audit(conn, request.ctx.user.id, "create", t.table, got[0], None, row)
            except psycopg.Error as e:
                return _conflict(e)
        return json(row, status=201)

    async def change(request: Request, key: Any) -> HTTPResponse:
        data = loose(t).validate(json_body(request))
        if not data:
            raise ValidationFailed({"(body)": "no field to change"})
        async with pool(request).connection() as conn:
            k = _key_value(t, key)
            before = await _row(conn, t, k)
            if before is None:
                return error(404, "not_found", f"no {t.resource} {key}")
            await _check_refs(conn, t, data)
            try:
                async with conn.transaction():
                    await conn.execute(
                        SQL("UPDATE {} SET {} WHERE {} = %s").format(
                            Identifier(t.table),
                            SQL(", ").join(SQL("{} = %s").format(Identifier(c)) for c in data),
                            Identifier(t.key),
                        ),
                        [*data.values(), k],
                    )
                    after = await _row(conn, t, data.get(t.key, k))
                    await audit(conn, request.ctx.user.id, "update", t.table, key, before, after)
            except psycopg.Error as e:
                return _conflict(e)
        return json(after)

    async def delete(request: Request, key: Any) -> HTTPResponse:
        async with pool(request).connection() as conn:
            k = _key_value(t, key)
            before = await _row(conn, t, k)
            if before is None:
                return error(404, "not_found", f"no {t.resource} {key}")
            try:
                async with conn.transaction():
                    await conn.execute(
                        SQL("DELETE FROM {} WHERE {} = %s").format(
                            Identifier(t.table), Identifier(t.key)
                        ),
                        (k,),
                    )
                    await audit(conn, request.ctx.user.id, "delete", t.table, key, before, None)
            except psycopg.Error as e:
                return _conflict(e)
        return json({"deleted": key})

    return {"list": list_rows, "create": create, "change": change, "delete": delete}


ACCESS = Shape(
    "GroupAccess",
    {
        "access": Field(
            "array",
            required=True,
            max_len=len(ROLES),
            items=Field("object"),
            description='[{"role": "operator", "can_edit": false}, ...]: replaces the list',
        )
    },
)


async def set_group_access(request: Request, group_id: int) -> HTTPResponse:
    """Which roles see (and which edit) the group's customers; the list is replaced."""
    data = ACCESS.validate(json_body(request))
    entries: dict[str, bool] = {}
    for i, e in enumerate(data["access"]):
        role, edit = (
            (e.get("role"), e.get("can_edit", False)) if isinstance(e, dict) else (None, None)
        )
        if role not in ROLES or not isinstance(edit, bool) or set(e) - {"role", "can_edit"}:
            raise ValidationFailed(
                {f"access[{i}]": f"expected {{role: one of {', '.join(ROLES)}, can_edit: bool}}"}
            )
        entries[str(role)] = edit
    async with pool(request).connection() as conn:
        cur = await conn.execute("SELECT 1 FROM customer_groups WHERE id = %s", (group_id,))
        if await cur.fetchone() is None:
            return error(404, "not_found", f"no customer group {group_id}")
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT role, can_edit FROM customer_group_access WHERE group_id = %s ORDER BY role",
                (group_id,),
            )
            before = [{"role": r, "can_edit": c} for r, c in await cur.fetchall()]
            await conn.execute("DELETE FROM customer_group_access WHERE group_id = %s", (group_id,))
            for role, edit in sorted(entries.items()):
                await conn.execute(
                    "INSERT INTO customer_group_access (group_id, role, can_edit) VALUES (%s, %s, %s)",
                    (group_id, role, edit),
                )
            after = [{"role": r, "can_edit": e} for r, e in sorted(entries.items())]
            await audit(
                conn,
                request.ctx.user.id,
                "update",
                "customer_group_access",
                group_id,
                before,
                after,
            )
    return json({"group_id": group_id, "access": after})
