"""E-mail over HTTP [operators, supervisors, complaints, admins]:

- ``GET /api/email/threads?unanswered=true``: the threads this user may read (a thread is
  a case with mail in it); unanswered ones (the customer wrote last) oldest first;
- ``GET /api/email/threads/{case_id}``: the case, its customer and every message in and out,
  with the attachments' names and sizes;
- ``POST /api/email/threads/{case_id}/reply`` ``{"text", "attachments"?}``: the reply,
  written at once and sent by SMTP on the thread (202 with the message);
- ``PATCH /api/email/threads/{case_id}`` ``{"topic_id"?, "customer_id"?}``: the operator
  classifies the thread;
- ``GET /api/email/attachments/{id}``: one attachment, for those who may read its case;
- ``GET/PUT /api/email/rules`` [supervisors, admins]: the classification rules of new threads.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json, raw

from ccorch.api.http import json_body, pool, request_now
from ccorch.api.routes import Param, Route
from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.email import threads
from ccorch.email.message import Attachment, compose, safe_filename
from ccorch.email.message import parse as read_mail
from ccorch.email.rules import RulesBody, checked_rules
from ccorch.errors import RequestRefused

READERS = ("operator", "supervisor", "complaints", "admin")
KEEPERS = ("supervisor", "admin")
# types a browser may show itself; anything else is downloaded as bytes
SHOWN = frozenset({"image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain"})


class NewAttachment(Body):
    filename: Annotated[str, Field(min_length=1, max_length=200)]
    content_type: Annotated[
        str, Field(max_length=100, pattern=r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
    ] = "application/octet-stream"
    data: Annotated[str, Field(description="the file, base64")]


class NewReply(Body):
    text: Annotated[str, Field(min_length=1, max_length=100_000)]
    attachments: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None


class ThreadChange(Body):
    topic_id: Id | None = None
    customer_id: Id | None = None


def _mailbox(request: Request) -> Any:
    box = getattr(request.app.ctx, "mailbox", None)
    if box is None or not box.enabled:
        raise RequestRefused(409, "e-mail is off: the [email] section names no IMAP host")
    return box


async def list_threads(request: Request) -> HTTPResponse:
    flag = request.args.get("unanswered", "false")
    if flag not in ("true", "false"):
        raise ValidationFailed({"unanswered": "true or false"})
    async with pool(request).connection() as conn:
        items = await threads.threads(conn, request.ctx.user, unanswered=flag == "true")
    return json({"items": items})


async def get_thread(request: Request, case_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        return json(await threads.thread(conn, case_id, request.ctx.user))


def _attachments(items: list[dict[str, Any]], limit: int) -> list[Attachment]:
    out: list[Attachment] = []
    total = 0
    for i, item in enumerate(items):
        try:
            a = parse(NewAttachment, item)
        except ValidationFailed as e:
            raise ValidationFailed(
                {f"attachments[{i}].{k}": v for k, v in e.fields.items()}
            ) from None
        try:
            data = base64.b64decode(a["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed({f"attachments[{i}].data": "not base64"}) from None
        total += len(data)
        if total > limit:
            raise ValidationFailed(
                {f"attachments[{i}]": f"the attachments weigh more than {limit} bytes together"}
            )
        ctype = a.get("content_type", "application/octet-stream")
        out.append(Attachment(safe_filename(a["filename"]), ctype, data))
    return out


async def reply(request: Request, case_id: int) -> HTTPResponse:
    box = _mailbox(request)
    body = parse(NewReply, json_body(request))
    config = box.config
    files = _attachments(body.get("attachments") or [], config.max_attachment_bytes)
    user = request.ctx.user
    now = request_now(request)
    async with pool(request).connection() as conn:
        case = await threads.readable_case(conn, case_id, user)
        target = await threads.reply_target(conn, case)
        message = compose(
            sender=config.address,
            sender_name=config.display_name,
            to=target.to,
            subject=target.subject,
            text=body["text"],
            in_reply_to=target.in_reply_to,
            references=target.references,
            attachments=files,
            now=now,
        )
        raw_bytes = message.as_bytes()
        row = read_mail(raw_bytes)  # the row is what went out, headers and all
        email_id = await threads.queue_reply(conn, case, row, raw_bytes, user=user, now=now)
    box.wake_sender()
    return json(
        {"id": email_id, "state": "queued", "message_id": row.message_id, "to": target.to,
         "subject": target.subject},
        status=202,
    )  # fmt: skip


async def classify(request: Request, case_id: int) -> HTTPResponse:
    body = parse(ThreadChange, json_body(request))
    if not body:
        raise ValidationFailed({"topic_id": "topic_id or customer_id"})
    async with pool(request).connection() as conn:
        return json(
            await threads.classify_thread(
                conn,
                case_id,
                request.ctx.user,
                topic_id=body.get("topic_id"),
                customer_id=body.get("customer_id"),
                hours=request.app.ctx.business_hours,
            )
        )


async def get_attachment(request: Request, attachment_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        name, ctype, data = await threads.attachment(conn, attachment_id, request.ctx.user)
    return raw(
        data,
        content_type=ctype if ctype in SHOWN else "application/octet-stream",
        headers={
            # always a download: a mailed HTML page never runs on our origin
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


async def get_rules(request: Request) -> HTTPResponse:
    async with pool(request).connection() as conn:
        rules = await threads.load_rules(conn)
    return json({"rules": [r.__dict__ for r in rules]})


async def put_rules(request: Request) -> HTTPResponse:
    rules = checked_rules(json_body(request))
    async with pool(request).connection() as conn:
        await threads.replace_rules(conn, rules, request.ctx.user)
    return json({"rules": [r.__dict__ for r in rules]})


# fmt: off
ROUTES = (
    Route("GET", "/api/email/threads",
          "E-mail threads this user may read: unanswered ones (the customer wrote last, the"
          " case not resolved) oldest first, or all newest first", READERS, list_threads,
          params=(Param("unanswered", "query", bool),)),
    Route("GET", "/api/email/threads/<case_id:int>",
          "A thread: its case, customer and every message in and out with attachments",
          READERS, get_thread, responses={404: "no such case, or not yours to read"}),
    Route("POST", "/api/email/threads/<case_id:int>/reply",
          "Reply by e-mail on the thread (to the customer's last message, or to the address"
          " on their card): written at once, then sent by SMTP", READERS, reply,
          body=NewReply, max_body=16 * 1024 * 1024,
          responses={202: "queued", 404: "no such case", 409: "e-mail is off, or no address"}),
    Route("PATCH", "/api/email/threads/<case_id:int>",
          "Classify a thread: its topic, and the customer it is from", READERS, classify,
          body=ThreadChange, responses={404: "no such case"}),
    Route("GET", "/api/email/attachments/<attachment_id:int>",
          "One attachment, as a download", READERS, get_attachment,
          responses={404: "no such attachment, or not yours to read"}),
    Route("GET", "/api/email/rules", "The classification rules of new threads, in order",
          KEEPERS, get_rules),
    Route("PUT", "/api/email/rules",
          "Replace the classification rules (the first match wins; a bad one is refused"
          " with its index and none is taken)", KEEPERS, put_rules, body=RulesBody),
)
# fmt: on
