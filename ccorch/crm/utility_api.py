"""The utility's routes (seed 003): a customer's service points, meters and readings,
outages by address (kept by supervisors, imported as CSV from the operations department),
and connection requests with their stages. The records are in :mod:`ccorch.crm.utility`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import int_param, json_body, pool, request_now
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Day, Id, ValidationFailed, anchored, parse
from ccorch.crm import utility
from ccorch.crm.store import User, audit, can_see_customer, plain_row
from ccorch.errors import RequestRefused

READERS = ("operator", "supervisor", "admin")
KEEPERS = ("supervisor", "admin")  # who keeps the outage table

ERROR_TEXT = {
    "lower": "lower than the last reading ({last}, {date}): a meter does not run backwards",
    "implausible": "{used} kWh since {date} is more than the tariff's plausible {limit} kWh;"
    " check it, then send accept_implausible: true if it is right",
    "night_missing": "the meter has day and night zones: give night too",
    "night_unexpected": "the meter has one zone: no night reading",
}


class NewReading(Body):
    day: Annotated[int, Field(ge=0, le=999_999_999, description="kWh (the day zone's)")]
    night: (
        Annotated[int, Field(ge=0, le=999_999_999, description="kWh, day/night meters")] | None
    ) = None
    accept_implausible: bool = False


class NewOutage(Body):
    ref: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    kind: Literal["planned", "emergency"]
    locality: Annotated[str, Field(min_length=1, max_length=200)]
    street: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    house_from: Annotated[int, Field(ge=0, le=100_000)] | None = None
    house_to: Annotated[int, Field(ge=0, le=100_000)] | None = None
    starts_at: Annotated[str, Field(description="ISO 8601 with offset")]
    expected_end: Annotated[str, Field(description="ISO 8601 with offset")]
    reason: Annotated[str, Field(max_length=500)] | None = None


class OutageChange(Body):
    expected_end: Annotated[str, Field(description="ISO 8601 with offset")] | None = None
    ended_at: Annotated[str, Field(description="power came back: ISO 8601 with offset")] | None = (
        None
    )
    reason: Annotated[str, Field(max_length=500)] | None = None


class OutageImport(Body):
    csv: Annotated[
        str,
        Field(min_length=1, max_length=5_000_000,
              description="UTF-8 CSV with a header: " + ", ".join(utility.OUTAGE_COLUMNS)),
    ]  # fmt: skip


class NewRequest(Body):
    number: Annotated[str, Field(pattern=anchored("[0-9]{1,12}"))]
    customer_id: Id
    address: Annotated[str, Field(min_length=1, max_length=500)]
    power_kw: Annotated[float, Field(gt=0, le=100_000)]
    due_on: Day | None = None


class RequestStage(Body):
    stage: Literal[
        "documents_sent", "contract_signed", "works", "inspection", "connected", "cancelled"
    ]
    note: Annotated[str, Field(max_length=2000)] | None = None


def _time(key: str, text: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed({key: "an ISO 8601 time, e.g. 2026-12-08T17:00:00+02:00"}) from None
    if at.tzinfo is None:
        raise ValidationFailed({key: "give the offset, e.g. 2026-12-08T17:00:00+02:00"})
    return at


# --- readings ----------------------------------------------------------------------------


async def _check_account(
    conn: AsyncConnection[Any], user: User, contract_no: str, *, edit: bool
) -> None:
    """404 unless the account exists and the user may see (or edit) its customer."""
    cur = await conn.execute(
        "SELECT customer_id FROM accounts WHERE contract_no = %s", (contract_no,)
    )
    row = await cur.fetchone()
    if row is None or not await can_see_customer(conn, user, int(row[0]), edit=edit):
        raise RequestRefused(404, f"no account {contract_no}")


async def add_reading(request: Request, contract_no: str) -> HTTPResponse:
    data = parse(NewReading, json_body(request))
    async with pool(request).connection() as conn:
        await _check_account(conn, request.ctx.user, contract_no, edit=True)
        got = await utility.submit_reading(
            conn, contract_no, data["day"], data.get("night"), channel="operator",
            now=request_now(request), user=request.ctx.user,
            accept_implausible=data.get("accept_implausible", False),
        )  # fmt: skip
    if got is None:
        raise RequestRefused(404, f"account {contract_no} has no meter in service")
    if got.check.error is not None:
        last = got.last
        why = ERROR_TEXT[got.check.error].format(
            last=f"{last.day}" + (f"/{last.night}" if last and last.night is not None else "")
            if last else "", date=last.taken_at.date().isoformat() if last else "",
            used=got.check.used, limit=got.check.limit,
        )  # fmt: skip
        field = "night" if got.check.error.startswith("night") else "day"
        raise ValidationFailed({field: why})
    return json({"id": got.reading_id, "used": got.check.used}, status=201)


async def account_readings(request: Request, contract_no: str) -> HTTPResponse:
    limit = int_param(request, "limit", 12, 1, 200)
    async with pool(request).connection() as conn:
        await _check_account(conn, request.ctx.user, contract_no, edit=False)
        sp = await utility.service_point(conn, contract_no=contract_no)
        if sp is None or sp["meter_id"] is None:
            raise RequestRefused(404, f"account {contract_no} has no meter in service")
        items = await utility.readings(conn, int(sp["meter_id"]), limit)
    return json({"meter": sp["meter"], "zones": sp["zones"], "items": items})


async def customer_utility(request: Request, customer_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        if not await can_see_customer(conn, request.ctx.user, customer_id):
            raise RequestRefused(404, f"no customer {customer_id}")
        return json(await utility.customer_utility(conn, customer_id, request_now(request)))


# --- outages -------------------------------------------------------------------------------


async def list_outages(request: Request) -> HTTPResponse:
    """On now or later by default (?all=1: ended ones too, the newest 500)."""
    everything = request.args.get("all") == "1"
    cur_filter = "" if everything else "WHERE coalesce(ended_at, expected_end) > %(now)s"
    async with pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT id, ref, kind, locality, street, house_from, house_to, starts_at,
                       expected_end, ended_at, reason, starts_at <= %(now)s AS current
                FROM outages {cur_filter} ORDER BY starts_at DESC, id DESC LIMIT 500""",
            {"now": request_now(request)},
        )
        rows = await cur.fetchall()
    return json({"items": [plain_row(r) for r in rows]})


async def create_outage(request: Request) -> HTTPResponse:
    data = parse(NewOutage, json_body(request))
    try:
        row = utility.outage_row(data)
    except ValueError as e:
        raise ValidationFailed({"(body)": str(e)}) from None
    async with pool(request).connection() as conn, conn.transaction():
        oid, created = await utility.save_outage(conn, row, request.ctx.user)
        body = await utility.outage(conn, oid)
    return json(body, status=201 if created else 200)


async def change_outage(request: Request, outage_id: int) -> HTTPResponse:
    data = parse(OutageChange, json_body(request))
    if not data:
        raise ValidationFailed({"(body)": "no field to change"})
    values: dict[str, Any] = {}
    for key in ("expected_end", "ended_at"):
        if key in data:
            values[key] = _time(key, data[key])
    if "reason" in data:
        values["reason"] = data["reason"]
    async with pool(request).connection() as conn, conn.transaction():
        before = await utility.outage(conn, outage_id)
        start = dt.datetime.fromisoformat(before["starts_at"])
        if "expected_end" in values and values["expected_end"] <= start:
            raise ValidationFailed({"expected_end": "after the outage's start"})
        if "ended_at" in values and values["ended_at"] < start:
            raise ValidationFailed({"ended_at": "not before the outage's start"})
        sets = ", ".join(f"{k} = %s" for k in values)  # keys are the model's fields
        await conn.execute(
            f"UPDATE outages SET {sets}, updated_at = now() WHERE id = %s",
            (*values.values(), outage_id),
        )
        after = await utility.outage(conn, outage_id)
        await audit(conn, request.ctx.user.id, "change", "outage", outage_id, before, after)
    return json(after)


async def import_outages(request: Request) -> HTTPResponse:
    """A whole CSV or nothing: the first bad row is refused with its line and reason."""
    data = parse(OutageImport, json_body(request))
    try:
        rows = utility.parse_outages_csv(data["csv"])
    except ValueError as e:
        raise ValidationFailed({"csv": str(e)}) from None
    created = updated = 0
    async with pool(request).connection() as conn, conn.transaction():
        for row in rows:
            _, new = await utility.save_outage(conn, row, request.ctx.user)
            created += new
            updated += not new
    return json({"created": created, "updated": updated})


# --- connection requests -------------------------------------------------------------------


async def _request_visible(request: Request, number: str) -> dict[str, Any]:
    async with pool(request).connection() as conn:
        found = await utility.connection_request(conn, number)
        if found is None or not await can_see_customer(
            conn, request.ctx.user, int(found["customer_id"])
        ):
            raise RequestRefused(404, f"no connection request {number}")
    return found


async def read_request(request: Request, number: str) -> HTTPResponse:
    return json(await _request_visible(request, number))


async def create_request(request: Request) -> HTTPResponse:
    data = parse(NewRequest, json_body(request))
    async with pool(request).connection() as conn:
        if not await can_see_customer(conn, request.ctx.user, data["customer_id"], edit=True):
            raise RequestRefused(404, f"no customer {data['customer_id']}")
        await utility.create_request(
            conn, data["number"], data["customer_id"], data["address"],
            Decimal(str(data["power_kw"])), data.get("due_on"), request.ctx.user,
            request_now(request),
        )  # fmt: skip
        found = await utility.connection_request(conn, data["number"])
    return json(found, status=201)


async def move_request(request: Request, number: str) -> HTTPResponse:
    data = parse(RequestStage, json_body(request))
    await _request_visible(request, number)
    async with pool(request).connection() as conn:
        await utility.advance_request(
            conn,
            number,
            data["stage"],
            data.get("note", ""),
            request.ctx.user,
            request_now(request),
        )
        found = await utility.connection_request(conn, number)
    return json(found)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/customers/<customer_id:int>/utility",
        "The customer's service points (address, tariff, meter, last readings, outages at"
        " the address on now or within three days) and connection requests",
        READERS,
        customer_utility,
        responses={404: "no such customer"},
    ),
    Route(
        "GET",
        "/api/accounts/<contract_no:str>/readings",
        "The meter readings of an account, newest first (?limit=, default 12)",
        READERS,
        account_readings,
        responses={404: "no such account, or no meter in service"},
    ),
    Route(
        "POST",
        "/api/accounts/<contract_no:str>/readings",
        "A meter reading taken by an operator: refused (422, with why) when lower than the"
        " last or implausible for the tariff (unless accept_implausible after checking)",
        READERS,
        add_reading,
        body=NewReading,
        responses={201: "stored", 404: "no such account or meter"},
    ),
    Route(
        "GET",
        "/api/outages",
        "Outages on now or later (?all=1: ended ones too)",
        READERS,
        list_outages,
    ),
    Route(
        "POST",
        "/api/outages",
        "An outage by area: a locality, one street, or a range of houses on it; a known ref"
        " updates that outage",
        KEEPERS,
        create_outage,
        body=NewOutage,
        responses={201: "created", 200: "the outage with this ref was updated"},
    ),
    Route(
        "PATCH",
        "/api/outages/<outage_id:int>",
        "Move an outage's expected end, record when power came back, or change its reason",
        KEEPERS,
        change_outage,
        body=OutageChange,
        responses={404: "no such outage"},
    ),
    Route(
        "POST",
        "/api/outages/import",
        "The operations department's CSV of outages: taken whole or refused with the line"
        " and the reason; rows with a known ref update their outage",
        KEEPERS,
        import_outages,
        body=OutageImport,
        max_body=6 * 1024 * 1024,
    ),
    Route(
        "POST",
        "/api/connection-requests",
        "A technological connection request for a customer (stage registered)",
        READERS,
        create_request,
        body=NewRequest,
        responses={201: "created", 404: "no such customer", 409: "the number exists"},
    ),
    Route(
        "GET",
        "/api/connection-requests/<number:str>",
        "A connection request with every stage reached and its date",
        READERS,
        read_request,
        responses={404: "no such request"},
    ),
    Route(
        "POST",
        "/api/connection-requests/<number:str>/stage",
        "The request's next stage (stages are not skipped), or cancelled",
        READERS,
        move_request,
        body=RequestStage,
        responses={404: "no such request", 409: "not the next stage"},
    ),
)
