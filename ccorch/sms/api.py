"""SMS over HTTP [operators, supervisors, admins]:

- ``POST /api/sms`` ``{"text", "customer_id"?, "phone"?, "case_id"?}``: a one-off message
  to a customer (their first number unless ``phone`` is one of theirs) or, for supervisors,
  to any number; queued at once, sent through the SMSC (202 with its id);
- ``GET /api/sms/{id}``: a message and its state (queued, submitted, delivered, failed);
- ``GET /api/sms?customer_id=``: a customer's messages, newest first.

An operator sees and sends only what concerns customers they may see.
"""

from __future__ import annotations

from typing import Annotated, Any

from psycopg.rows import dict_row
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import int_param, iso_times, json_body
from ccorch.api.routes import Param, Route
from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.crm.store import audit, can_see_customer
from ccorch.errors import RequestRefused
from ccorch.phones import PhoneError, normalize

SENDERS = ("operator", "supervisor", "admin")
SUPERVISORS = frozenset({"supervisor", "admin"})


class NewSms(Body):
    text: Annotated[str, Field(min_length=1, max_length=1600)]
    customer_id: Id | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    case_id: Id | None = None


async def send_sms(request: Request) -> HTTPResponse:
    fields = parse(NewSms, json_body(request))
    gateway = getattr(request.app.ctx, "sms", None)
    if gateway is None or not gateway.enabled:
        raise RequestRefused(409, "SMS is off: the [sms] section names no SMSC host")
    user = request.ctx.user
    customer = fields.get("customer_id")
    phone: str | None = None
    if fields.get("phone") is not None:
        try:
            phone = normalize(fields["phone"], request.app.ctx.config.crm.default_country)
        except PhoneError as e:
            raise ValidationFailed({"phone": str(e)}) from None
    async with request.app.ctx.pool.connection() as conn:
        if customer is not None:
            if not await can_see_customer(conn, user, customer):
                raise ValidationFailed({"customer_id": "no such customer"})
            cur = await conn.execute(
                "SELECT e164 FROM customer_phones WHERE customer_id = %s ORDER BY id", (customer,)
            )
            numbers = [r[0] for r in await cur.fetchall()]
            if phone is None and numbers:
                phone = numbers[0]
            elif phone is not None and phone not in numbers:
                raise ValidationFailed({"phone": "not one of the customer's numbers"})
        elif phone is not None and not set(user.roles) & SUPERVISORS:
            raise ValidationFailed({"customer_id": "an operator writes to a customer"})
        if phone is None:
            raise ValidationFailed({"phone": "a number, or a customer who has one"})
        case = fields.get("case_id")
        if case is not None:
            cur = await conn.execute("SELECT customer_id FROM cases WHERE id = %s", (case,))
            row = await cur.fetchone()
            if row is None or (
                row[0] is not None and not await can_see_customer(conn, user, row[0])
            ):
                raise ValidationFailed({"case_id": "no such case"})
    sms_id = await gateway.send(
        phone, fields["text"], customer_id=customer, case_id=fields.get("case_id"), user_id=user.id
    )
    async with request.app.ctx.pool.connection() as conn:
        await audit(conn, user.id, "send", "sms", sms_id, None, {"phone": phone})
    return json(await _message(request, sms_id), status=202)


async def _message(request: Request, sms_id: int) -> dict[str, Any]:
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            "SELECT id, phone, text, state, parts, error, customer_id, case_id, campaign_id,"
            " created_by, created_at, submitted_at, done_at FROM sms_messages WHERE id = %s",
            (sms_id,),
        )
        row = await cur.fetchone()
        user = request.ctx.user
        if row is None or not (
            set(user.roles) & SUPERVISORS
            or row["created_by"] == user.id
            or (
                row["customer_id"] is not None
                and await can_see_customer(conn, user, row["customer_id"])
            )
        ):
            raise RequestRefused(404, f"no message {sms_id}")
    return iso_times(row)


async def get_sms(request: Request, sms_id: int) -> HTTPResponse:
    return json(await _message(request, sms_id))


async def list_sms(request: Request) -> HTTPResponse:
    customer = int_param(request, "customer_id", 0, 1, 2**62)
    if not customer:
        raise ValidationFailed({"customer_id": "required"})
    limit = int_param(request, "limit", 50, 1, 500)
    async with (
        request.app.ctx.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        if not await can_see_customer(conn, request.ctx.user, customer):
            raise RequestRefused(404, f"no customer {customer}")
        await cur.execute(
            "SELECT id, phone, text, state, parts, error, case_id, campaign_id, created_at,"
            " submitted_at, done_at FROM sms_messages WHERE customer_id = %s"
            " ORDER BY id DESC LIMIT %s",
            (customer, limit),
        )
        return json({"items": [iso_times(r) for r in await cur.fetchall()]})


# fmt: off
ROUTES = (
    Route("POST", "/api/sms",
          "Send a text message to a customer (or, for supervisors, any number) through the"
          " SMSC: queued at once, its state follows the SMSC's answer and receipt",
          SENDERS, send_sms, body=NewSms,
          responses={202: "queued", 409: "SMS is not configured"}),
    Route("GET", "/api/sms/<sms_id:int>", "A message and its state", SENDERS, get_sms,
          responses={404: "no such message"}),
    Route("GET", "/api/sms", "A customer's messages, newest first", SENDERS, list_sms,
          params=(Param("customer_id", "query", Annotated[int, Field(ge=1)]),
                  Param("limit", "query", Annotated[int, Field(ge=1, le=500)]))),
)
# fmt: on
