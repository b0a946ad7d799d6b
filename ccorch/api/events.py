"""``GET /api/events`` (WebSocket): the node's live events for one signed-in user.

Authenticate with ``Authorization: Bearer <token>``, ``?token=<token>``, or the browser
app's session cookie from a page of this node (its Origin is checked). ``?since=<seq>`` resumes after the last event seen: the missed
events come first, each once; if they are older than the node keeps, a ``resync`` frame
says to take a fresh snapshot. Supervisors and admins see everything; an operator sees the
events of its own extension (its calls and its state) and of the queues it works.
Frames are JSON: ``{"seq", "type", "at", ...}``; ``{"type": "heartbeat", "seq": last}`` (first at once, the position to resume from)
every ``HEARTBEAT_SECONDS``. A client that falls ``queue_size`` events behind is closed
(code 1013): it reconnects with ``since`` and loses nothing the buffer still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from sanic import Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from ccorch.acd import desk as agent_desk
from ccorch.api import sessions
from ccorch.api.http import Actor
from ccorch.calls import api as calls_api
from ccorch.crm import store
from ccorch.events import Event, InProcessStream

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
SEE_ALL = frozenset({"supervisor", "admin"})


async def _viewer(request: Request) -> tuple[store.User, str | None] | None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    token = token or request.args.get("token", "")
    if not token:
        # the browser app's cookie, from a page of this node only (another site's page
        # could open the socket with the cookie: cross-site WebSocket hijacking)
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return None
        token = request.cookies.get(sessions.SESSION_COOKIE, "")
    if not token:
        return None
    async with request.app.ctx.pool.connection() as conn:
        user = await store.session_user(conn, token, dt.datetime.now(dt.UTC))
        if user is None:
            return None
        return user, await store.user_extension(conn, user.id)


def visible(ev: Event, roles: frozenset[str], extension: str | None, queues: set[str]) -> bool:
    if roles & SEE_ALL:
        return True
    return (extension is not None and extension in ev.agents) or bool(ev.queues & queues)


async def events(request: Request, ws: WebsocketImplProtocol) -> None:
    viewer = await _viewer(request)
    if viewer is None:
        await ws.close(code=4401, reason="log in first (a session token)")
        return
    user, extension = viewer
    stream: InProcessStream = request.app.ctx.events
    acd = getattr(request.app.ctx, "acd", None)
    agent = acd.agents.get(extension) if acd is not None and extension else None
    queues = set(agent.queues) if agent is not None else set()
    try:
        since = int(request.args["since"][0]) if "since" in request.args else None
    except ValueError:
        await ws.close(code=4400, reason="since is an event number")
        return
    # filtered when published: an event this reader may not see costs it no wake-up
    sub = stream.subscribe(since, lambda ev: visible(ev, user.roles, extension, queues))
    sending = asyncio.Lock()  # events and command replies go out from two tasks

    async def send(frame: dict[str, Any] | str) -> None:
        text = (
            frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False, default=str)
        )
        async with sending:
            await ws.send(text)

    actor = Actor(user.id, user.login, frozenset(user.roles), extension)
    commands = asyncio.create_task(_commands(request, ws, actor, send), name="ws_commands")
    try:
        if sub.resync:
            await send({"type": "resync", "seq": stream.last_seq})
        for ev in sub.backlog:
            await send(ev.text)
        last = sub.backlog[-1].seq if sub.backlog else (since or stream.last_seq)
        # at once: the position a reader resumes from (?since=) even if no event comes
        await send({"type": "heartbeat", "seq": last})
        while True:
            try:
                ev = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                if sub.cut:
                    break
                await send({"type": "heartbeat", "seq": last})
                continue
            if ev.seq <= last:
                continue  # already sent from the backlog
            last = ev.seq
            await send(ev.text)
            if sub.cut and sub.queue.empty():
                break
        await ws.close(code=1013, reason="too far behind: reconnect with since")
    finally:
        commands.cancel()
        stream.unsubscribe(sub)
        with contextlib.suppress(Exception):
            await ws.close()


async def _commands(
    request: Request,
    ws: WebsocketImplProtocol,
    actor: Actor,
    send: Callable[[dict[str, Any] | str], Awaitable[None]],
) -> None:
    """Command frames from the client (``agent.…``: ``ccorch.acd.desk.ws_command``; the
    others act on a call: ``ccorch.calls.api.ws_command``), each answered by a reply frame
    with the same ``id``. A frame that is not a JSON object is answered 400."""
    while True:
        raw = await ws.recv()
        if raw is None:
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            await send({"type": "reply", "id": None, "status": 400, "error": "bad_request",
                        "message": "a command is a JSON object"})  # fmt: skip
            continue
        try:
            name = frame.get("command")
            if isinstance(name, str) and name.startswith("agent."):
                reply = await agent_desk.ws_command(request.app, actor, frame)
            else:
                reply = await calls_api.ws_command(request.app, actor, frame)
        except Exception:  # a bug must not take the stream down with it
            log.exception("websocket command failed")
            reply = {"type": "reply", "id": frame.get("id"), "status": 500, "error": "internal"}
        await send(reply)
