"""``/sip`` (WebSocket, subprotocol ``sip``): SIP over WebSocket (RFC 7118) for browsers and
softphones.

Each frame, text or binary, is one SIP message, handed to the same SIP stack as UDP and
TCP (transport ``WS``, or ``WSS`` when the node serves HTTPS); requests for a phone that
registered over a WebSocket go back over that WebSocket, and its registrations end when it
closes. Any RFC 7118 client works: REGISTER and INVITE are digest-authenticated by the
registrar exactly as for a desk phone. The desktop's own phone also carries the app's
session cookie (from a page of this node only), which ties the connection to the signed-in
user: such a connection may register only that user's extension.

Sanic refuses the handshake (400) of a client that does not ask for the ``sip``
subprotocol. A frame that is not SIP gets ``400`` when it is a request we can answer, and is dropped
otherwise; after ``MAX_BAD_FRAMES`` of them the connection is closed (1002, protocol error).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any
from urllib.parse import urlsplit

from sanic import Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from ccorch.api import sessions
from ccorch.crm import store
from ccorch.sip.transaction import Addr, TransportName
from ccorch.sip.transport import WsConnection

log = logging.getLogger(__name__)

MAX_BAD_FRAMES = 10
MAX_FRAME_BYTES = 65_535  # a SIP message's limit on every transport


async def _session_extension(request: Request) -> str | None:
    """The signed-in user's extension when the socket carries the app's cookie from a page
    of this node (another site's page cannot lend its user's session)."""
    token = request.cookies.get(sessions.SESSION_COOKIE, "")
    origin = request.headers.get("origin")
    if not token or (origin is not None and urlsplit(origin).netloc != request.host):
        return None
    pool = request.app.ctx.pool
    if pool is None:
        return None
    async with pool.connection() as conn:
        user = await store.session_user(conn, token, dt.datetime.now(dt.UTC))
        if user is None:
            return None
        return await store.user_extension(conn, user.id)


async def sip_over_websocket(request: Request, ws: WebsocketImplProtocol) -> None:
    service: Any = request.app.ctx.sip
    if service is None:
        await ws.close(code=1013, reason="SIP is not running on this node")
        return
    kind: TransportName = "WSS" if request.scheme in ("wss", "https") else "WS"
    peer = Addr(kind, request.ip or "0.0.0.0", int(request.port or 0))  # noqa: S104
    conn = WsConnection(peer, user=await _session_extension(request))
    transports = service.transports
    transports.ws_opened(conn)
    writer = asyncio.create_task(_write(ws, conn), name="sip_ws_writer")
    bad = 0
    try:
        async for frame in ws:
            data = frame.encode() if isinstance(frame, str) else bytes(frame)
            if len(data) > MAX_FRAME_BYTES:
                bad += 1
                service.stats["ws_bad_frames"] += 1
                continue
            before = service.stats["malformed"]
            if data.strip():  # keep-alive CRLFs (RFC 7118 §6) carry nothing
                service.on_data(data, peer)
            if service.stats["malformed"] > before:
                bad += 1
                service.stats["ws_bad_frames"] += 1
            if bad >= MAX_BAD_FRAMES:
                await ws.close(code=1002, reason=f"{bad} frames that are not SIP")
                break
    finally:
        transports.ws_closed(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


async def _write(ws: WebsocketImplProtocol, conn: WsConnection) -> None:
    while True:
        data = await conn.outbox.get()
        if data is None:
            return
        try:
            await ws.send(data.decode("utf-8", "replace"))
        except Exception as e:  # the socket is closing: the reader's loop ends it
            log.debug("sip websocket send failed", extra={"peer": str(conn.peer), "error": str(e)})
            return
