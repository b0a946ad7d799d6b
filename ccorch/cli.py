"""The ``ccorch`` command: serve, migrate, --version.

Exit codes: 0 done; 1 the database or a migration failed; 2 bad configuration or usage
(a port already taken included).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import ccorch
from ccorch.config import Config, load_config, with_overrides
from ccorch.db.embedded import EmbeddedPostgres
from ccorch.db.migrate import migrate
from ccorch.errors import ConfigError, DatabaseError, MigrationError
from ccorch.logs import setup_logging

log = logging.getLogger("ccorch")


def _version() -> str:
    from ccorch import _core

    return f"ccorch {ccorch.__version__} (core {_core.__version__})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccorch", description="ccorch contact-center platform")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $CCORCH_CONFIG or ./ccorch.toml)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the node: HTTP API, /metrics, /healthz")
    serve.add_argument("--host", help="HTTP listen address (overrides http.host)")
    serve.add_argument("--port", type=int, help="HTTP port (overrides http.port)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    demo = sub.add_parser("demo-call", help="place a demo call into the running node (SIPp)")
    demo.add_argument(
        "--option",
        type=int,
        choices=(1, 2, 3),
        default=3,
        help="the menu key: 3 balance, 1/2 operator",
    )
    demo.add_argument(
        "--dnis",
        default="100",
        help="service number: 100 ru, 101 en, 102 zh; the utility line 110 ru, 111 en, 112 zh",
    )
    demo.add_argument(
        "--keys",
        help="the keys to press instead of the option's, in groups a few seconds apart, e.g."
        " 1,12500#,1 (the utility line: a meter reading, confirmed)",
    )
    demo.add_argument(
        "--ani",
        default="0671234567",
        help="the caller's number: 0671234567 the demo customer Ivan Petrenko, 0507654321 the"
        " VIP Olena Kovalenko (her manager 7001 is rung first), 0441112233 blacklisted",
    )
    phone = sub.add_parser(
        "register-phone",
        help="register a demo operator's phone with the running node (its digest, SHA-256 or MD5)",
    )
    phone.add_argument("extension", help="the phone's extension, e.g. 7001")
    phone.add_argument(
        "--contact-port",
        type=int,
        required=True,
        help="the UDP port on 127.0.0.1 where the phone (e.g. a SIPp) takes calls",
    )
    phone.add_argument("--password", help="its password (default: the demo's agent<extension>)")
    phone.add_argument("--expires", type=int, default=300, help="seconds (0 unregisters)")
    return p


class Database:
    """The database a command works on: the configured URL, or the embedded server."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._embedded: EmbeddedPostgres | None = None

    def __enter__(self) -> str:
        if self._config.database.url:
            return self._config.database.url
        self._embedded = EmbeddedPostgres(self._config.database.data_dir)
        return self._embedded.start()

    def __exit__(self, *exc: object) -> None:
        if self._embedded is not None:
            self._embedded.stop()


def _migrate(url: str) -> None:
    applied = asyncio.run(migrate(url))
    if applied:
        log.info("schema migrated", extra={"applied": [m.path.name for m in applied]})


def cmd_migrate(config: Config) -> int:
    with Database(config) as url:
        _migrate(url)
        print("database schema is current")
    return 0


def cmd_serve(config: Config) -> int:
    from ccorch import ports
    from ccorch.app import create_app, request_stop

    try:
        ports.check(config)  # before the database starts: a taken port costs nothing
    except ports.PortBusy as e:
        print(f"ccorch: {e}", file=sys.stderr)
        return 2
    if config.crm.demo:
        from ccorch.demo import seed_working_files

        made = seed_working_files(config)
        if made:
            log.info("demo files copied into place", extra={"files": [str(p) for p in made]})
    with Database(config) as url:
        if config.database.migrate_on_start:
            _migrate(url)
        app = create_app(config, url)
        tls = https_context(config)
        scheme = "https" if tls is not None else "http"
        log.info(
            "ccorch starting",
            extra={
                "http": f"{scheme}://{config.http.host}:{config.http.port}",
                "version": ccorch.__version__,
            },
        )
        # Until the loop takes the signals over, a stop is remembered (see app.request_stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: request_stop(app))
        # One process: the SIP transports will share this loop and port (see DESIGN.md).
        app.run(
            host=config.http.host,
            port=config.http.port,
            single_process=True,
            motd=False,
            access_log=config.log.level == "debug",
            ssl=tls,
        )
        log.info("ccorch stopped")
    return 0


def https_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS for the API and the web app when a certificate is configured (TLS 1.2 at least)."""
    if not config.http.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "serve":
            config = with_overrides(config, host=args.host, port=args.port)
    except ConfigError as e:
        print(f"ccorch: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    if args.command == "demo-call":
        from ccorch.demo import demo_call

        return demo_call(config, args.option, args.dnis, args.ani, args.keys)
    if args.command == "register-phone":
        from ccorch.demo import register

        status = register(
            (config.sip.host, config.sip.port),
            args.extension,
            args.password or f"agent{args.extension}",
            args.contact_port,
            expires=args.expires,
        )
        print(f"ccorch: REGISTER {args.extension}: {status}", file=sys.stderr)
        return 0 if status == 200 else 1
    try:
        if args.command == "migrate":
            return cmd_migrate(config)
        return cmd_serve(config)
    except MigrationError as e:
        log.error(
            "migration failed; the database is unchanged by that file",
            extra={"file": e.file, "reason": e.reason},
        )
        print(f"ccorch: {e}", file=sys.stderr)
        return 1
    except DatabaseError as e:
        log.error("database error", extra={"error": str(e)})
        print(f"ccorch: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
