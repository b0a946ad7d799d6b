"""Finding recordings (seed 004: 录音查询): by operator, caller (ANI), dialed number (DNIS),
case, interaction, queue, disposition, kind and time; newest first, a page at a time.

Each hit is checked on the recording itself, as playing it is (``ccorch.crm.recordings``):
a complaint's recording is listed for the complaints role and admins only, a customer's
for those who may see the customer. Playing goes through ``GET /api/recordings/{id}``,
which serves byte ranges so the browser's player can seek.

- ``GET /api/recordings`` [supervisor, complaints, admin]
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.routes import Param, Route
from ccorch.api.validation import ValidationFailed
from ccorch.crm.store import can_see_customer


class RecordingQuery(BaseModel):
    """The query string (strings coerced to the types below; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    operator: Annotated[str, Field(pattern=r"^[0-9]{1,16}$")] | None = None
    ani: Annotated[str, Field(pattern=r"^\+?[0-9 ()-]{3,32}$")] | None = None
    dnis: Annotated[str, Field(pattern=r"^[0-9+*#]{1,32}$")] | None = None
    queue: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    disposition: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    case_id: Annotated[int, Field(ge=1)] | None = None
    interaction_id: Annotated[int, Field(ge=1)] | None = None
    kind: Literal["call", "voicemail"] | None = None
    handled: bool | None = None  # voicemail: its case resolved (or closed), or not yet
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: Annotated[int, Field(ge=1)] | None = None  # the next page: ids below this
    limit: Annotated[int, Field(ge=1, le=200)] = 50


def parse_query(args: dict[str, list[str]]) -> RecordingQuery:
    fields = {k: v[-1] for k, v in args.items()}
    try:
        q = RecordingQuery.model_validate(fields)
    except ValidationError as e:
        raise ValidationFailed(
            {".".join(str(p) for p in err["loc"]) or "query": err["msg"] for err in e.errors()}
        ) from None
    for name in ("since", "until"):
        when = getattr(q, name)
        if when is not None and when.tzinfo is None:
            raise ValidationFailed({name: "a date and time with its offset (e.g. Z)"})
    return q


SEARCH_SQL = """
SELECT r.id, r.kind, r.created_at, r.case_id, r.customer_id, r.gaps,
       c.id AS cdr_id, c.ani, c.dnis, c.queue, c.agent AS operator, u.full_name AS operator_name,
       c.disposition, c.arrived_at, c.answered_at, c.ended_at, c.talk_seconds,
       k0.status AS case_status, k0.assignee_id AS case_assignee_id,
       ua.full_name AS case_assignee,
       coalesce((SELECT array_agg(i.id ORDER BY i.id) FROM interactions i
                 WHERE i.recording_id = r.id), '{}') AS interactions,
       EXISTS (SELECT 1 FROM cases k
               WHERE k.confidential
                 AND (k.id = r.case_id
                      OR k.id IN (SELECT i.case_id FROM interactions i
                                  WHERE i.recording_id = r.id))) AS confidential
  FROM recordings r
  LEFT JOIN LATERAL (SELECT * FROM cdrs c WHERE c.sip_call_id = r.sip_call_id
                     ORDER BY c.arrived_at DESC LIMIT 1) c ON true
  LEFT JOIN users u ON u.extension = c.agent
  LEFT JOIN cases k0 ON k0.id = r.case_id
  LEFT JOIN users ua ON ua.id = k0.assignee_id
 WHERE (%(operator)s::text IS NULL OR c.agent = %(operator)s)
   AND (%(ani)s::text IS NULL OR regexp_replace(c.ani, '\\D', '', 'g') LIKE '%%' || %(ani)s || '%%')
   AND (%(dnis)s::text IS NULL OR c.dnis = %(dnis)s)
   AND (%(queue)s::text IS NULL OR c.queue = %(queue)s)
   AND (%(disposition)s::text IS NULL OR c.disposition = %(disposition)s)
   AND (%(case_id)s::bigint IS NULL OR r.case_id = %(case_id)s
        OR EXISTS (SELECT 1 FROM interactions i
                   WHERE i.recording_id = r.id AND i.case_id = %(case_id)s))
   AND (%(interaction_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM interactions i
                   WHERE i.recording_id = r.id AND i.id = %(interaction_id)s))
   AND (%(kind)s::text IS NULL OR r.kind = %(kind)s)
   AND (%(handled)s::boolean IS NULL
        OR (k0.status IN ('resolved', 'closed')) = %(handled)s)
   AND (%(since)s::timestamptz IS NULL OR r.created_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR r.created_at < %(until)s)
   AND (%(before)s::bigint IS NULL OR r.id < %(before)s)
 ORDER BY r.id DESC
 LIMIT %(scan)s
"""


async def search(request: Request) -> HTTPResponse:
    q = parse_query(request.args)
    user = request.ctx.user
    params: dict[str, Any] = q.model_dump()
    if q.ani is not None:
        params["ani"] = "".join(ch for ch in q.ani if ch.isdigit())
    # hits the user may not hear are dropped after the query: scan further than a page
    params["scan"] = q.limit * 4
    items: list[dict[str, Any]] = []
    scanned_to: int | None = None
    async with request.app.ctx.pool.connection() as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(SEARCH_SQL, params)
            rows = await cur.fetchall()
        for row in rows:
            scanned_to = int(row["id"])
            if row["confidential"] and not user.roles & {"complaints", "admin"}:
                continue
            if row["customer_id"] is not None and not await can_see_customer(
                conn, user, row["customer_id"]
            ):
                continue
            items.append(_json(row))
            if len(items) == q.limit:
                break
    more = len(items) == q.limit or len(rows) == params["scan"]
    return json({"items": items, "next_before": scanned_to if more else None})


def _json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
    out["url"] = f"/api/recordings/{row['id']}"
    return out


ROUTES = (
    Route(
        "GET",
        "/api/recordings",
        "Find recordings by operator, ANI, DNIS, case, interaction, queue, disposition, kind"
        " and time (newest first); each listed only to who may hear it",
        ("supervisor", "complaints", "admin"),
        search,
        params=(
            Param("operator", "query", Annotated[str, Field(pattern=r"^[0-9]{1,16}$")]),
            Param("ani", "query", Annotated[str, Field(max_length=32)]),
            Param("dnis", "query", Annotated[str, Field(max_length=32)]),
            Param("queue", "query", Annotated[str, Field(max_length=64)]),
            Param("disposition", "query", Annotated[str, Field(max_length=64)]),
            Param("case_id", "query", Annotated[int, Field(ge=1)]),
            Param("interaction_id", "query", Annotated[int, Field(ge=1)]),
            Param("kind", "query", Literal["call", "voicemail"]),
            Param("handled", "query", bool),
            Param("since", "query", dt.datetime),
            Param("until", "query", dt.datetime),
            Param("before", "query", Annotated[int, Field(ge=1)]),
            Param("limit", "query", Annotated[int, Field(ge=1, le=200)]),
        ),
        responses={422: "a bad query parameter"},
    ),
)
