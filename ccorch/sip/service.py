"""The SIP service: transports + transaction layer + registrar + guard, on the asyncio loop.

It owns everything that is SIP and not a call: parsing and refusing bad input, the 400s,
OPTIONS, REGISTER with digest authentication, the rate limits and bans, the timers of the
transaction layer. INVITEs (from trunks, or authenticated agents) and everything inside a
call's dialogs go to the call layer through the ``CallHandler`` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from ccorch._core import sip_is_ack_of_refusal, sip_refuse_new_invite
from ccorch.sip import registrar as reg
from ccorch.sip.admission import Admission
from ccorch.sip.call_limits import CallLimits, Limit
from ccorch.sip.digest import DigestServer
from ccorch.sip.guard import Guard
from ccorch.sip.message import (
    ParseError,
    Request,
    Response,
    make_response,
    parse,
)
from ccorch.sip.transaction import (
    STREAMS,
    AckTimeout,
    Addr,
    ClientTxn,
    RequestIn,
    ResponseIn,
    Send,
    ServerTxn,
    Timeout,
    Timers,
    TransactionLayer,
    response_dest,
)
from ccorch.sip.transport import TcpLimits, Transports, tls_contexts
from ccorch.sip.trunks import Trunk

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE, INFO"
SUPPORTED = "replaces, timer"
SERVER = "ccorch"


class ClientUser(Protocol):
    def on_response(self, resp: Response, txn: ClientTxn) -> None: ...
    def on_timeout(self, txn: ClientTxn) -> None: ...


class DialogUser(Protocol):
    def on_request(self, req: Request, source: Addr, txn: ServerTxn) -> None: ...
    def on_ack(self, req: Request, source: Addr) -> None: ...


class InviteUser(Protocol):
    def on_cancel(self, cancel: Request) -> None: ...
    def on_ack_timeout(self, txn: ServerTxn) -> None: ...


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a new INVITE: a configured trunk, or an authenticated agent's phone."""

    trunk: Trunk | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """SIP over TLS: where we listen, our certificate, whom we trust, which ciphers."""

    port: int
    cert: str
    key: str
    ca: str = ""
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20"


class CallHandler(Protocol):
    def on_invite(self, req: Request, source: Addr, txn: ServerTxn, origin: Origin) -> None: ...


class SipService:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        realm: str,
        timers: Timers,
        trunks: list[Trunk],
        guard: Guard,
        pool: AsyncConnectionPool | None = None,
        udp: bool = True,
        tcp: bool = True,
        auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_loop_lag: float = 0.1,
        tcp_limits: TcpLimits | None = None,
        tls: TlsSettings | None = None,
        source_limit: Limit | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.udp_on = udp
        self.tcp_on = tcp
        self.txn = TransactionLayer(timers)
        self.transports = Transports(self.on_data, tcp_limits)
        self.tls_port: int | None = None
        if tls is not None:
            t = self.transports
            t.tls_server_ctx, t.tls_client_ctx, t.tls_client_unverified = tls_contexts(
                tls.cert, tls.key, tls.ca, tls.ciphers
            )
            t.tls_unverified = {
                (tr.host, tr.port) for tr in trunks if tr.transport == "TLS" and not tr.verify
            }
            self.tls_port = tls.port
        self.digest = DigestServer(realm, algorithms=auth_algorithms)
        self.registrar = reg.Registrar()
        self.transports.registered = self._registered_sources
        self.transports.on_ws_closed = self._ws_closed
        self.accounts: dict[str, reg.Account] = {}
        self.guard = guard
        self.trunks = trunks
        # calls up and started per trunk and per phone address (503 past them)
        self.call_limits = CallLimits()
        self.source_limit = source_limit or Limit()
        self.pool = pool
        self.calls: CallHandler | None = None
        # told (user, reachable) when a phone's registrations appear or all go away
        self.on_registration: Callable[[str, bool], None] | None = None
        # users whose stored registrations may differ from memory (a database outage)
        self._unsynced: set[str] = set()
        self._reconcile_task: asyncio.Task[Any] | None = None
        self.dialogs: dict[tuple[str, str], DialogUser] = {}
        self.stats: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Overload control: while the loop runs late, new calls get 503 at once instead of
        # queueing until the callers' retransmissions melt the node down.
        self.max_loop_lag = max_loop_lag
        self.overloaded_until = 0.0
        # ...and while requests wait in the receive queue (``ccorch.sip.admission``), or
        # more than ``max_backlog`` of the calls' database work waits for a connection: a
        # call taken then would wait for its lookups and its record behind the others
        self.admission = admission or Admission()
        self.backlog: Callable[[], int] = lambda: 0
        self.max_backlog = 20

    # --- life ---

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.pool is not None:
            async with self.pool.connection() as conn:
                self.accounts = await reg.load_accounts(conn)
                n = await reg.load_bindings(
                    conn, self.registrar, self._loop.time(), dt.datetime.now(dt.UTC)
                )
            log.info(
                "sip registrations restored", extra={"bindings": n, "accounts": len(self.accounts)}
            )
        await self.transports.start(
            self.host, self.port, udp=self.udp_on, tcp=self.tcp_on, tls_port=self.tls_port
        )
        if self.port == 0:
            self.port = self.transports.local_port() or 0
        for t in self.trunks:
            if t.options_interval > 0:
                self.spawn(self._probe_trunk(t))
        if self.max_loop_lag > 0:
            self.spawn(self._watch_loop_lag())
        self.spawn(self._sweep_registrations())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for t in list(self._tasks):
            t.cancel()
        await self.transports.close()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sip task failed", exc_info=task.exception())

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # --- what the call layer uses ---

    def contact(self, transport: str = "UDP", user: str = "ccorch") -> str:
        t = f";transport={transport.lower()}" if transport in ("TCP", "TLS") else ""
        return f"<sip:{user}@{self.via_host(transport)}{t}>"

    def via_host(self, transport: str = "UDP") -> str:
        """Our sent-by: the TLS port for TLS (where a broken connection is re-opened)."""
        port = self.tls_port if transport == "TLS" and self.tls_port else self.port
        return f"{self.host}:{port}"

    def send_request(self, req: Request, dest: Addr, user: ClientUser) -> ClientTxn:
        txn = self.txn.send_request(self.now(), req, dest)
        txn.user = user
        self.stats[f"out_request_{req.method}"] += 1
        self._drain()
        return txn

    def send_stateless(self, msg: Request | Response, dest: Addr) -> None:
        self.transports.send(msg.to_bytes(), dest)

    def respond(self, txn: ServerTxn, resp: Response) -> None:
        if not any(k == "server" for k, _ in resp.headers):
            resp.headers.append(("server", SERVER))
        self.txn.respond(self.now(), txn, resp)
        self.stats[f"out_response_{resp.status // 100}xx"] += 1
        self._drain()

    def reply(self, txn: ServerTxn, status: int, reason: str | None = None, **kw: Any) -> Response:
        resp = make_response(txn.request, status, reason, to_tag=kw.pop("to_tag", None))
        for k, v in kw.get("headers", []):
            resp.headers.append((k, v))
        self.respond(txn, resp)
        return resp

    def add_dialog(self, call_id: str, local_tag: str, user: DialogUser) -> None:
        self.dialogs[(call_id, local_tag)] = user

    def remove_dialog(self, call_id: str, local_tag: str) -> None:
        self.dialogs.pop((call_id, local_tag), None)

    def trunk_for(self, source: Addr) -> Trunk | None:
        if source.transport in ("WS", "WSS"):
            return None  # a WebSocket is a browser or a softphone, never a carrier
        for t in self.trunks:
            if t.matches(source):
                return t
        return None

    # --- input ---

    def on_data(self, data: bytes, source: Addr, queued: float = 0.0) -> None:
        """One message from a transport; ``queued``: how long it waited to be read (UDP)."""
        now = self.now()
        if queued:
            self.admission.observe(now, queued)
        if self.guard.banned(now, source.host) and self.trunk_for(source) is None:
            self.stats["dropped_banned"] += 1
            return
        if data.startswith(b"ACK ") and sip_is_ack_of_refusal(data):
            self.stats["overload_acks"] += 1  # its INVITE was refused with no transaction
            return
        if (
            data.startswith(b"INVITE ")
            and self._shedding(now, queued, source)
            and self._refuse_fast(data, source)
        ):
            return
        try:
            msg = parse(data)
        except ParseError as e:
            self._malformed(e, source)
            return
        if isinstance(msg, Request):
            self.stats[f"in_request_{msg.method}"] += 1
            if (
                msg.method == "INVITE"
                and msg.to.tag is None
                and not self.txn.known(msg)
                and self._shedding(now, queued, source)
            ):
                # shed new calls before they cost a transaction; a retransmission of an
                # accepted INVITE is absorbed by its transaction, in-dialog traffic goes on
                self.admission.refused += 1
                self.stats["overload_rejects"] += 1
                # the To-tag the Rust cut gives (RFC 3261 §8.2.6.2): the same for a
                # retransmission, and its ACK is known by it and dropped unparsed
                seed = f"{msg.top_via.branch or ''}\n{msg.get('call-id') or ''}".encode()
                tag = "ovl" + hashlib.blake2s(seed, digest_size=4).hexdigest()
                resp = make_response(msg, 503, "Service Unavailable (overloaded)", to_tag=tag)
                resp.headers.append(("retry-after", "5"))
                with contextlib.suppress(ValueError, IndexError):
                    self.transports.send(resp.to_bytes(), response_dest(msg, source))
                return
            if (
                msg.method not in ("ACK", "CANCEL")
                and msg.to.tag is None
                and self.trunk_for(source) is None
                and not self.guard.allow(now, source.host)
            ):
                self.stats["dropped_rate"] += 1
                log.warning("sip source banned for flooding", extra={"source": source.host})
                return
        else:
            self.stats[f"in_response_{msg.status // 100}xx"] += 1
        self.txn.on_message(now, msg, source)
        self._drain()

    def _loop_lagging(self, now: float, source: Addr) -> bool:
        """The loop-lag guard, for streams only: a UDP datagram's own queue delay says
        whether the node keeps up (``ccorch.sip.admission``), more precisely than a late
        wake-up of the loop, which a busy machine also gives while SIP keeps up."""
        return source.transport in STREAMS and now < self.overloaded_until

    def _shedding(self, now: float, queued: float, source: Addr) -> bool:
        """Whether a new INVITE read now, after waiting ``queued``, would be refused."""
        return (
            self._loop_lagging(now, source)
            or self.admission.refuses(queued)
            or self.backlog() > self.max_backlog
        )

    def _refuse_fast(self, data: bytes, source: Addr) -> bool:
        """Refuse a new INVITE with 503 straight from the datagram (in Rust), before it is
        parsed: under overload a refusal must cost far less than a call, or the refusals
        eat the capacity the accepted calls need. False when the datagram is not a plain
        new INVITE, or is a retransmission of one already taken: the full path decides."""
        refusal = sip_refuse_new_invite(
            data, source.host, source.port, 503, "Service Unavailable (overloaded)", 5
        )
        if refusal is None:
            return False
        key, response, port = refusal
        if self.txn.known_key(key):
            return False
        self.admission.refused += 1
        self.stats["in_request_INVITE"] += 1
        self.stats["overload_rejects"] += 1
        if source.transport in STREAMS or port is None:
            dest = source
        else:
            dest = Addr(source.transport, source.host, port)
        self.transports.send(response, dest)
        return True

    def _malformed(self, e: ParseError, source: Addr) -> None:
        self.stats["malformed"] += 1
        if e.request is not None:
            # §21.4.1: the reason phrase says what was wrong
            resp = make_response(e.request, 400, f"Bad Request ({e.reason})"[:120])
            try:
                dest = response_dest(e.request, source)
            except (ValueError, IndexError):
                dest = source
            self.transports.send(resp.to_bytes(), dest)
            self.stats["out_response_4xx"] += 1
        log.info("malformed sip message", extra={"source": str(source), "reason": e.reason})

    def _drain(self) -> None:
        for out in self.txn.poll():
            if isinstance(out, Send):
                self.transports.send(out.data, out.dest)
            elif isinstance(out, RequestIn):
                try:
                    self._on_request(out.request, out.source, out.txn)
                except Exception:
                    log.exception("request handling failed", extra={"call_id": out.request.call_id})
                    if out.txn is not None:
                        self.reply(out.txn, 500)
            elif isinstance(out, ResponseIn):
                u = out.txn.user
                if u is not None:
                    u.on_response(out.response, out.txn)  # type: ignore[attr-defined]
                    if out.txn.state == "completed":
                        # its final response is in: the transaction only absorbs resends
                        # now, for up to 32 s, and must not keep its call in memory
                        out.txn.user = None
                if out.response.status >= 200:
                    # the user has what it needed from the request (a dialog, a retry)
                    out.txn.request = out.txn.request.essentials()
            elif isinstance(out, Timeout):
                self.stats["client_timeouts"] += 1
                u = out.txn.user
                if u is not None:
                    u.on_timeout(out.txn)  # type: ignore[attr-defined]
            elif isinstance(out, AckTimeout):
                self.stats["ack_timeouts"] += 1
                u = out.txn.user
                if u is not None:
                    u.on_ack_timeout(out.txn)  # type: ignore[attr-defined]
        self._schedule()

    def _schedule(self) -> None:
        t = self.txn.next_timeout()
        if t is None or (self._timer_at is not None and self._timer_at <= t):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = t
        self._timer = self._loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.txn.on_timeout(self.now())
        self._drain()

    # --- requests outside calls ---

    def _on_request(self, req: Request, source: Addr, txn: ServerTxn | None) -> None:
        method = req.method
        if txn is None:  # ACK for a 2xx
            d = self.dialogs.get((req.call_id, req.to.tag or ""))
            if d is not None:
                d.on_ack(req, source)
            return
        to_tag = req.to.tag
        if to_tag is not None:
            d = self.dialogs.get((req.call_id, to_tag))
            if d is None:
                self.reply(txn, 481)
            else:
                d.on_request(req, source, txn)
            return
        if method == "CANCEL":
            inv = self.txn.find_invite(req)
            if inv is None or inv.user is None or inv.state != "proceeding":
                self.reply(txn, 481)
                return
            self.reply(txn, 200)
            inv.user.on_cancel(req)  # type: ignore[attr-defined]
        elif method == "OPTIONS":
            self.reply(
                txn,
                200,
                headers=[("allow", ALLOW), ("accept", "application/sdp"), ("supported", SUPPORTED)],
            )
        elif method == "REGISTER":
            self._register(req, source, txn)
        elif method == "INVITE":
            self._invite(req, source, txn)
        elif method in ("BYE", "ACK", "PRACK", "UPDATE", "INFO", "NOTIFY", "REFER"):
            self.reply(txn, 481)
        else:
            self.reply(txn, 405, headers=[("allow", ALLOW)])

    def _ha1(self, user: str, algorithm: str) -> str | None:
        a = self.accounts.get(user)
        if a is None:
            return None
        return a.ha1_sha256 if algorithm == "SHA-256" else a.ha1_md5

    def _authenticate(
        self, req: Request, source: Addr, txn: ServerTxn, *, proxy: bool
    ) -> str | None:
        """The authenticated user, or None after answering 401/407 (and counting a failure)."""
        now = self.now()
        header = req.get("proxy-authorization" if proxy else "authorization")
        verdict = self.digest.verify(now, req.method, header, self._ha1)
        if verdict.ok:
            self.guard.auth_ok(source.host)
            return verdict.user
        if header is not None and not verdict.stale:
            self.stats["auth_failures"] += 1
            if self.guard.auth_failed(now, source.host):
                self.stats["bans"] += 1
                log.warning(
                    "sip source banned after failed authentications",
                    extra={"source": source.host, "user": verdict.user},
                )
        name = "proxy-authenticate" if proxy else "www-authenticate"
        challenges = self.digest.challenges(now, stale=verdict.stale)
        if source.transport in ("WS", "WSS"):
            # browser SIP stacks do MD5 only, and JsSIP keeps only the last of several
            # challenges (SIP.js the first): over a WebSocket, MD5 is the one challenge
            challenges = [c for c in challenges if "algorithm=MD5," in c] or challenges
        self.reply(txn, 407 if proxy else 401, headers=[(name, c) for c in challenges])
        return None

    def _register(self, req: Request, source: Addr, txn: ServerTxn) -> None:
        user = self._authenticate(req, source, txn, proxy=False)
        if user is None:
            return
        if req.to.uri.user != user:
            self.reply(txn, 403, "Forbidden (authenticated user is not the To user)")
            return
        now = self.now()
        ws = self.transports.ws.get(source)
        if ws is not None:
            if ws.user is not None and ws.user != user:
                self.reply(txn, 403, "Forbidden (this WebSocket belongs to another user)")
                return
            ws.user = user  # the connection has proved who it is
        outcome = self.registrar.register(now, user, req, source)
        if outcome.status != 200:
            headers = [("min-expires", str(outcome.min_expires))] if outcome.min_expires else []
            self.reply(txn, outcome.status, outcome.reason, headers=headers)
            return
        if (outcome.upserts or outcome.deletes) and self.pool is not None:
            self.spawn(self._persist_then_answer(user, outcome, txn, now))
        else:
            self._answer_register(txn, outcome, now, user)

    async def _persist_then_answer(
        self, user: str, outcome: reg.RegisterOutcome, txn: ServerTxn, now: float
    ) -> None:
        assert self.pool is not None
        try:
            async with self.pool.connection() as conn:
                await reg.persist(conn, user, outcome, now, dt.datetime.now(dt.UTC))
        except Exception as e:
            log.error("registration not stored", extra={"user": user, "error": str(e)})
            for b in outcome.upserts:  # not acknowledged, so not kept
                self.registrar.bindings.get(user, {}).pop(b.contact, None)
            if outcome.deletes:
                # The phone's removals stand (it is gone, whatever the database says); the
                # stored rows are brought in line once the database answers again.
                self._unsynced.add(user)
                if self._reconcile_task is None or self._reconcile_task.done():
                    self._reconcile_task = self.spawn(self._reconcile_registrations())
            if outcome.upserts or not outcome.deletes:
                self.reply(txn, 500, "Registration Not Stored")
                self._announce_registration(user, bool(self.registrar.lookup(self.now(), user)))
                return
            self._answer_register(txn, outcome, now, user)
            return
        self.stats["registrations"] += 1
        self._answer_register(txn, outcome, now, user)

    async def _reconcile_registrations(self, pause: float = 1.0) -> None:
        """Store each unsynced user's bindings as memory has them (rows memory no longer
        has go), until the database takes them all."""
        assert self.pool is not None
        while self._unsynced:
            await asyncio.sleep(pause)
            now, wall = self.now(), dt.datetime.now(dt.UTC)
            try:
                async with self.pool.connection() as conn:
                    for user in sorted(self._unsynced):
                        await reg.store_user(
                            conn, user, self.registrar.lookup(now, user), now, wall
                        )
                        self._unsynced.discard(user)
            except Exception as e:
                log.info("registrations still not stored", extra={"error": str(e)})
                continue
            log.info("registrations stored again after the database was away")

    def _registered_sources(self) -> set[Addr]:
        now = self.now()
        return {
            b.source
            for bindings in self.registrar.bindings.values()
            for b in bindings.values()
            if b.expires_at > now
        }

    def _ws_closed(self, peer: Addr) -> None:
        """A WebSocket went away: the registrations that came over it can no longer be
        reached (RFC 5626 §4.2's flow failure), so they end now, not at their expiry."""
        now = self.now()
        gone: dict[str, reg.RegisterOutcome] = {}
        for user, bindings in list(self.registrar.bindings.items()):
            for key in [k for k, b in bindings.items() if b.source == peer]:
                del bindings[key]
                gone.setdefault(user, reg.RegisterOutcome(200)).deletes.append(key)
        for user, outcome in gone.items():
            self._announce_registration(user, bool(self.registrar.lookup(now, user)))
            if self.pool is not None:
                self.spawn(self._forget(user, outcome, now))

    async def _forget(self, user: str, outcome: reg.RegisterOutcome, now: float) -> None:
        assert self.pool is not None
        try:
            async with self.pool.connection() as conn:
                await reg.persist(conn, user, outcome, now, dt.datetime.now(dt.UTC))
        except Exception as e:
            log.info("closed WebSocket's registrations not removed", extra={"error": str(e)})
            self._unsynced.add(user)

    def _announce_registration(self, user: str, reachable: bool) -> None:
        if self.on_registration is not None:
            try:
                self.on_registration(user, reachable)
            except Exception:
                log.exception("registration listener failed", extra={"user": user})

    async def _sweep_registrations(self) -> None:
        """Registrations run out without a message: notice it every few seconds."""
        while True:
            await asyncio.sleep(5)
            now = self.now()
            for user in list(self.registrar.bindings):
                if not self.registrar.lookup(now, user):
                    del self.registrar.bindings[user]
                    self._announce_registration(user, False)

    def announce_registered(self) -> None:
        """Tell the listener about every phone registered now (after a restart)."""
        now = self.now()
        for user in list(self.registrar.bindings):
            if self.registrar.lookup(now, user):
                self._announce_registration(user, True)

    def _answer_register(
        self, txn: ServerTxn, outcome: reg.RegisterOutcome, now: float, user: str = ""
    ) -> None:
        if user:
            self._announce_registration(user, bool(outcome.bindings))
        headers = [("contact", reg.contact_header(b, now)) for b in outcome.bindings]
        headers.append(("date", dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")))
        self.reply(txn, 200, headers=headers)

    def _invite(self, req: Request, source: Addr, txn: ServerTxn) -> None:
        if self.calls is None:
            self.reply(txn, 503)
            return
        if self._loop_lagging(self.now(), source):
            self.stats["overload_rejects"] += 1
            self.reply(txn, 503, "Service Unavailable (overloaded)", headers=[("retry-after", "5")])
            return
        trunk = self.trunk_for(source)
        if trunk is not None:
            self.calls.on_invite(req, source, txn, Origin(trunk=trunk))
            return
        # not a trunk: only an agent's phone that proves who it is may call (no open relay)
        if req.get("proxy-authorization") is None and not self._is_registered_source(source):
            self.stats["forbidden_invites"] += 1
            self.reply(txn, 403, "Forbidden (not a trunk or a registered phone)")
            return
        user = self._authenticate(req, source, txn, proxy=True)
        if user is None:
            return
        self.calls.on_invite(req, source, txn, Origin(agent=user))

    async def _watch_loop_lag(self) -> None:
        """Every 50 ms: how late did we wake up? Late by more than ``max_loop_lag`` means
        the loop is saturated; new calls are refused until it catches up."""
        period = 0.05
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(period)
            lag = loop.time() - t - period
            if lag > self.max_loop_lag:
                if self.overloaded_until < loop.time():
                    log.warning(
                        "sip overloaded: refusing new calls",
                        extra={"loop_lag_ms": round(lag * 1000)},
                    )
                self.overloaded_until = loop.time() + 2 * period

    def _is_registered_source(self, source: Addr) -> bool:
        for bindings in self.registrar.bindings.values():
            for b in bindings.values():
                if b.source.host == source.host:
                    return True
        return False

    async def _probe_trunk(self, trunk: Trunk) -> None:
        """OPTIONS every ``options_interval`` s; up on any response, down on a timeout."""
        from ccorch.sip.probe import OptionsProbe

        probe = OptionsProbe(self, trunk)
        while True:
            probe.send()
            await asyncio.sleep(trunk.options_interval)

    def snapshot(self) -> dict[str, Any]:
        now = self.now()
        return {
            "counters": dict(self.stats),
            "dialogs": len(self.dialogs),
            "server_transactions": len(self.txn.server),
            "client_transactions": len(self.txn.client),
            "registered_contacts": sum(len(v) for v in self.registrar.bindings.values()),
            "bans": len(self.guard.bans(now)),
            "trunks_up": {t.name: t.up for t in self.trunks},
            "tcp_connections": self.transports.open_total,
            "tcp_refused": dict(self.transports.refused),
            "tcp_closed": dict(self.transports.closed_idle),
            "queue_delay": self.admission.last_delay,
            "shedding": int(self.admission.standing or now < self.overloaded_until),
        }
