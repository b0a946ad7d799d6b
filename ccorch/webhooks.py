"""Webhooks: the live events, POSTed to the enterprise's own web services (seeds 001, 003).

An admin subscribes a URL to event types (``call.ended``, or a prefix such as ``call.*``;
``*`` for all). Each matching event is first written to an outbox in PostgreSQL (one row per
subscription and event), then delivered from there: a node that restarts, or a receiver
that is down, loses none; delivery is retried with exponential backoff (1 s, 2 s, 4 s, ...
up to ``webhooks.max_backoff_seconds``) for ``webhooks.max_attempts`` attempts, then the
row is ``failed`` (visible over the API, and sent again with ``POST .../retry``).

Each request: ``Content-Type: application/json``, the event as the body, and
``X-Ccorch-Delivery`` (the outbox row: the same on every retry, so a receiver drops a
repeat), ``X-Ccorch-Event``, ``X-Ccorch-Timestamp`` (Unix seconds) and
``X-Ccorch-Signature: sha256=<hex>``: HMAC-SHA256 with the subscription's secret over
``<timestamp>.<body>``. Any 2xx is delivered. A subscription's events go out in the
order they happened: one waiting for its retry holds back the later ones. Delivery is at least once: a receiver that
answered but whose answer was lost gets the row again, with the same delivery id.

Not kept: events published while a node was down, and the last moments (below a second)
between an event and its outbox write if the node dies then.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from ccorch.api.http import error as _error
from ccorch.api.http import json_body
from ccorch.api.http import pool as _pool
from ccorch.api.routes import Route
from ccorch.api.validation import Body, ValidationFailed, parse
from ccorch.crm import store
from ccorch.events import Event, EventStream
from ccorch.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ADMINS = ("admin",)
BATCH = 200  # events written to the outbox in one transaction, rows sent in one pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Ccorch-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def matches(patterns: list[str], event_type: str) -> bool:
    for p in patterns:
        if p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1])):
            return True
    return False


def backoff(attempts: int, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: 1, 2, 4, ... at most ``cap``."""
    return float(min(cap, 2 ** max(0, attempts - 1)))


# --- the outbox: written from the stream, sent from the table --------------------------------


class Webhooks:
    """The node's webhook writer and sender (two tasks on the loop)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        stream: EventStream,
        *,
        max_attempts: int,
        max_backoff: float,
        timeout: float,
    ) -> None:
        self.pool, self.stream = pool, stream
        self.max_attempts, self.max_backoff, self.timeout = max_attempts, max_backoff, timeout
        self.subscriptions: list[tuple[int, list[str]]] = []
        # The writer follows the stream only while some webhook is active: a node without
        # webhooks does not queue and wake a task for every call event (a few % of a core
        # under SIP load). Events after ``_active_from`` are the new subscriptions' first.
        self._active = asyncio.Event()
        self._active_from = 0
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.delivered = 0
        self.failed_attempts = 0

    async def start(self) -> None:
        await self.reload()
        self.tasks = [
            asyncio.create_task(self._write(), name="webhooks_write"),
            asyncio.create_task(self._send(), name="webhooks_send"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self.tasks)

    async def reload(self) -> None:
        """The active subscriptions (after a change through the API)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, events FROM webhooks WHERE active ORDER BY id")
            self.subscriptions = [(int(r[0]), list(r[1])) for r in await cur.fetchall()]
        if not self.subscriptions:
            self._active.clear()
        elif not self._active.is_set():
            self._active_from = self.stream.last_seq
            self._active.set()
        self.wake.set()

    async def _write(self) -> None:
        since: int | None = None
        while True:
            if not self._active.is_set():
                await self._active.wait()
                since = self._active_from
            sub = self.stream.subscribe(since)
            try:
                if sub.backlog:
                    await self._store(sub.backlog)
                    since = sub.backlog[-1].seq
                while (not sub.cut or not sub.queue.empty()) and self._active.is_set():
                    batch = [await sub.queue.get()]
                    while not sub.queue.empty() and len(batch) < BATCH:
                        batch.append(sub.queue.get_nowait())
                    batch = [e for e in batch if since is None or e.seq > since]
                    if batch:
                        await self._store(batch)
                        since = batch[-1].seq
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the stream's buffer holds them
                log.warning("webhook outbox not written", extra={"error": str(e)})
                await asyncio.sleep(1.0)
            finally:
                self.stream.unsubscribe(sub)

    async def _store(self, events: list[Event]) -> None:
        rows = [
            (hook, e.type, Jsonb(e.wire()))
            for e in events
            for hook, patterns in self.subscriptions
            if matches(patterns, e.type)
        ]
        if not rows:
            return
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO webhook_outbox (webhook_id, event_type, body) VALUES (%s, %s, %s)",
                rows,
            )
        self.wake.set()

    async def _send(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                try:
                    sent = await self._send_due(client)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("webhook delivery pass failed", extra={"error": str(e)})
                    sent = 0
                if sent == 0:
                    self.wake.clear()
                    try:
                        wait = await self._next_due()
                    except Exception:  # the database is away: try again shortly
                        wait = 1.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)

    async def _next_due(self) -> float:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM min(next_at) - now()) FROM webhook_outbox"
                " WHERE state = 'pending'"
            )
            row = await cur.fetchone()
        wait = float(row[0]) if row is not None and row[0] is not None else 5.0
        return min(5.0, max(0.05, wait))

    async def _send_due(self, client: httpx.AsyncClient) -> int:
        """One pass: the due rows, oldest first, one request each (per URL in order)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT o.id, o.event_type, o.body, o.attempts, w.url, w.secret
                   FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id
                   WHERE o.state = 'pending' AND o.next_at <= now() AND w.active
                     AND NOT EXISTS (  -- in order: an earlier one waiting holds the rest back
                       SELECT 1 FROM webhook_outbox p WHERE p.webhook_id = o.webhook_id
                         AND p.state = 'pending' AND p.id < o.id AND p.next_at > now())
                   ORDER BY o.id LIMIT %s""",
                (BATCH,),
            )
            due = await cur.fetchall()
        down: set[str] = set()  # a URL that failed in this pass waits for its backoff
        sent = 0
        for row in due:
            if row["url"] in down:
                continue
            status, error = await self._post(client, row)
            attempts = row["attempts"] + 1
            async with self.pool.connection() as conn:
                if status is not None and 200 <= status < 300:
                    self.delivered += 1
                    sent += 1
                    await conn.execute(
                        "UPDATE webhook_outbox SET state = 'delivered', attempts = %s,"
                        " last_status = %s, last_error = NULL, delivered_at = now() WHERE id = %s",
                        (attempts, status, row["id"]),
                    )
                    continue
                self.failed_attempts += 1
                down.add(row["url"])
                gave_up = attempts >= self.max_attempts
                await conn.execute(
                    """UPDATE webhook_outbox SET attempts = %s, last_status = %s, last_error = %s,
                         state = %s, next_at = now() + make_interval(secs => %s) WHERE id = %s""",
                    (
                        attempts,
                        status,
                        error,
                        "failed" if gave_up else "pending",
                        backoff(attempts, self.max_backoff),
                        row["id"],
                    ),
                )
        return sent

    async def _post(
        self, client: httpx.AsyncClient, row: dict[str, Any]
    ) -> tuple[int | None, str | None]:
        body = json.dumps(row["body"], ensure_ascii=False, separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "ccorch-webhooks",
            "x-ccorch-delivery": str(row["id"]),
            "x-ccorch-event": row["event_type"],
            "x-ccorch-timestamp": str(ts),
            "x-ccorch-signature": sign(row["secret"], ts, body),
        }
        try:
            r = await client.post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"[:500]
        return r.status_code, None if r.status_code < 300 else r.text[:500]


# --- the API -------------------------------------------------------------------------------


class WebhookSubscription(Body):
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    events: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        description="event types; a prefix ending in .* (call.*), or * for all"
    )


def _url_ok(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def _counts(conn: AsyncConnection[Any], hook_id: int | None = None) -> dict[int, Any]:
    cur = await conn.execute(
        """SELECT webhook_id, state, count(*) FROM webhook_outbox
           WHERE %s::bigint IS NULL OR webhook_id = %s GROUP BY webhook_id, state""",
        (hook_id, hook_id),
    )
    out: dict[int, Any] = {}
    for wid, state, n in await cur.fetchall():
        out.setdefault(wid, {"pending": 0, "delivered": 0, "failed": 0})[state] = n
    return out


def _describe(row: dict[str, Any], counts: dict[int, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "events": row["events"],
        "active": row["active"],
        "created_at": row["created_at"].isoformat(),
        "deliveries": counts.get(row["id"], {"pending": 0, "delivered": 0, "failed": 0}),
    }


async def subscribe(request: Request) -> HTTPResponse:
    data = parse(WebhookSubscription, json_body(request))
    if not _url_ok(data["url"]):
        raise ValidationFailed({"url": "an http:// or https:// URL with a host"})
    if not data["events"]:
        raise ValidationFailed({"events": "at least one event type"})
    secret = secrets.token_hex(32)
    user = request.ctx.user
    async with _pool(request).connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            """INSERT INTO webhooks (url, secret, events, created_by) VALUES (%s, %s, %s, %s)
               RETURNING id, url, events, active, created_at""",
            (data["url"], secret, data["events"], user.id),
        )
        row = await cur.fetchone()
        assert row is not None
        await store.audit(conn, user.id, "create", "webhook", row["id"], None,
                          {"url": data["url"], "events": data["events"]})  # fmt: skip
    await request.app.ctx.webhooks.reload()
    # the secret is shown once: the receiver keeps it to check signatures
    return json_response({**_describe(row, {}), "secret": secret}, status=201)


async def list_hooks(request: Request) -> HTTPResponse:
    async with _pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT id, url, events, active, created_at FROM webhooks ORDER BY id")
        rows = await cur.fetchall()
        counts = await _counts(conn)
    return json_response({"items": [_describe(r, counts) for r in rows]})


async def deliveries(request: Request, hook_id: int) -> HTTPResponse:
    state = request.args.get("state")
    if state is not None and state not in ("pending", "delivered", "failed"):
        raise ValidationFailed({"state": "pending, delivered or failed"})
    async with _pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT 1 FROM webhooks WHERE id = %s", (hook_id,))
        if await cur.fetchone() is None:
            return _error(404, "not_found", f"no webhook {hook_id}")
        await cur.execute(
            """SELECT id, event_type, state, attempts, last_status, last_error, created_at,
                      next_at, delivered_at, body->>'seq' AS seq
               FROM webhook_outbox WHERE webhook_id = %s AND (%s::text IS NULL OR state = %s)
               ORDER BY id DESC LIMIT 200""",
            (hook_id, state, state),
        )
        rows = await cur.fetchall()
    items = [
        {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in r.items()} for r in rows
    ]
    return json_response({"items": items})


async def retry(request: Request, hook_id: int) -> HTTPResponse:
    """The failed deliveries are tried again now."""
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_at = now()"
            " WHERE webhook_id = %s AND state = 'failed'",
            (hook_id,),
        )
    request.app.ctx.webhooks.wake.set()
    return json_response({"id": hook_id, "retried": cur.rowcount})


async def unsubscribe(request: Request, hook_id: int) -> HTTPResponse:
    user = request.ctx.user
    async with _pool(request).connection() as conn, conn.transaction():
        cur = await conn.execute("DELETE FROM webhooks WHERE id = %s RETURNING url", (hook_id,))
        row = await cur.fetchone()
        if row is None:
            return _error(404, "not_found", f"no webhook {hook_id}")
        await store.audit(conn, user.id, "delete", "webhook", hook_id, {"url": row[0]}, None)
    await request.app.ctx.webhooks.reload()
    return json_response({"id": hook_id, "deleted": True})


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/webhooks",
        "Subscribe a URL to event types (the signing secret is in this answer only)",
        ADMINS,
        subscribe,
        body=WebhookSubscription,
    ),
    Route("GET", "/api/webhooks", "Subscriptions and their delivery counts", ADMINS, list_hooks),
    Route(
        "GET",
        "/api/webhooks/<hook_id:int>/deliveries",
        "The last 200 deliveries (?state=pending|delivered|failed): attempts, last status",
        ADMINS,
        deliveries,
        responses={404: "no such webhook"},
    ),
    Route(
        "POST",
        "/api/webhooks/<hook_id:int>/retry",
        "Try the failed deliveries again",
        ADMINS,
        retry,
    ),
    Route(
        "DELETE",
        "/api/webhooks/<hook_id:int>",
        "Unsubscribe (its outbox goes with it)",
        ADMINS,
        unsubscribe,
        responses={404: "no such webhook"},
    ),
)
