"""Reference data behind the CRM, managed over the API: org units, case topics, SLA rules,
holidays, knowledge-base categories, customer groups and who may see and edit them.

Each table is one :class:`RefTable` row: the same four routes (list, create, change,
delete) are built from it, with admin-only changes, the body model's check, the
rows it refers to checked (422 naming the field), uniqueness and "still in use" as 409,
and every change in the audit log with before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import error, json_body, pool
from ccorch.api.validation import Body, Day, Id, OneOf, ValidationFailed, all_optional, parse
from ccorch.crm.store import ROLES, audit

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


@dataclass(frozen=True)
class RefTable:
    resource: str  # the URL's name: /api/<resource>
    table: str
    summary: str  # what one row is, for the OpenAPI document
    shape: type[Body]  # a new row; a change takes the same fields, none required
    key: str = "id"
    key_kind: str = "int"  # "int" or "str" (holidays are keyed by their date)
    refs: dict[str, str] = field(default_factory=dict)  # field -> the table it names

    @property
    def change(self) -> type[Body]:
        """A change to a row: the same fields, none required."""
        return _CHANGES.setdefault(
            self.shape, all_optional(self.shape, self.shape.__name__ + "Change")
        )


_CHANGES: dict[type[Body], type[Body]] = {}


Name = Annotated[str, Field(min_length=1, max_length=200)]


class OrgUnit(Body):
    name: Name
    parent_id: Id | None = None
    kind: Literal["company", "division", "department", "team"] | None = None


class Topic(Body):
    name: Name
    parent_id: Id | None = None


class SlaRule(Body):
    kind: Literal["instant", "escalation", "dispatch"]
    topic_id: Id | None = None
    hours: Annotated[float, Field(ge=0.01, le=100_000)]


class Holiday(Body):
    day: Day
    name: Name


class KbCategory(Body):
    name: Name
    parent_id: Id | None = None


class CustomerGroup(Body):
    name: Name


TABLES: tuple[RefTable, ...] = (
    RefTable(
        "org-units",
        "org_units",
        "an org unit (company, division, department, team)",
        OrgUnit,
        refs={"parent_id": "org_units"},
    ),
    RefTable(
        "topics",
        "topics",
        "a case topic (subtopics name their parent)",
        Topic,
        refs={"parent_id": "topics"},
    ),
    RefTable(
        "sla-rules",
        "sla_rules",
        "a deadline in business hours for a case kind, optionally one topic",
        SlaRule,
        refs={"topic_id": "topics"},
    ),
    RefTable(
        "holidays",
        "holidays",
        "a day off in the business-hours calendar (SLA deadlines skip it)",
        Holiday,
        key="day",
        key_kind="str",
    ),
    RefTable(
        "kb-categories",
        "kb_categories",
        "a knowledge-base category",
        KbCategory,
        refs={"parent_id": "kb_categories"},
    ),
    RefTable(
        "customer-groups",
        "customer_groups",
        "a customer group (its access list says which roles see and edit its customers)",
        CustomerGroup,
    ),
)

READ_ROLES = ROLES
CHANGE_ROLES = ("admin",)
MAX_ROWS = 5000


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
        data = parse(t.shape, json_body(request))
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
        data = parse(t.change, json_body(request))
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


class RoleAccess(Body):
    role: Annotated[str, OneOf(ROLES)]
    can_edit: bool = False


class GroupAccess(Body):
    access: Annotated[
        list[RoleAccess],
        Field(
            max_length=len(ROLES),
            description='[{"role": "operator", "can_edit": false}, ...]: replaces the list',
        ),
    ]


async def set_group_access(request: Request, group_id: int) -> HTTPResponse:
    """Which roles see (and which edit) the group's customers; the list is replaced."""
    data = parse(GroupAccess, json_body(request))
    entries = {e["role"]: e.get("can_edit", False) for e in data["access"]}
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
