"""The Sanic app factory: one app per node, built from a validated Config.

Nothing is created at import time. ``create_app`` wires the pieces; the database pool is
opened when the server starts (on its loop) and closed after it stops, once in-flight
requests have finished or the shutdown grace period has run out.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import BaseHTTPResponse, HTTPResponse, json, raw

import ccorch
from ccorch import memory
from ccorch.acd import desk as agent_desk
from ccorch.acd.service import AcdService, load_queues
from ccorch.acd.state_time import AgentStateTime
from ccorch.api import events as api_events
from ccorch.api import routes as api_routes
from ccorch.api import sip_ws
from ccorch.api.sessions import LoginThrottle
from ccorch.calls import CallEvents, screening
from ccorch.calls.cdr import CdrSink
from ccorch.calls.controller import CallController
from ccorch.calls.journal import Journal
from ccorch.calls.recovery import recover
from ccorch.config import Config, SipConfig
from ccorch.crm import bootstrap as crm_bootstrap
from ccorch.crm.cases import BusinessHours, count_overdue, raise_overdue_alarms
from ccorch.db.migrate import VERSION_TABLE
from ccorch.db.pool import open_pool
from ccorch.dialer.manager import CampaignManager
from ccorch.dialer.metrics import CampaignCollector
from ccorch.email.mailbox import Mailbox
from ccorch.errors import CcorchError
from ccorch.events import InProcessStream
from ccorch.ivr.runner import IvrDeps
from ccorch.ivr.store import FlowStore
from ccorch.media import MediaEngine, MediaEvents, raise_open_file_limit
from ccorch.sip import registrar as sip_registrar
from ccorch.sip.admission import Admission
from ccorch.sip.call_limits import Limit
from ccorch.sip.guard import Guard
from ccorch.sip.service import SipService, TlsSettings
from ccorch.sip.transaction import Timers
from ccorch.sip.transport import TcpLimits, tcp_budget
from ccorch.sip.trunks import Trunk, load_trunks
from ccorch.sms.gateway import SmsGateway
from ccorch.stream_sources import Offers, acd_listener, publish_calls, publish_queues
from ccorch.supervision.alarms import AlarmBoard
from ccorch.supervision.alarms import watch as watch_alarms
from ccorch.supervision.kpi_metrics import install as install_kpis
from ccorch.supervision.metrics import CONTENT_TYPE_LATEST, Metrics, SipCollector
from ccorch.tasks import cancel_and_wait
from ccorch.web import install as install_web_app
from ccorch.webhooks import Webhooks

log = logging.getLogger(__name__)

# Sanic keeps a process-wide registry of apps by name; tests build several apps.
_app_counter = 0


def create_app(config: Config, database_url: str) -> Sanic[Any, Any]:
    """Build the node's HTTP app. ``database_url`` is already migrated (see ``ccorch.cli``)."""
    global _app_counter
    _app_counter += 1
    app: Sanic[Any, Any] = Sanic(
        "ccorch" if _app_counter == 1 else f"ccorch_{_app_counter}",
        configure_logging=False,
        env_prefix=None,  # our configuration is ccorch's, not SANIC_*
    )
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = config.server.shutdown_grace_seconds
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 5
    app.ctx.config = config
    app.ctx.database_url = database_url
    app.ctx.metrics = Metrics.create(ccorch.__version__)
    app.ctx.pool = None
    app.ctx.media = None
    app.ctx.media_events = None
    app.ctx.sip = None
    app.ctx.calls = None
    app.ctx.call_events = CallEvents()
    app.ctx.events = InProcessStream()  # the live stream the WebSocket serves
    app.ctx.login_throttle = LoginThrottle()
    # Where calls are recorded (used by the call controller); made now, not on the loop.
    app.ctx.recordings_dir = Path(config.media.recordings_dir).resolve()
    app.ctx.recordings_dir.mkdir(parents=True, exist_ok=True)

    app.ctx.clock = lambda: datetime.now(UTC)
    app.ctx.business_hours = BusinessHours()
    _own_stop_signals(app)
    var_dir = Path(config.database.data_dir).resolve().parent  # ./var by default

    @app.before_server_start
    async def _open_http_client(app: Sanic[Any, Any]) -> None:
        # the guided service's actions call outside web services (each with its timeout)
        app.ctx.http_client = httpx.AsyncClient(follow_redirects=False)

    @app.after_server_stop
    async def _close_http_client(app: Sanic[Any, Any]) -> None:
        await app.ctx.http_client.aclose()

    @app.before_server_start
    async def _open_pool(app: Sanic[Any, Any]) -> None:
        app.ctx.pool = await open_pool(app.ctx.database_url, config.database)
        async with app.ctx.pool.connection() as conn:
            await crm_bootstrap.load_prefixes(conn)
            if config.crm.demo:
                await crm_bootstrap.load_demo(conn, var_dir, config.crm.admin_password)

    @app.before_server_start
    async def _start_media(app: Sanic[Any, Any]) -> None:
        m = config.media
        # Two sockets per leg: let a busy node hold as many legs as its port range.
        raise_open_file_limit(m.port_max - m.port_min + 1024)
        engine = MediaEngine(
            bind_ip=m.bind_ip,
            port_min=m.port_min,
            port_max=m.port_max,
            shards=m.shards,
            browser_opus=m.browser_opus,
        )
        events = MediaEvents(engine)
        events.attach()
        app.ctx.media, app.ctx.media_events = engine, events
        log.info(
            "media engine started",
            extra={"rtp_ports": f"{m.port_min}-{m.port_max}", "shards": m.shards},
        )

    @app.before_server_start
    async def _start_sip(app: Sanic[Any, Any]) -> None:
        # after the pool and the media engine (listeners run in the order they were added)
        sc = config.sip
        if config.crm.demo:
            async with app.ctx.pool.connection() as conn:
                await sip_registrar.load_demo_phones(conn, sc.realm)
                await screening.load_demo_blacklist(conn)
        trunks = _load_trunks(sc)
        service = SipService(
            host=sc.host,
            port=sc.port,
            realm=sc.realm,
            timers=Timers(sc.t1_ms / 1000, sc.t2_ms / 1000, sc.t4_ms / 1000),
            trunks=trunks,
            guard=Guard(
                rate=sc.rate_limit,
                burst=sc.rate_burst,
                auth_failures=sc.auth_failures,
                auth_ban=sc.auth_ban_seconds,
                flood_ban=sc.flood_ban_seconds,
            ),
            pool=app.ctx.pool,
            udp=sc.udp,
            tcp=sc.tcp,
            auth_algorithms=sc.auth_algorithms,
            source_limit=Limit(sc.source_max_calls, sc.source_max_calls_per_second),
            admission=Admission(
                target=sc.overload_queue_target_ms / 1000, stale=sc.overload_stale_ms / 1000
            ),
            tcp_limits=TcpLimits(
                per_source=sc.tcp_max_per_source,
                # RTP sockets (two per leg over the port range), HTTP and the rest keep theirs
                total=tcp_budget(
                    sc.tcp_max_connections,
                    reserved=config.media.port_max - config.media.port_min + 1 + 512,
                ),
                first_message_seconds=sc.tcp_first_message_seconds,
                idle_seconds=sc.tcp_idle_seconds,
            ),
            tls=TlsSettings(sc.tls_port, sc.tls_cert, sc.tls_key, sc.tls_ca, sc.tls_ciphers)
            if sc.tls_cert
            else None,
        )
        pool: AsyncConnectionPool = app.ctx.pool
        service.backlog = lambda: pool.get_stats().get("requests_waiting", 0)
        service.max_backlog = sc.overload_database_waiting
        # Records spooled while the database was away go in before new calls come.
        cdrs = CdrSink(app.ctx.pool, var_dir / "cdr-spool.jsonl")
        await cdrs.replay()
        journal = Journal(var_dir / "calls")
        queues, agents = load_queues(Path(config.ivr.flows_dir) / config.ivr.queues_file)
        acd = AcdService(queues, agents)
        acd.auto_login = config.acd.auto_login_on_register
        acd.set_reasons(config.acd.not_ready_reasons)
        acd.wrap_up_extension_ms = int(config.acd.wrap_up_extension_seconds * 1000)
        acd.start()
        app.ctx.state_time = AgentStateTime(app.ctx.pool, acd.reason_name)
        acd.listeners.append(app.ctx.state_time.on_event)
        flows = FlowStore(Path(config.ivr.flows_dir), queues={q.name for q in queues})
        await asyncio.to_thread(flows.scan)
        controller = CallController(
            service,
            app.ctx.media,
            events=app.ctx.call_events,
            ring_timeout=sc.ring_timeout_seconds,
            session_expires=sc.session_expires,
            min_se=sc.min_se,
            flows=flows,
            ivr=IvrDeps(
                app.ctx.media,
                app.ctx.pool,
                Path(config.ivr.tts_cache_dir),
                app.ctx.recordings_dir,
            ),
            acd=acd,
            cdrs=cdrs,
            journal=journal,
            phones_srtp=sc.phones_srtp,
        )
        offers = Offers()
        acd.listeners.append(acd_listener(app.ctx.events, acd, offers))
        app.ctx.kpis = await install_kpis(
            app.ctx.metrics.registry,
            acd,
            cdrs,
            app.ctx.pool,
            config.supervision,
            app.ctx.recordings_dir,
        )
        service.on_registration = lambda user, up: (
            acd.phone_registered(user) if up else acd.phone_gone(user)
        )
        app.ctx.acd = acd
        app.ctx.flows = flows
        app.ctx.flows_watch = asyncio.create_task(
            flows.watch(config.ivr.reload_seconds), name="flows_watch"
        )
        await service.start()
        acd.registered = lambda ext: bool(service.registrar.lookup(service.now(), ext))
        # Calls the previous run left up are closed (CDR, recording, BYE) before any
        # operator is logged in again: their phones may still be in those calls.
        recovered, app.ctx.recovery = await recover(journal, service, cdrs, acd)
        if recovered.calls or recovered.unreadable:
            log.warning(
                "closed the calls a previous run left up",
                extra={"calls": recovered.calls, "unreadable": recovered.unreadable},
            )
        app.ctx.alive = asyncio.create_task(_keep_alive(journal), name="journal_alive")
        async with app.ctx.pool.connection() as conn:  # operators logged in before a restart
            restored = await agent_desk.restore(acd, conn)
        if restored:
            log.info("operators logged in again", extra={"agents": restored})
        service.announce_registered()  # phones registered before a restart: agents log in
        app.ctx.sip, app.ctx.calls = service, controller
        app.ctx.media_watch = asyncio.create_task(
            controller.watch_media(app.ctx.media_events.subscribe()), name="media_watch"
        )
        app.ctx.events_feed = asyncio.create_task(
            publish_calls(app.ctx.events, app.ctx.call_events.subscribe(), controller.find, offers),
            name="events_feed",
        )
        app.ctx.queues_feed = asyncio.create_task(
            publish_queues(app.ctx.events, acd, time.monotonic), name="queues_feed"
        )
        app.ctx.state_time_writer = asyncio.create_task(
            app.ctx.state_time.run(), name="state_time_writer"
        )
        app.ctx.campaigns = CampaignManager(
            app.ctx.pool,
            controller,
            acd,
            flows=flows,
            tts_dir=Path(config.ivr.tts_cache_dir),
            clock=app.ctx.clock,
            time_zone=config.supervision.time_zone,
        )
        acd.listeners.append(app.ctx.campaigns.on_acd_event)
        app.ctx.metrics.registry.register(CampaignCollector(app.ctx.campaigns))
        await app.ctx.campaigns.start()
        app.ctx.alarms = AlarmBoard()
        app.ctx.alarms_watch = asyncio.create_task(
            watch_alarms(app, app.ctx.alarms, app.ctx.clock, time.monotonic), name="alarms_watch"
        )
        # ended calls are cyclic garbage: collected while calls end (``ccorch.memory``)
        app.ctx.cycles_watch = asyncio.create_task(
            memory.watch(lambda: controller.released), name="cycles_watch"
        )
        app.ctx.metrics.registry.register(
            SipCollector(
                lambda: {
                    **service.snapshot(),
                    "calls_active": controller.active_calls(),
                    "event_clients": app.ctx.events.subscribers,
                    "event_clients_cut_off": app.ctx.events.cut_off,
                }
            )
        )
        transports = "+".join(
            t for t, on in (("udp", sc.udp), ("tcp", sc.tcp), ("tls", bool(sc.tls_cert))) if on
        )
        log.info(
            "sip listening",
            extra={
                "sip": f"{sc.host}:{service.port}",
                "transports": transports,
                "trunks": len(trunks),
            },
        )

    @app.after_server_stop
    async def _stop_sip(app: Sanic[Any, Any]) -> None:
        for name in (
            "media_watch",
            "flows_watch",
            "alive",
            "recovery",
            "events_feed",
            "queues_feed",
            "state_time_writer",
            "alarms_watch",
            "cycles_watch",
        ):
            task = getattr(app.ctx, name, None)
            if task is not None:
                task.cancel()
        if app.ctx.sip is not None:
            await app.ctx.sip.stop()
            app.ctx.sip = None

    @app.after_server_start
    async def _freeze_startup_objects(app: Sanic[Any, Any]) -> None:
        # Everything loaded so far lives as long as the process: keep the cyclic GC from
        # walking it again and again, and let it run less often (calls make many short-lived
        # cycles; measured ~20% of a call's CPU with the defaults).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

    @app.after_server_start
    async def _start_overdue_watch(app: Sanic[Any, Any]) -> None:
        app.ctx.overdue_task = asyncio.create_task(_watch_overdue_cases(app), name="overdue_cases")

    @app.after_server_start
    async def _start_sms(app: Sanic[Any, Any]) -> None:
        app.ctx.sms = SmsGateway(app.ctx.pool, config.sms)
        await app.ctx.sms.start()
        campaigns: CampaignManager | None = getattr(app.ctx, "campaigns", None)
        if campaigns is not None:  # SMS campaigns send through it
            campaigns.sms = app.ctx.sms

    @app.before_server_stop
    async def _stop_sms(app: Sanic[Any, Any]) -> None:
        sms: SmsGateway | None = getattr(app.ctx, "sms", None)
        if sms is not None:
            await sms.stop()

    @app.after_server_start
    async def _start_mailbox(app: Sanic[Any, Any]) -> None:
        acd = getattr(app.ctx, "acd", None)
        app.ctx.mailbox = Mailbox(
            app.ctx.pool,
            config.email,
            app.ctx.business_hours,
            app.ctx.events,
            queues=frozenset(acd.queue_ids) if acd is not None else frozenset(),
            metrics=app.ctx.metrics,
        )
        await app.ctx.mailbox.start()

    @app.before_server_stop
    async def _stop_mailbox(app: Sanic[Any, Any]) -> None:
        mailbox: Mailbox | None = getattr(app.ctx, "mailbox", None)
        if mailbox is not None:
            await mailbox.stop()

    @app.after_server_start
    async def _start_webhooks(app: Sanic[Any, Any]) -> None:
        wh = app.ctx.config.webhooks
        app.ctx.webhooks = Webhooks(
            app.ctx.pool,
            app.ctx.events,
            max_attempts=wh.max_attempts,
            max_backoff=wh.max_backoff_seconds,
            timeout=wh.timeout_seconds,
        )
        await app.ctx.webhooks.start()

    @app.before_server_stop
    async def _stop_webhooks(app: Sanic[Any, Any]) -> None:
        hooks: Webhooks | None = getattr(app.ctx, "webhooks", None)
        if hooks is not None:
            await hooks.stop()

    @app.before_server_stop
    async def _close_state_time(app: Sanic[Any, Any]) -> None:
        # the open stretches of operators' time end now (written while the pool is open)
        state_time: AgentStateTime | None = getattr(app.ctx, "state_time", None)
        if state_time is not None:
            await state_time.close()

    @app.before_server_stop
    async def _stop_campaigns(app: Sanic[Any, Any]) -> None:
        # no new calls; the outcomes not yet written go in while the pool is open
        campaigns: CampaignManager | None = getattr(app.ctx, "campaigns", None)
        if campaigns is not None:
            await campaigns.stop()

    @app.before_server_stop
    async def _stop_overdue_watch(app: Sanic[Any, Any]) -> None:
        # Stopped first, so it never holds a pooled connection while the pool closes.
        await cancel_and_wait([getattr(app.ctx, "overdue_task", None)])

    @app.after_server_stop
    async def _stop_media(app: Sanic[Any, Any]) -> None:
        if app.ctx.media is not None:
            app.ctx.media_events.detach()
            app.ctx.media.shutdown()  # finalizes open recordings
            app.ctx.media = None

    @app.after_server_stop
    async def _close_pool(app: Sanic[Any, Any]) -> None:
        pool: AsyncConnectionPool | None = app.ctx.pool
        if pool is not None:
            await pool.close()
            app.ctx.pool = None
        log.info("database pool closed")

    _install_security_headers(app, https=bool(config.http.tls_cert))
    _install_body_limits(app)
    _install_metrics_middleware(app)
    _install_error_handler(app)
    app.add_route(healthz, "/healthz", methods=["GET"], name="healthz")
    app.add_route(metrics, "/metrics", methods=["GET"], name="metrics")
    app.add_route(openapi, "/openapi.json", methods=["GET"], name="openapi")
    app.add_websocket_route(api_events.events, "/api/events", name="events")
    app.add_websocket_route(sip_ws.sip_over_websocket, "/sip", name="sip_ws", subprotocols=["sip"])
    app.blueprint(api_routes.blueprint())
    install_web_app(app)

    @app.after_server_start  # registered last: runs after every other start-up listener
    async def _serve_pending_stop(app: Sanic[Any, Any]) -> None:
        asyncio.get_running_loop().call_soon(_now_serving, app)

    return app


# A stop asked for while the node starts waits until it serves. Sanic's own SIGTERM handler
# stops the loop at once: during the start-up listeners that cuts them off with a
# RuntimeError, and when it lands as they finish, run_until_complete swallows the stop and
# the node then serves forever (seen in CI: a SIGTERM right after /healthz first answered).
# Sanic marks the app running (``state.is_running``) between the start-up listeners'
# run_until_complete and run_forever: a callback that finds it set runs in run_forever.
SERVING_RECHECK_SECONDS = 0.02


def request_stop(app: Sanic[Any, Any]) -> None:
    """SIGTERM or SIGINT: stop now if the node serves, else as soon as it does."""
    if getattr(app.ctx, "serving", False):
        app.stop(terminate=False)
    else:
        app.ctx.stop_requested = True


def _now_serving(app: Sanic[Any, Any]) -> None:
    if not app.state.is_running:  # still inside the start-up listeners' run: look again
        asyncio.get_running_loop().call_later(SERVING_RECHECK_SECONDS, _now_serving, app)
        return
    app.ctx.serving = True
    if getattr(app.ctx, "stop_requested", False):
        log.info("stopping: asked to while starting")
        app.stop(terminate=False)


def _own_stop_signals(app: Sanic[Any, Any]) -> None:
    @app.after_server_start  # registered first: replaces Sanic's handlers before anything
    async def _take_stop_signals(app: Sanic[Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_stop, app)


async def _keep_alive(journal: Journal) -> None:
    """The node's last sign of life, for the end time of calls a crash leaves up."""
    while True:
        try:
            await asyncio.to_thread(journal.touch_alive)
        except OSError as e:
            log.warning("journal heartbeat", extra={"error": str(e)})
        await asyncio.sleep(1.0)


def _load_trunks(sc: SipConfig) -> list[Trunk]:
    path = Path(sc.trunks_file)
    if not path.exists() and sc.trunks_file == SipConfig.trunks_file:
        # the default file belongs to the repository; elsewhere a node starts with no trunks
        log.warning(
            "no trunks file: calls only between registered phones", extra={"file": str(path)}
        )
        return []
    return load_trunks(path)


async def openapi(request: Request) -> HTTPResponse:
    """The OpenAPI 3 document of every API route, built from the routes' own declarations."""
    return json(api_routes.openapi(request.app))


async def _watch_overdue_cases(app: Sanic[Any, Any]) -> None:
    """Every ``crm.overdue_check_seconds``, raise the alarm for cases that just passed their deadline: a warning
    log line per case and ``cc_case_overdue_alarms_total`` for supervision."""
    metrics: Metrics = app.ctx.metrics
    while True:
        try:
            async with app.ctx.pool.connection() as conn:
                alarms = await raise_overdue_alarms(conn, app.ctx.clock())
                app.ctx.cases_overdue = await count_overdue(conn, app.ctx.clock())
                metrics.cases_overdue.set(app.ctx.cases_overdue)
            for a in alarms:
                metrics.case_overdue_alarms.labels(kind=a["kind"]).inc()
                # on the live stream, for supervisors (and the webhooks of "alarm")
                app.ctx.events.publish(
                    "alarm",
                    {
                        "alarm": "case_overdue",
                        "case_id": a["case_id"],
                        "kind": a["kind"],
                        "due_at": str(a["due_at"]),
                    },
                )
                log.warning(
                    "case overdue",
                    extra={"case_id": a["case_id"], "due_at": a["due_at"], "kind": a["kind"]},
                )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the database may be down for a while; try again next time
            log.warning("overdue check failed", extra={"error": str(e)})
        await asyncio.sleep(app.ctx.config.crm.overdue_check_seconds)


async def healthz(request: Request) -> HTTPResponse:
    """200 when the database answers (with the schema version it is at), 503 when not."""
    metrics: Metrics = request.app.ctx.metrics
    pool: AsyncConnectionPool = request.app.ctx.pool
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}")
            row = await cur.fetchone()
    except Exception as e:  # any failure to reach or query the database is "down"
        metrics.db_up.set(0)
        log.warning("health check: database unreachable", extra={"error": str(e)})
        return json({"status": "unavailable", "database": "down", "reason": str(e)}, status=503)
    metrics.db_up.set(1)
    return json(
        {
            "status": "ok",
            "database": "up",
            "schema_version": row[0] if row else None,
            "version": ccorch.__version__,
        }
    )


async def metrics(request: Request) -> HTTPResponse:
    m: Metrics = request.app.ctx.metrics
    engine: MediaEngine | None = request.app.ctx.media
    if engine is not None:
        # A few microseconds: each media thread answers between two ticks.
        m.observe_media(engine.stats(reset=True))
    return raw(m.exposition(), content_type=CONTENT_TYPE_LATEST)


# The browser app is served from this origin only: no inline scripts or framing by others.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none';"
        " frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def _install_security_headers(app: Sanic[Any, Any], *, https: bool) -> None:
    headers = dict(SECURITY_HEADERS)
    if https:
        headers["strict-transport-security"] = "max-age=31536000"

    async def _add(request: Request, response: BaseHTTPResponse) -> None:
        for name, value in headers.items():
            response.headers.setdefault(name, value)

    app.register_middleware(_add, "response")


def _install_body_limits(app: Sanic[Any, Any]) -> None:
    """Each route's largest body (``Route.max_body``), enforced while the body is read:
    a bigger one is refused with 413 before it is taken in (Sanic's own default is 100 MB
    for every route, before any session is checked)."""
    limits = api_routes.body_limits()
    app.config.REQUEST_MAX_SIZE = max(limits.values())  # routes outside the table too
    small = api_routes.ANONYMOUS_MAX_BODY

    @app.signal("http.routing.after")
    async def _limit_body(request: Request, route: Any, **_: Any) -> None:
        if request.stream is not None:
            request.stream.request_max_size = limits.get((request.method, route.path), small)


def _install_metrics_middleware(app: Sanic[Any, Any]) -> None:
    m: Metrics = app.ctx.metrics

    async def _start(request: Request) -> None:
        request.ctx.started = time.perf_counter()
        m.http_in_flight.inc()

    async def _done(request: Request, response: BaseHTTPResponse) -> None:
        started = getattr(request.ctx, "started", None)
        if started is None:
            return
        request.ctx.started = None
        m.http_in_flight.dec()
        # The route's pattern, never the raw path: unmatched paths must not grow the label set.
        route = "/" + request.route.path if request.route is not None else "unmatched"
        m.http_requests.labels(
            route=route, method=request.method, status=str(response.status)
        ).inc()
        m.http_request_seconds.labels(route=route).observe(time.perf_counter() - started)

    app.register_middleware(_start, "request")
    app.register_middleware(_done, "response")


def _install_error_handler(app: Sanic[Any, Any]) -> None:
    """Every error answers JSON ``{"error": ..., "reason": ...}``; status mapping lives here."""

    @app.exception(SanicException)
    async def _http_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = exc.status_code
        return json({"error": _error_name(status), "reason": str(exc)}, status=status)

    @app.exception(CcorchError)
    async def _ccorch_error(request: Request, exc: CcorchError) -> HTTPResponse:
        log.warning("request failed", extra={"error": str(exc), "kind": type(exc).__name__})
        return json({"error": type(exc).__name__, "reason": str(exc)}, status=422)


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"
