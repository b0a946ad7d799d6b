"""The CRM's REST routes: sessions, users, customers and their cards, identification and
PIN checks, cases, the knowledge base, surveys, reference data, reminders, recordings.

Declared as :class:`ccorch.api.routes.Route` rows like every room's routes (the HTTP room,
``ccorch.api``, guards them and builds the OpenAPI document from the same rows).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from pydantic import Field
from sanic import Request
from sanic.exceptions import HeaderNotFound, InvalidRangeType, RangeNotSatisfiable
from sanic.handlers import ContentRangeHandler
from sanic.response import HTTPResponse, file, json

from ccorch.api import sessions
from ccorch.api.http import actor_of, int_param, request_now
from ccorch.api.http import error as _error
from ccorch.api.http import json_body as _body
from ccorch.api.http import pool as _pool
from ccorch.api.routes import ANONYMOUS_MAX_BODY, Param, Route
from ccorch.api.validation import Body, Day, Id, OneOf, ValidationFailed, anchored, parse
from ccorch.crm import cases, kb, recordings, reference, store, surveys


class Login(Body):
    login: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(max_length=200)]


class PinCheck(Body):
    pin: Annotated[str, Field(pattern=anchored("[0-9]{4,8}"), description="4–8 digits")]


class NewUser(Body):
    login: Annotated[str, Field(pattern=anchored("[a-z0-9._-]{2,64}"))]
    full_name: Annotated[str, Field(min_length=1, max_length=200)]
    password: Annotated[str, Field(min_length=10, max_length=200)]
    roles: Annotated[list[Annotated[str, OneOf(store.ROLES)]], Field(min_length=1)]


# ---- handlers -----------------------------------------------------------------------


async def login(request: Request) -> HTTPResponse:
    data = parse(Login, _body(request))
    throttle: sessions.LoginThrottle = request.app.ctx.login_throttle
    address, now = request.client_ip or "?", time.monotonic()
    wait = throttle.retry_after(data["login"], address, now)
    if wait is not None:
        response = _error(429, "too_many_requests", "too many failed logins: try again later")
        response.headers["retry-after"] = str(max(1, int(wait + 0.999)))
        return response
    hours = request.app.ctx.config.crm.session_hours
    async with _pool(request).connection() as conn:
        result = await store.login(
            conn, data["login"], data["password"], request_now(request), dt.timedelta(hours=hours)
        )
    if result is None:
        throttle.failed(data["login"], address, now)
        return _error(401, "unauthorized", "wrong login or password")
    throttle.succeeded(data["login"])
    token, user = result
    csrf = sessions.csrf_for(token)
    response = json(
        {
            "token": token,
            "csrf": csrf,
            "user": {"id": user.id, "login": user.login, "roles": sorted(user.roles)},
        }
    )
    # the browser app's session: the token where no script can read it, and the CSRF value
    # its script sends back with every change
    secure, age = request.scheme == "https", int(hours * 3600)
    response.add_cookie(sessions.SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        secure=secure, max_age=age)  # fmt: skip
    response.add_cookie(sessions.CSRF_COOKIE, csrf, samesite="Strict", secure=secure, max_age=age)
    return response


async def logout(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        await store.logout(conn, request.ctx.token)
    response = json({"status": "logged out"})
    response.delete_cookie(sessions.SESSION_COOKIE)
    response.delete_cookie(sessions.CSRF_COOKIE)
    return response


async def me(request: Request) -> HTTPResponse:
    u: store.User = request.ctx.user
    async with _pool(request).connection() as conn:
        cur = await conn.execute("SELECT extension, language FROM users WHERE id = %s", (u.id,))
        row = await cur.fetchone()
    extension, language = row if row is not None else (None, None)
    return json(
        {
            "id": u.id,
            "login": u.login,
            "full_name": u.full_name,
            "roles": sorted(u.roles),
            "extension": extension,
            "language": language,
        }
    )


async def my_phone(request: Request) -> HTTPResponse:
    """The desktop's browser phone: the SIP account of one's own extension, for SIP over
    the node's WebSocket (``/sip``). The digest secret is given as HA1 (MD5 of
    user:realm:password), never the password: it opens that one phone and nothing else."""
    u: store.User = request.ctx.user
    async with _pool(request).connection() as conn:
        extension = await store.user_extension(conn, u.id)
    if not extension:
        return _error(404, "not_found", "you have no extension: an administrator gives you one")
    sip = request.app.ctx.sip
    if sip is None:
        return _error(409, "conflict", "SIP is not running on this node")
    account = sip.accounts.get(extension)
    if account is None or not account.ha1_md5:
        return _error(
            409, "conflict", f"extension {extension} has no SIP account: an administrator adds it"
        )
    return json(
        {
            "extension": extension,
            "uri": f"sip:{extension}@{sip.host}",
            "realm": sip.digest.realm,
            "ha1": account.ha1_md5,
            "websocket_path": "/sip",
        }
    )


class MySettings(Body):
    language: Literal["ru", "en", "zh"] | None = Field(
        None, description="the desktop's language; null or blank: the browser's"
    )


async def change_me(request: Request) -> HTTPResponse:
    """The user's own settings (today: the desktop's language)."""
    body = _body(request)
    data = parse(MySettings, body)
    if not isinstance(body, dict) or "language" not in body:
        raise ValidationFailed({"language": "required (null for the browser's)"})
    async with _pool(request).connection() as conn:
        await conn.execute(
            "UPDATE users SET language = %s WHERE id = %s",
            (data.get("language"), request.ctx.user.id),
        )
    return await me(request)


async def identify(request: Request) -> HTTPResponse:
    ani, contract = request.args.get("ani"), request.args.get("contract")
    if not ani and not contract:
        raise ValidationFailed({"ani": "give ani or contract", "contract": "give ani or contract"})
    async with _pool(request).connection() as conn:
        if ani:
            matches = await store.identify_by_ani(
                conn, ani, request.app.ctx.config.crm.default_country
            )
        else:
            matches = await store.identify_by_contract(conn, contract or "")
        visible = [
            m
            for m in matches
            if await store.can_see_customer(conn, request.ctx.user, m.customer_id)
        ]
    return json({"matches": [m.as_dict() for m in visible]})


async def search(request: Request) -> HTTPResponse:
    q = request.args.get("q", "")
    if not q.strip() or len(q) > 200 or "\x00" in q:
        raise ValidationFailed({"q": "1 to 200 characters"})
    limit = int_param(request, "limit", 20, 1, 100)
    async with _pool(request).connection() as conn:
        matches = await store.search(conn, q, limit)
        visible = [
            m
            for m in matches
            if await store.can_see_customer(conn, request.ctx.user, m.customer_id)
        ]
    return json({"matches": [m.as_dict() for m in visible]})


async def create_customer(request: Request) -> HTTPResponse:
    crm = request.app.ctx.config.crm
    service = request.args.get("service", "default")
    services = dict(crm.required_fields)
    required = services.get(service)
    if required is None:
        raise ValidationFailed(
            {"service": "unknown service; known: " + ", ".join(sorted(services))}
        )
    async with _pool(request).connection() as conn:
        cid = await store.create_customer(
            conn,
            _body(request),
            required=required,
            country=crm.default_country,
            actor=request.ctx.user.id,
        )
    return json({"id": cid}, status=201)


async def get_customer(request: Request, customer_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        card = await store.customer_card(conn, customer_id, request_now(request).date())
    if card is None:
        return _error(404, "not_found", f"no customer {customer_id}")
    return json(card)


async def update_customer(request: Request, customer_id: int) -> HTTPResponse:
    country = request.app.ctx.config.crm.default_country
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        if not await store.can_see_customer(conn, request.ctx.user, customer_id, edit=True):
            return _error(403, "forbidden", "your roles may see this customer's group, not edit it")
        found = await store.update_customer(
            conn, customer_id, _body(request), country=country, actor=request.ctx.user.id
        )
        card = (
            await store.customer_card(conn, customer_id, request_now(request).date())
            if found
            else None
        )
    return json(card) if card else _error(404, "not_found", f"no customer {customer_id}")


async def _authorization_answer(
    request: Request,
    contract_no: str,
    check: Callable[[Any], Coroutine[Any, Any, store.PinResult]],
    action: str,
) -> HTTPResponse:
    """Run one authorization check, audit its outcome, and answer with the balance when it passes."""
    async with _pool(request).connection() as conn:
        r = await check(conn)
        if r.outcome == "unknown_contract":
            return _error(404, "not_found", f"no contract {contract_no}")
        await store.audit(
            conn, request.ctx.user.id, action, "account", contract_no, None, {"outcome": r.outcome}
        )
    out: dict[str, Any] = {"outcome": r.outcome, "attempts_left": r.attempts_left}
    if r.locked_until:
        out["locked_until"] = r.locked_until.isoformat()
    if r.outcome == "ok":
        out |= {"balance": str(r.balance), "currency": r.currency, "customer_id": r.customer_id}
    return json(out)


async def check_pin(request: Request, contract_no: str) -> HTTPResponse:
    pin = parse(PinCheck, _body(request))["pin"]
    now = request_now(request)
    return await _authorization_answer(
        request,
        contract_no,
        lambda conn: store.authorize_pin(conn, contract_no, pin, now),
        "pin_check",
    )


class SecurityAnswers(Body):
    """The caller's answers to the account's security questions (store.QUESTIONS)."""

    last_payment_amount: (
        Annotated[str, Field(max_length=200, description=store.QUESTIONS["last_payment_amount"])]
        | None
    ) = None
    address_street: (
        Annotated[str, Field(max_length=200, description=store.QUESTIONS["address_street"])] | None
    ) = None


async def account_questions(request: Request, contract_no: str) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        questions = await store.security_questions(conn, contract_no)
    if questions is None:
        return _error(404, "not_found", f"no contract {contract_no}")
    return json({"questions": questions})


async def check_answers(request: Request, contract_no: str) -> HTTPResponse:
    data = parse(SecurityAnswers, _body(request))
    now = request_now(request)
    return await _authorization_answer(
        request,
        contract_no,
        lambda conn: store.authorize_by_answers(conn, contract_no, data, now),
        "answers_check",
    )


async def create_user(request: Request) -> HTTPResponse:
    data = parse(NewUser, _body(request))
    async with _pool(request).connection() as conn:
        uid = await store.create_user(
            conn,
            data["login"],
            data["full_name"],
            data["password"],
            data["roles"],
            request.ctx.user.id,
        )
    return json({"id": uid}, status=201)


async def audit_log(request: Request) -> HTTPResponse:
    entity = request.args.get("entity")
    limit = int_param(request, "limit", 50, 1, 500)
    before_id = int_param(request, "before_id", 2**62, 1, 2**62)
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            """SELECT id, at, user_id, action, entity, entity_id, before, after FROM audit_log
               WHERE (%s::text IS NULL OR entity = %s) AND id < %s ORDER BY id DESC LIMIT %s""",
            (entity, entity, before_id, limit),
        )
        rows = await cur.fetchall()
    items = [
        {
            "id": r[0],
            "at": r[1].isoformat(),
            "user_id": r[2],
            "action": r[3],
            "entity": r[4],
            "entity_id": r[5],
            "before": r[6],
            "after": r[7],
        }
        for r in rows
    ]
    return json(
        {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}
    )


async def create_case(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        case = await cases.create_case(
            conn,
            _body(request),
            request.ctx.user,
            request_now(request),
            request.app.ctx.business_hours,
        )
    return json(case, status=201)


async def get_case(request: Request, case_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(await cases.get_case(conn, case_id, request.ctx.user))


async def customer_cases(request: Request, customer_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        return json({"items": await cases.of_customer(conn, customer_id, request.ctx.user)})


async def case_transition(request: Request, case_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        result = await cases.transition(
            conn, case_id, _body(request), request.ctx.user, request_now(request)
        )
    if result["status"] == "resolved":
        await _tell_resolved(request, case_id)
    return json(result)


async def _tell_resolved(request: Request, case_id: int) -> None:
    """``[sms] case_resolved_text`` to the customer's first number, if both are set."""
    text = request.app.ctx.config.sms.case_resolved_text
    gateway = getattr(request.app.ctx, "sms", None)
    if not text or gateway is None or not gateway.enabled:
        return
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            "SELECT c.customer_id, p.e164 FROM cases c JOIN customer_phones p"
            " ON p.customer_id = c.customer_id WHERE c.id = %s ORDER BY p.id LIMIT 1",
            (case_id,),
        )
        row = await cur.fetchone()
    if row is not None:
        await gateway.send(
            row[1],
            text.replace("{number}", str(case_id)),
            customer_id=row[0],
            case_id=case_id,
            user_id=request.ctx.user.id,
        )


async def assign_case(request: Request, case_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(await cases.assign(conn, case_id, _body(request), request.ctx.user))


class NewReminder(Body):
    kind: Literal["birthday", "renewal", "custom"]
    due_on: Day
    yearly: bool | None = Field(None, description="again every year (birthdays, renewals)")
    text: Annotated[str, Field(min_length=1, max_length=500)]


async def list_reminders(request: Request, customer_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        cur = await conn.execute(
            """SELECT id, kind, due_on, yearly, text FROM customer_reminders
               WHERE customer_id = %s ORDER BY due_on, id""",
            (customer_id,),
        )
        items = [
            {"id": i, "kind": k, "due_on": d.isoformat(), "yearly": y, "text": t}
            for i, k, d, y, t in await cur.fetchall()
        ]
    return json({"items": items})


async def add_reminder(request: Request, customer_id: int) -> HTTPResponse:
    data = parse(NewReminder, _body(request))
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id, edit=True):
            return _error(404, "not_found", f"no customer {customer_id} you may edit")
        async with conn.transaction():
            cur = await conn.execute(
                """INSERT INTO customer_reminders (customer_id, kind, due_on, yearly, text)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (
                    customer_id,
                    data["kind"],
                    data["due_on"],
                    data.get("yearly", data["kind"] == "birthday"),
                    data["text"],
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            after = {k: str(v) for k, v in data.items()}
            await store.audit(conn, request.ctx.user.id, "create", "reminder", row[0], None, after)
    return json({"id": row[0]}, status=201)


async def delete_reminder(request: Request, reminder_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            "SELECT customer_id, kind, due_on, text FROM customer_reminders WHERE id = %s",
            (reminder_id,),
        )
        row = await cur.fetchone()
        if row is None or not await store.can_see_customer(
            conn, request.ctx.user, row[0], edit=True
        ):
            return _error(404, "not_found", f"no reminder {reminder_id} you may edit")
        async with conn.transaction():
            await conn.execute("DELETE FROM customer_reminders WHERE id = %s", (reminder_id,))
            before = {"customer_id": row[0], "kind": row[1], "due_on": str(row[2]), "text": row[3]}
            await store.audit(
                conn, request.ctx.user.id, "delete", "reminder", reminder_id, before, None
            )
    return json({"deleted": reminder_id})


async def interaction_recording(request: Request, interaction_id: int) -> HTTPResponse:
    """The recording an interaction carries (WAV); access is checked on the recording."""
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            "SELECT recording_id FROM interactions WHERE id = %s", (interaction_id,)
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return _error(404, "not_found", f"no recording for interaction {interaction_id}")
        return await _serve_recording(request, conn, int(row[0]))


async def recording(request: Request, recording_id: int) -> HTTPResponse:
    """A recording by its id (WAV): a complaint's only for the complaints role, a group's
    customer's only for the roles that may see the customer; every access is audited."""
    async with _pool(request).connection() as conn:
        return await _serve_recording(request, conn, recording_id)


async def _serve_recording(
    request: Request, conn: AsyncConnection[Any], recording_id: int
) -> HTTPResponse:
    async with conn.transaction():
        got = await recordings.open_for(
            conn, request.ctx.user, recording_id, Path(request.app.ctx.recordings_dir)
        )
    if isinstance(got, recordings.Refused):
        error = "forbidden" if got.status == 403 else "not_found"
        return _error(got.status, error, got.reason)
    # byte ranges: the browser's player seeks without loading the whole file
    headers = {"accept-ranges": "bytes"}
    if "range" not in request.headers:
        return await file(got, mime_type="audio/wav", headers=headers)
    try:
        span = ContentRangeHandler(request, await asyncio.to_thread(os.stat, got))
    except RangeNotSatisfiable:
        return _error(416, "range_not_satisfiable", "the range is outside the recording")
    except (HeaderNotFound, InvalidRangeType):
        return await file(got, mime_type="audio/wav", headers=headers)
    return await file(got, mime_type="audio/wav", headers=headers, _range=span)


async def overdue(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(
            {"items": await cases.overdue_report(conn, request_now(request), request.ctx.user)}
        )


async def add_interaction(request: Request) -> HTTPResponse:
    body = _body(request)
    async with _pool(request).connection() as conn:
        cid = body.get("customer_id") if isinstance(body, dict) else None
        if (
            isinstance(cid, int)
            and not isinstance(cid, bool)
            and cid > 0
            and not await store.can_see_customer(conn, request.ctx.user, cid)
        ):
            raise ValidationFailed({"customer_id": "no such customer"})
        iid = await cases.add_interaction(conn, body, request.ctx.user)
    return json({"id": iid}, status=201)


async def customer_history(request: Request, customer_id: int) -> HTTPResponse:
    limit = int_param(request, "limit", 20, 1, 100)
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        return json(await cases.history(conn, customer_id, limit, request.args.get("before")))


async def customer_surveys(request: Request, customer_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        if not await store.can_see_customer(conn, request.ctx.user, customer_id):
            return _error(404, "not_found", f"no customer {customer_id}")
        return json({"items": await surveys.of_customer(conn, customer_id)})


async def kb_search(request: Request) -> HTTPResponse:
    q = request.args.get("q", "")
    if not q.strip() or len(q) > 200 or "\x00" in q:
        raise ValidationFailed({"q": "1 to 200 characters"})
    lang = request.args.get("lang")
    if lang is not None and lang not in kb.LANGUAGES:
        raise ValidationFailed({"lang": "one of " + ", ".join(kb.LANGUAGES)})
    limit = int_param(request, "limit", 10, 1, 50)
    async with _pool(request).connection() as conn:
        return json({"items": await kb.search(conn, q, lang, limit)})


async def kb_create(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(
            await kb.save_article(conn, _body(request), request.ctx.user, request_now(request)),
            status=201,
        )


async def kb_update(request: Request, article_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        if await kb.get_article(conn, article_id) is None:
            return _error(404, "not_found", f"no article {article_id}")
        return json(
            await kb.save_article(
                conn, _body(request), request.ctx.user, request_now(request), article_id
            )
        )


async def kb_get(request: Request, article_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        article = await kb.get_article(conn, article_id)
    return json(article) if article else _error(404, "not_found", f"no article {article_id}")


async def survey_create(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        sid = await surveys.create_survey(
            conn, _body(request), request.ctx.user, request_now(request)
        )
    return json({"id": sid}, status=201)


async def survey_start(request: Request, survey_id: int) -> HTTPResponse:
    body = _body(request) if request.body else None
    attempt = body.get("campaign_attempt_id") if isinstance(body, dict) else None
    if attempt is not None and not await _took_attempt(request, attempt):
        raise ValidationFailed({"campaign_attempt_id": "no such campaign attempt of yours"})
    async with _pool(request).connection() as conn:
        return json(
            await surveys.start_response(
                conn, survey_id, body, request.ctx.user, request_now(request)
            ),
            status=201,
        )


async def _took_attempt(request: Request, attempt: object) -> bool:
    """Whether the user may answer a script for this campaign attempt: its operator (the
    call in progress, or the attempt's record), or a supervisor."""
    actor = await actor_of(request)
    if actor.roles & {"supervisor", "admin"}:
        return True
    if actor.extension is None or not isinstance(attempt, int):
        return False
    calls = request.app.ctx.calls
    for call in list(calls.calls.values()) if calls is not None else []:
        dial = call.campaign
        if dial is not None and dial.attempt_id == attempt:
            return bool(call.agent == actor.extension)
    async with _pool(request).connection() as conn:
        cur = await conn.execute("SELECT agent FROM campaign_attempts WHERE id = %s", (attempt,))
        row = await cur.fetchone()
    return row is not None and row[0] == actor.extension


async def survey_answer(request: Request, response_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(
            await surveys.answer(
                conn, response_id, _body(request), request_now(request), request.ctx.user
            )
        )


async def survey_response(request: Request, response_id: int) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        return json(await surveys.get_response(conn, response_id, request.ctx.user))


CRM_ROLES = ("operator", "supervisor", "complaints", "admin")

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/auth/login",
        "Log in; returns a session token",
        None,
        login,
        body=Login,
        responses={200: "token", 401: "wrong login or password", 429: "too many failures"},
        max_body=ANONYMOUS_MAX_BODY,
    ),
    Route("POST", "/api/auth/logout", "End this session", CRM_ROLES, logout),
    Route("GET", "/api/auth/me", "Who this session is (extension, language)", CRM_ROLES, me),
    Route(
        "GET",
        "/api/auth/me/phone",
        "The browser phone's SIP account for one's own extension (SIP over WebSocket)",
        CRM_ROLES,
        my_phone,
        responses={404: "no extension", 409: "no SIP account for it"},
    ),
    Route(
        "PATCH",
        "/api/auth/me",
        "Change one's own settings: the desktop's language",
        CRM_ROLES,
        change_me,
        body=MySettings,
    ),
    Route(
        "GET",
        "/api/customers/identify",
        "Identify a caller by number (exact, then last digits) or by contract",
        CRM_ROLES,
        identify,
        params=(
            Param("ani", "query", Annotated[str, Field(max_length=40)]),
            Param("contract", "query", Annotated[str, Field(max_length=32)]),
        ),
    ),
    Route(
        "GET",
        "/api/customers/search",
        "Fuzzy search by name, phone, contract or address, ranked",
        CRM_ROLES,
        search,
        params=(
            Param("q", "query", Annotated[str, Field(min_length=1, max_length=200)], True),
            Param("limit", "query", Annotated[int, Field(ge=1, le=100)]),
        ),
    ),
    Route(
        "POST",
        "/api/customers",
        "Register a customer (the service's required fields apply)",
        ("operator", "supervisor", "admin"),
        create_customer,
        params=(Param("service", "query", Annotated[str, Field(max_length=40)]),),
        body=store.NewCustomer,
        responses={201: "created", 422: "invalid fields"},
    ),
    Route("GET", "/api/customers/<customer_id:int>", "The customer card", CRM_ROLES, get_customer),
    Route(
        "PATCH",
        "/api/customers/<customer_id:int>",
        "Change a customer's fields (phones and addresses replace the lists)",
        ("operator", "supervisor", "admin"),
        update_customer,
        body=store.CustomerUpdate,
    ),
    Route(
        "POST",
        "/api/accounts/<contract_no:str>/pin",
        "Check a contract's PIN (3 wrong in a row lock it)",
        ("operator", "supervisor", "admin"),
        check_pin,
        body=PinCheck,
    ),
    Route(
        "GET",
        "/api/accounts/<contract_no:str>/questions",
        "Security questions from the customer's own data (for a forgotten PIN)",
        ("operator", "supervisor", "admin"),
        account_questions,
    ),
    Route(
        "POST",
        "/api/accounts/<contract_no:str>/answers",
        "Authorize by answering the questions (wrong answers count like wrong PINs)",
        ("operator", "supervisor", "admin"),
        check_answers,
        body=SecurityAnswers,
    ),
    Route(
        "POST",
        "/api/users",
        "Create a user with roles",
        ("admin",),
        create_user,
        body=NewUser,
        responses={201: "created"},
    ),
    Route(
        "POST",
        "/api/cases",
        "Open a case (its SLA deadline is set in business hours)",
        CRM_ROLES,
        create_case,
        body=cases.NewCase,
        responses={201: "created"},
    ),
    Route(
        "GET",
        "/api/cases/overdue",
        "Open cases past their deadline",
        ("supervisor", "admin", "complaints"),
        overdue,
    ),
    Route(
        "GET",
        "/api/cases/<case_id:int>",
        "A case with its transitions, tasks and the states this user may move it to (next)",
        CRM_ROLES,
        get_case,
    ),
    Route(
        "GET",
        "/api/customers/<customer_id:int>/cases",
        "The customer's cases this user may read (open first), each with its next states",
        CRM_ROLES,
        customer_cases,
        responses={404: "no such customer"},
    ),
    Route(
        "POST",
        "/api/cases/<case_id:int>/transition",
        "Move a case along its workflow (approvals: supervisors only)",
        CRM_ROLES,
        case_transition,
        body=cases.CaseTransition,
    ),
    Route(
        "POST",
        "/api/interactions",
        "Log a contact in any channel",
        CRM_ROLES,
        add_interaction,
        body=cases.NewInteraction,
        responses={201: "created"},
    ),
    Route(
        "GET",
        "/api/kb/search",
        "Knowledge-base search, ranked, with highlighted snippets",
        CRM_ROLES,
        kb_search,
        params=(
            Param("q", "query", Annotated[str, Field(min_length=1, max_length=200)], True),
            Param("lang", "query", Annotated[str, OneOf(kb.LANGUAGES)]),
            Param("limit", "query", Annotated[int, Field(ge=1, le=50)]),
        ),
    ),
    Route(
        "POST",
        "/api/kb/articles",
        "Write an article",
        ("supervisor", "admin"),
        kb_create,
        body=kb.Article,
        responses={201: "created"},
    ),
    Route(
        "GET",
        "/api/kb/articles/<article_id:int>",
        "An article with its version list",
        CRM_ROLES,
        kb_get,
    ),
    Route(
        "PUT",
        "/api/kb/articles/<article_id:int>",
        "Save a new version of an article",
        ("supervisor", "admin"),
        kb_update,
        body=kb.Article,
    ),
    Route(
        "POST",
        "/api/surveys",
        "Create a survey or script (a question graph, checked: no dangling next, no cycle)",
        ("supervisor", "admin"),
        survey_create,
        body=surveys.NewSurvey,
        responses={201: "created"},
    ),
    Route(
        "POST",
        "/api/surveys/<survey_id:int>/responses",
        "Start answering a survey (for an interaction and customer)",
        CRM_ROLES,
        survey_start,
        body=surveys.StartResponse,
        responses={201: "created"},
    ),
    Route(
        "POST",
        "/api/survey-responses/<response_id:int>/answers",
        "Answer the current question; returns the next one",
        CRM_ROLES,
        survey_answer,
        body=surveys.Answer,
    ),
    Route(
        "GET",
        "/api/survey-responses/<response_id:int>",
        "A response with its answers",
        CRM_ROLES,
        survey_response,
    ),
    Route(
        "GET",
        "/api/customers/<customer_id:int>/history",
        "The customer's contacts in every channel, newest first",
        CRM_ROLES,
        customer_history,
        params=(
            Param("limit", "query", Annotated[int, Field(ge=1, le=100)]),
            Param("before", "query", Annotated[str, Field(max_length=80)]),
        ),
    ),
    Route(
        "GET",
        "/api/customers/<customer_id:int>/surveys",
        "The customer's survey responses, newest first (survey, answers, the call)",
        CRM_ROLES,
        customer_surveys,
    ),
    Route(
        "PUT",
        "/api/cases/<case_id:int>/assignment",
        "Give a case to another department or user",
        ("supervisor", "admin"),
        assign_case,
        body=cases.CaseAssignment,
        responses={404: "no such case"},
    ),
    Route(
        "GET",
        "/api/customers/<customer_id:int>/reminders",
        "The customer's reminders (birthday, renewal, custom dates)",
        CRM_ROLES,
        list_reminders,
    ),
    Route(
        "POST",
        "/api/customers/<customer_id:int>/reminders",
        "Add a reminder shown when the customer calls",
        ("operator", "supervisor", "admin"),
        add_reminder,
        body=NewReminder,
        responses={201: "created"},
    ),
    Route(
        "DELETE",
        "/api/reminders/<reminder_id:int>",
        "Delete a reminder",
        ("operator", "supervisor", "admin"),
        delete_reminder,
        responses={404: "no such reminder you may edit"},
    ),
    Route(
        "GET",
        "/api/interactions/<interaction_id:int>/recording",
        "The interaction's recording (audio/wav); a complaint's only for the complaints role",
        CRM_ROLES,
        interaction_recording,
        responses={200: "audio/wav", 403: "a complaint's recording", 404: "no recording"},
    ),
    Route(
        "GET",
        "/api/recordings/<recording_id:int>",
        "A recording (audio/wav) by id; a complaint's only for the complaints role; audited",
        CRM_ROLES,
        recording,
        responses={200: "audio/wav", 403: "a complaint's recording", 404: "no recording"},
    ),
    Route(
        "GET",
        "/api/audit",
        "The audit log, newest first",
        ("admin", "supervisor"),
        audit_log,
        params=(
            Param("entity", "query", Annotated[str, Field(max_length=40)]),
            Param("limit", "query", Annotated[int, Field(ge=1, le=500)]),
            Param("before_id", "query", Id),
        ),
    ),
)


def _reference_routes() -> tuple[Route, ...]:
    """List, create, change and delete for each reference table (admins change them)."""
    out: list[Route] = [
        Route(
            "PUT",
            "/api/customer-groups/<group_id:int>/access",
            "Which roles see and edit the group's customers (replaces the list)",
            ("admin",),
            reference.set_group_access,
            body=reference.GroupAccess,
        )
    ]
    for t in reference.TABLES:
        h = reference.handlers(t)
        base, one = f"/api/{t.resource}", f"/api/{t.resource}/<key:{t.key_kind}>"
        out += [
            Route("GET", base, f"List every {t.summary}", CRM_ROLES, h["list"]),
            Route(
                "POST",
                base,
                f"Create {t.summary}",
                ("admin",),
                h["create"],
                body=t.shape,
                responses={201: "created", 409: "exists already", 422: "invalid fields"},
            ),
            Route(
                "PATCH",
                one,
                f"Change {t.summary}",
                ("admin",),
                h["change"],
                body=t.change,
                responses={404: "no such row", 409: "conflicts with another row"},
            ),
            Route(
                "DELETE",
                one,
                f"Delete {t.summary}",
                ("admin",),
                h["delete"],
                responses={404: "no such row", 409: "still in use"},
            ),
        ]
    return tuple(out)


ROUTES = ROUTES + _reference_routes()
