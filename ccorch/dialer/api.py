"""Campaigns and their lists over HTTP [supervisor, admin]:

- ``POST /api/campaigns`` ``{"name", "mode", "queue", "rules"}`` (calling window, weekdays,
  holidays, start and end, retries per outcome: :mod:`ccorch.dialer.rules`),
  ``GET /api/campaigns``,
  ``GET /api/campaigns/{id}`` (with its contacts counted by state);
- ``POST /api/campaigns/{id}/contacts`` ``{"file_name", "format": "csv"|"xlsx",
  "content_base64", "mapping": {...}}``: import (or append to) the list; answers the
  contacts accepted and every refused row with its line, value and reason (nothing else is
  lost); ``GET /api/campaigns/{id}/contacts?state=&before=&limit=``;
- ``PATCH /api/campaigns/{id}`` ``{"status": "running"|"paused"|"stopped"}``; ``GET
  /api/campaigns/{id}/due``: who may be called now;
- ``POST /api/do-not-call`` ``{"phone", "campaign_id"?, "reason"?}``, ``GET
  /api/do-not-call``, ``DELETE /api/do-not-call/{id}``: numbers never dialed, by every
  campaign (no campaign_id) or one.

The list's rules are in :mod:`ccorch.dialer.lists`; dialing comes with the campaign
manager.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import Field, ValidationError
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import actor_of, int_param, iso_times, json_body
from ccorch.api.routes import Param, Route
from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.crm.store import audit
from ccorch.dialer import lists
from ccorch.dialer.rules import CallingRules, may_call
from ccorch.dialer.settings import DialingSettings
from ccorch.errors import RequestRefused
from ccorch.phones import PhoneError, normalize

SUPERVISORS = ("supervisor", "admin")
MODES = ("preview", "progressive", "power", "predictive", "broadcast", "sms")


class NewCampaign(Body):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    mode: Literal["preview", "progressive", "power", "predictive", "broadcast", "sms"]
    queue: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    rules: dict[str, Any] | None = None  # CallingRules; checked below
    dialing: dict[str, Any] | None = None  # DialingSettings; checked below
    survey_id: Id | None = None  # the script operators are shown (a survey graph)


def _checked(model: type[CallingRules | DialingSettings], key: str, raw: Any) -> dict[str, Any]:
    try:
        value = model.model_validate(raw or {})
    except ValidationError as e:
        raise ValidationFailed(
            {".".join([key, *(str(p) for p in err["loc"])]): err["msg"] for err in e.errors()}
        ) from None
    return value.model_dump(mode="json", exclude_none=True)


class CampaignChange(Body):
    status: Literal["running", "paused", "stopped"]


# what a supervisor may move a campaign to, from each status (finished: the manager's word)
TRANSITIONS = {
    "draft": ("running", "stopped"),
    "running": ("paused", "stopped"),
    "paused": ("running", "stopped"),
    "stopped": (),
    "finished": (),
}


class ListImport(Body):
    file_name: Annotated[str, Field(min_length=1, max_length=200)]
    format: Literal["csv", "xlsx"]
    content_base64: Annotated[str, Field(min_length=1, max_length=14_000_000)]
    mapping: dict[str, Any]


class DoNotCall(Body):
    phone: Annotated[str, Field(min_length=1, max_length=32)]
    campaign_id: Id | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None


async def create_campaign(request: Request) -> HTTPResponse:
    fields = parse(NewCampaign, json_body(request))
    queue = fields.get("queue")
    acd = request.app.ctx.acd
    if queue is not None and acd is not None and queue not in acd.queue_ids:
        raise ValidationFailed({"queue": f"one of {', '.join(sorted(acd.queue_ids))}"})
    rules = _checked(CallingRules, "rules", fields.get("rules"))
    dialing = _checked(DialingSettings, "dialing", fields.get("dialing"))
    mode = fields["mode"]
    if mode == "broadcast":
        flows = request.app.ctx.flows
        if "flow" not in dialing or (flows is not None and dialing["flow"] not in flows.by_name):
            known = ", ".join(sorted(flows.by_name)) if flows is not None else ""
            raise ValidationFailed({"dialing.flow": f"a broadcast plays a flow: one of {known}"})
    elif mode == "sms":
        if "sms_text" not in dialing:
            raise ValidationFailed({"dialing.sms_text": "an SMS campaign sends a text"})
    elif queue is None:
        raise ValidationFailed({"queue": f"a {mode} campaign needs its operators' queue"})
    survey = fields.get("survey_id")
    async with request.app.ctx.pool.connection() as conn, conn.transaction():
        if survey is not None:
            found = await conn.execute("SELECT 1 FROM surveys WHERE id = %s", (survey,))
            if await found.fetchone() is None:
                raise ValidationFailed({"survey_id": f"no survey {survey}"})
        cur = await conn.execute(
            "INSERT INTO campaigns (name, mode, queue, rules, dialing, survey_id, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
            (
                fields["name"].strip(),
                mode,
                queue,
                Jsonb(rules),
                Jsonb(dialing),
                survey,
                request.ctx.user.id,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(409, f"a campaign named {fields['name']!r} exists")
        await audit(conn, request.ctx.user.id, "create", "campaign", row[0], None, fields)
    return json(await _campaign(request, int(row[0])), status=201)


async def _campaign(request: Request, campaign_id: int) -> dict[str, Any]:
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            "SELECT id, name, mode, status, queue, survey_id, rules, dialing, created_at"
            " FROM campaigns"
            " WHERE id = %s",
            (campaign_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(404, f"no campaign {campaign_id}")
        await cur.execute(
            "SELECT state, count(*) AS n FROM campaign_contacts WHERE campaign_id = %s"
            " GROUP BY state",
            (campaign_id,),
        )
        counts = {r["state"]: r["n"] for r in await cur.fetchall()}
        await cur.execute(
            "SELECT outcome, count(*) AS n FROM campaign_attempts WHERE campaign_id = %s"
            " AND ended_at IS NOT NULL GROUP BY outcome",
            (campaign_id,),
        )
        attempts = {r["outcome"]: r["n"] for r in await cur.fetchall()}
        rates = await abandon_rates(cur, campaign_id, request.app.ctx.clock())
    manager = getattr(request.app.ctx, "campaigns", None)
    live = manager.live(campaign_id) if manager is not None else None
    return {**iso_times(row), "contacts": counts, "attempts": attempts, **rates, "live": live}


async def abandon_rates(
    cur: AsyncCursor[dict[str, Any]], campaign_id: int, now: dt.datetime
) -> dict[str, Any]:
    """Abandoned over live answers (the end of a person's greeting) in the 24 hours (Ofcom)
    and the 30 days (TSR) before ``now``, from the attempts."""
    await cur.execute(
        """SELECT count(*) FILTER (WHERE live_at >= %(day)s) AS live_24h,
                  count(*) FILTER (WHERE live_at >= %(day)s AND outcome = 'abandoned')
                      AS abandoned_24h,
                  count(*) AS live_30d,
                  count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned_30d
             FROM campaign_attempts
            WHERE campaign_id = %(id)s AND live_at >= %(month)s
              AND outcome IS DISTINCT FROM 'machine'  -- (an operator found a machine)""",
        {"id": campaign_id, "day": now - dt.timedelta(days=1),
         "month": now - dt.timedelta(days=30)},
    )  # fmt: skip
    r = await cur.fetchone()
    assert r is not None
    return {
        **r,
        "abandon_rate_24h": r["abandoned_24h"] / r["live_24h"] if r["live_24h"] else None,
        "abandon_rate_30d": r["abandoned_30d"] / r["live_30d"] if r["live_30d"] else None,
    }


async def list_campaigns(request: Request) -> HTTPResponse:
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            "SELECT id, name, mode, status, queue, created_at FROM campaigns ORDER BY id DESC"
        )
        return json({"items": [iso_times(r) for r in await cur.fetchall()]})


async def get_campaign(request: Request, campaign_id: int) -> HTTPResponse:
    return json(await _campaign(request, campaign_id))


async def change_campaign(request: Request, campaign_id: int) -> HTTPResponse:
    """Start, pause, resume or stop a campaign (seed 002: 暂停、恢复、停止)."""
    to = parse(CampaignChange, json_body(request))["status"]
    async with request.app.ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT status FROM campaigns WHERE id = %s FOR UPDATE", (campaign_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(404, f"no campaign {campaign_id}")
        if to not in TRANSITIONS[row[0]]:
            allowed = ", ".join(TRANSITIONS[row[0]]) or "nothing"
            raise RequestRefused(409, f"a {row[0]} campaign can go to {allowed}, not {to}")
        await conn.execute("UPDATE campaigns SET status = %s WHERE id = %s", (to, campaign_id))
        await audit(
            conn, request.ctx.user.id, "status", "campaign", campaign_id,
            {"status": row[0]}, {"status": to},
        )  # fmt: skip
    manager = getattr(request.app.ctx, "campaigns", None)
    if manager is not None:
        manager.wake()
    return json(await _campaign(request, campaign_id))


async def due_contacts(request: Request, campaign_id: int) -> HTTPResponse:
    """The contacts that may be called now: pending or due for a retry, inside their own
    calling window (the campaign's rules, its and the center's holidays), oldest first."""
    limit = int_param(request, "limit", 100, 1, 1000)
    now = request.app.ctx.clock()
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute("SELECT rules FROM campaigns WHERE id = %s", (campaign_id,))
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(404, f"no campaign {campaign_id}")
        rules = CallingRules.model_validate(row["rules"])
        await cur.execute("SELECT day FROM holidays WHERE day >= %s", (now.date(),))
        days_off = [r["day"] for r in await cur.fetchall()]
        await cur.execute(
            """SELECT id, phone, name, time_zone, customer_id, variables, state, attempts
                 FROM campaign_contacts
                WHERE campaign_id = %s AND state IN ('pending', 'retry')
                  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
                ORDER BY coalesce(next_attempt_at, created_at), id""",
            (campaign_id, now),
        )
        items: list[dict[str, Any]] = []
        async for contact in cur:
            if may_call(rules, ZoneInfo(contact["time_zone"]), now, days_off):
                items.append(contact)
                if len(items) == limit:
                    break
    return json({"items": items, "at": now.isoformat()})


async def _extension(request: Request) -> str:
    actor = await actor_of(request)
    if actor.extension is None:
        raise RequestRefused(409, "this user has no operator extension")
    return actor.extension


def _manager(request: Request) -> Any:
    manager = getattr(request.app.ctx, "campaigns", None)
    if manager is None:
        raise RequestRefused(409, "campaigns do not dial on this node (no SIP)")
    return manager


async def preview_campaigns(request: Request) -> HTTPResponse:
    """The running preview campaigns of the operator's groups."""
    extension = await _extension(request)
    runs = _manager(request).operator.preview_campaigns(extension)
    return json({"items": [{"id": r.id, "name": r.name, "queue": r.queue} for r in runs]})


async def preview_next(request: Request) -> HTTPResponse:
    """The next contact for this operator to see before dialing (claimed for them)."""
    extension = await _extension(request)
    contact = await _manager(request).operator.preview_next(extension)
    if contact is None:
        raise RequestRefused(404, "no contact may be called now in your preview campaigns")
    return json(contact)


async def preview_dial(request: Request, attempt_id: int) -> HTTPResponse:
    extension = await _extension(request)
    if not _manager(request).operator.preview_dial(attempt_id, extension):
        raise RequestRefused(404, f"no contact {attempt_id} shown to you to dial")
    return json({"attempt": attempt_id, "dialing": True})


async def preview_skip(request: Request, attempt_id: int) -> HTTPResponse:
    extension = await _extension(request)
    if not _manager(request).operator.preview_skip(attempt_id, extension):
        raise RequestRefused(404, f"no contact {attempt_id} shown to you")
    return json({"attempt": attempt_id, "skipped": True})


async def import_contacts(request: Request, campaign_id: int) -> HTTPResponse:
    fields = parse(ListImport, json_body(request))
    try:
        content = base64.b64decode(fields["content_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed({"content_base64": "not base64"}) from None
    country = request.app.ctx.config.crm.default_country
    pool = request.app.ctx.pool
    async with pool.connection() as conn:
        if (
            await (
                await conn.execute("SELECT 1 FROM campaigns WHERE id = %s", (campaign_id,))
            ).fetchone()
            is None
        ):
            raise RequestRefused(404, f"no campaign {campaign_id}")
        cur = await conn.execute(
            "SELECT phone FROM campaign_contacts WHERE campaign_id = %s", (campaign_id,)
        )
        known = {r[0] for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT phone FROM do_not_call WHERE campaign_id IS NULL OR campaign_id = %s",
            (campaign_id,),
        )
        dnc = {r[0] for r in await cur.fetchall()}
    try:
        checked = lists.check(
            lists.rows(fields["format"], content),
            fields["mapping"],
            country=country,
            in_campaign=known,
            do_not_call=dnc,
        )
    except lists.ListError as e:
        raise ValidationFailed({"content_base64": str(e)}) from None
    async with pool.connection() as conn, conn.transaction():
        # the contacts who are already customers: linked by their number
        cur = await conn.execute(
            "SELECT DISTINCT ON (e164) e164, customer_id FROM customer_phones"
            " WHERE e164 = ANY(%s) ORDER BY e164, customer_id",
            ([c.phone for c in checked.accepted],),
        )
        customers = {r[0]: r[1] for r in await cur.fetchall()}
        async with conn.cursor() as cur:
            await cur.executemany(
                """INSERT INTO campaign_contacts (campaign_id, phone, name, time_zone,
                                                  customer_id, variables, source, source_line)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (campaign_id, phone) DO NOTHING""",
                [
                    (
                        campaign_id,
                        c.phone,
                        c.name,
                        c.time_zone,
                        customers.get(c.phone),
                        Jsonb(c.variables),
                        fields["file_name"],
                        c.line,
                    )
                    for c in checked.accepted
                ],
            )
        await audit(
            conn,
            request.ctx.user.id,
            "import",
            "campaign",
            campaign_id,
            None,
            {
                "file": fields["file_name"],
                "accepted": len(checked.accepted),
                "refused": len(checked.refused),
            },
        )
    return json(
        {
            "accepted": len(checked.accepted),
            "linked_to_customers": sum(1 for c in checked.accepted if c.phone in customers),
            "refused": [r.__dict__ for r in checked.refused],
        }
    )


async def list_contacts(request: Request, campaign_id: int) -> HTTPResponse:
    state = request.args.get("state")
    if state is not None and state not in ("pending", "dialing", "retry", "done", "failed", "dnc"):
        raise ValidationFailed({"state": "pending, dialing, retry, done, failed or dnc"})
    limit = int_param(request, "limit", 100, 1, 1000)
    before = int_param(request, "before", 0, 1, 2**63 - 1) or None
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            """SELECT id, phone, name, time_zone, customer_id, variables, source, source_line,
                      state, attempts, next_attempt_at
                 FROM campaign_contacts
                WHERE campaign_id = %s AND (%s::text IS NULL OR state = %s)
                  AND (%s::bigint IS NULL OR id < %s)
                ORDER BY id DESC LIMIT %s""",
            (campaign_id, state, state, before, before, limit),
        )
        items = [iso_times(r) for r in await cur.fetchall()]
    return json({"items": items, "next_before": items[-1]["id"] if len(items) == limit else None})


async def add_do_not_call(request: Request) -> HTTPResponse:
    fields = parse(DoNotCall, json_body(request))
    try:
        phone = normalize(fields["phone"], request.app.ctx.config.crm.default_country)
    except PhoneError as e:
        raise ValidationFailed({"phone": str(e)}) from None
    campaign = fields.get("campaign_id")
    async with request.app.ctx.pool.connection() as conn, conn.transaction():
        if (
            campaign is not None
            and await (
                await conn.execute("SELECT 1 FROM campaigns WHERE id = %s", (campaign,))
            ).fetchone()
            is None
        ):
            raise ValidationFailed({"campaign_id": f"no campaign {campaign}"})
        cur = await conn.execute(
            """INSERT INTO do_not_call (phone, campaign_id, reason, added_by)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (phone, campaign_id) DO UPDATE SET reason = EXCLUDED.reason
               RETURNING id""",
            (phone, campaign, fields.get("reason") or "", request.ctx.user.id),
        )
        row = await cur.fetchone()
        assert row is not None
        # contacts of the list(s) it concerns are never dialed from now on
        await conn.execute(
            """UPDATE campaign_contacts SET state = 'dnc'
               WHERE phone = %s AND state IN ('pending', 'retry')
                 AND (%s::bigint IS NULL OR campaign_id = %s)""",
            (phone, campaign, campaign),
        )
        await audit(conn, request.ctx.user.id, "add", "do_not_call", row[0], None, {"phone": phone})
    return json({"id": row[0], "phone": phone, "campaign_id": campaign}, status=201)


async def list_do_not_call(request: Request) -> HTTPResponse:
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            "SELECT id, phone, campaign_id, reason, added_at FROM do_not_call"
            " ORDER BY id DESC LIMIT 1000"
        )
        return json({"items": [iso_times(r) for r in await cur.fetchall()]})


async def remove_do_not_call(request: Request, entry_id: int) -> HTTPResponse:
    async with request.app.ctx.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM do_not_call WHERE id = %s RETURNING phone", (entry_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(404, f"no do-not-call entry {entry_id}")
        await audit(conn, request.ctx.user.id, "remove", "do_not_call", entry_id, {"phone": row[0]})
    return json({"id": entry_id, "removed": True})


OPERATORS = ("operator", "supervisor", "admin")

ROUTES = (
    Route("GET", "/api/campaigns/preview",
          "The running preview campaigns of the operator's groups", OPERATORS,
          preview_campaigns),
    Route("POST", "/api/campaigns/preview/next",
          "The next contact of the operator's preview campaigns, claimed for them to see"
          " before dialing", OPERATORS, preview_next,
          responses={404: "none may be called now", 409: "no extension"}),
    Route("POST", "/api/campaign-attempts/<attempt_id:int>/dial",
          "Dial the contact shown (the operator's phone rings when the customer answers)",
          OPERATORS, preview_dial, responses={404: "no such contact shown to this operator"}),
    Route("POST", "/api/campaign-attempts/<attempt_id:int>/skip",
          "Pass over the contact shown (it is called later)", OPERATORS, preview_skip,
          responses={404: "no such contact shown to this operator"}),
    Route("POST", "/api/campaigns", "Create a campaign (mode, the queue that works it)",
          SUPERVISORS, create_campaign, body=NewCampaign,
          responses={409: "the name is taken"}),
    Route("GET", "/api/campaigns", "Every campaign", SUPERVISORS, list_campaigns),
    Route("GET", "/api/campaigns/<campaign_id:int>",
          "A campaign with its contacts counted by state", SUPERVISORS, get_campaign,
          responses={404: "no such campaign"}),
    Route("PATCH", "/api/campaigns/<campaign_id:int>",
          "Start, pause, resume or stop the campaign; audited", SUPERVISORS, change_campaign,
          body=CampaignChange,
          responses={404: "no such campaign", 409: "not from its present status"}),
    Route("GET", "/api/campaigns/<campaign_id:int>/due",
          "The contacts that may be called now (pending or due for a retry, inside their own"
          " calling window)", SUPERVISORS, due_contacts,
          params=(Param("limit", "query", Annotated[int, Field(ge=1, le=1000)]),),
          responses={404: "no such campaign"}),
    Route("POST", "/api/campaigns/<campaign_id:int>/contacts",
          "Import a list (CSV or XLSX, base64, with a column mapping) into the campaign:"
          " every row checked, each refused one reported with its line and reason",
          SUPERVISORS, import_contacts, body=ListImport, max_body=20 * 1024 * 1024,
          responses={404: "no such campaign"}),
    Route("GET", "/api/campaigns/<campaign_id:int>/contacts",
          "The campaign's contacts, newest first (state, attempts, the file line)",
          SUPERVISORS, list_contacts,
          params=(Param("state", "query", Literal["pending", "dialing", "retry", "done",
                                                  "failed", "dnc"]),
                  Param("before", "query", Annotated[int, Field(ge=1)]),
                  Param("limit", "query", Annotated[int, Field(ge=1, le=1000)]))),
    Route("POST", "/api/do-not-call",
          "Never call a number: for every campaign, or one (campaign_id); audited",
          SUPERVISORS, add_do_not_call, body=DoNotCall),
    Route("GET", "/api/do-not-call", "The do-not-call list", SUPERVISORS, list_do_not_call),
    Route("DELETE", "/api/do-not-call/<entry_id:int>", "Take a number off the list; audited",
          SUPERVISORS, remove_do_not_call, responses={404: "no such entry"}),
)  # fmt: skip
