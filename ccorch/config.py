"""Configuration: one TOML file plus environment overrides, validated at start-up.

Where values come from, later ones winning:
1. the defaults below;
2. the TOML file (``--config PATH``, else ``$CCORCH_CONFIG``, else ``./ccorch.toml`` if present);
3. environment variables ``CCORCH_<SECTION>_<KEY>`` (e.g. ``CCORCH_HTTP_PORT=8080``), and
   ``DATABASE_URL`` for ``database.url``.

Every value is checked; the first bad one stops start-up with a ``ConfigError`` naming the
key, the value, where it came from and what was expected. Unknown sections and keys are
errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ccorch.errors import ConfigError

ENV_PREFIX = "CCORCH_"
DEFAULT_FILE = Path("ccorch.toml")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class _Rule:
    """How one key is parsed from text (environment) and checked (both sources)."""

    expected: str
    check: Callable[[Any], bool]
    from_text: Callable[[str], Any]
    toml_type: type | tuple[type, ...]
    # Applied to a value of the right type from either source, before the check.
    normalize: Callable[[Any], Any] = lambda v: v


def _int_rule(lo: int, hi: int) -> _Rule:
    return _Rule(
        f"an integer from {lo} to {hi}",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
        int,
        int,
    )


def _float_rule(lo: float, hi: float) -> _Rule:
    return _Rule(
        f"a number from {lo:g} to {hi:g}",
        lambda v: isinstance(v, float) and lo <= v <= hi,
        float,
        (int, float),
        lambda v: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v,
    )


def _choice_rule(*choices: str) -> _Rule:
    return _Rule(
        "one of " + ", ".join(repr(c) for c in choices),
        lambda v: v in choices,
        str,
        str,
        lambda v: v.strip().lower() if isinstance(v, str) else v,
    )


def _is_host(v: Any) -> bool:
    if not isinstance(v, str) or not v:
        return False
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(v))


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _is_pg_url(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.startswith(("postgresql://", "postgres://")))


def _parse_bool(s: str) -> bool | str:
    low = s.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return s


HOST = _Rule("an IP address or host name", _is_host, str.strip, str)
PORT = _int_rule(1, 65535)
PATH = _Rule("a non-empty path", lambda v: isinstance(v, str) and bool(v.strip()), str, str)
PG_URL = _Rule("a postgresql:// URL", _is_pg_url, str.strip, str)
# A file, or "" for none (a feature that needs it is then off).
OPT_HOST = _Rule("a host name, or empty", lambda v: isinstance(v, str), str.strip, str)
OPT_PATH = _Rule("a path, or empty", lambda v: isinstance(v, str), str.strip, str, str.strip)
LOG_LEVEL = _choice_rule("debug", "info", "warning", "error")
LOG_FORMAT = _choice_rule("auto", "json", "text")


def _key(rule: _Rule, default: Any) -> Any:
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class HttpConfig:
    host: str = _key(HOST, "127.0.0.1")
    port: int = _key(PORT, 8000)
    # HTTPS when both are set (PEM files); else plain HTTP (e.g. behind a TLS reverse proxy).
    tls_cert: str = _key(OPT_PATH, "")
    tls_key: str = _key(OPT_PATH, "")


@dataclass(frozen=True)
class DatabaseConfig:
    # None: start the embedded PostgreSQL in ``data_dir``.
    url: str | None = _key(PG_URL, None)
    data_dir: str = _key(PATH, "var/pgdata")
    pool_min: int = _key(_int_rule(1, 1000), 1)
    pool_max: int = _key(_int_rule(1, 1000), 10)
    # How long a request waits for a pooled connection before failing.
    acquire_timeout_seconds: float = _key(_float_rule(0.1, 300), 5.0)
    migrate_on_start: bool = _key(
        _Rule("true or false", lambda v: isinstance(v, bool), _parse_bool, bool),
        True,
    )


@dataclass(frozen=True)
class ServerConfig:
    # On SIGTERM: stop accepting, let in-flight work finish for at most this long.
    shutdown_grace_seconds: float = _key(_float_rule(0, 3600), 15.0)


@dataclass(frozen=True)
class LogConfig:
    level: str = _key(LOG_LEVEL, "info")
    # auto: JSON lines when stderr is not a terminal, readable text when it is.
    format: str = _key(LOG_FORMAT, "auto")


_BOOL = _Rule("true or false", lambda v: isinstance(v, bool), _parse_bool, bool)


@dataclass(frozen=True)
class MediaConfig:
    """The RTP media engine: where legs bind, how many threads carry them, where calls are recorded."""

    bind_ip: str = _key(
        _Rule("an IP address", lambda v: isinstance(v, str) and _is_ip(v), str.strip, str),
        "127.0.0.1",
    )
    # RTP on even ports of this range, RTCP on the odd port above each.
    port_min: int = _key(_int_rule(1024, 65534), 10000)
    port_max: int = _key(_int_rule(1025, 65535), 20000)
    # Media threads (each a 20 ms clock driving its legs and rooms); one per spare core.
    shards: int = _key(_int_rule(1, 64), 1)
    recordings_dir: str = _key(PATH, "var/recordings")
    # Browsers may speak Opus (transcoded to G.711 at the leg's edge: better sound on poor
    # networks, ~60 µs of CPU per 20 ms frame); false: G.711 only, ~5x lighter per leg.
    browser_opus: bool = _key(_BOOL, True)


def _parse_required(v: Any) -> Any:
    """``"default=name,phones; internet=name,phones,addresses"`` -> ((service, (fields, ...)), ...)."""
    if not isinstance(v, str):
        return v
    out: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in v.split(";"))):
        service, _, names = part.partition("=")
        if not service.strip() or not _:
            return v  # left as text: the check below refuses it
        out[service.strip()] = tuple(n.strip() for n in names.split(",") if n.strip())
    return tuple(sorted(out.items()))


_CUSTOMER_FIELDS = {
    "kind",
    "name",
    "phones",
    "addresses",
    "email",
    "birthday",
    "segment",
    "group_id",
    "notes",
}
REQUIRED_FIELDS = _Rule(
    "service=field,field;... with fields among "
    + ", ".join(sorted(_CUSTOMER_FIELDS))
    + " and a 'default' service",
    lambda v: (
        isinstance(v, dict)
        and "default" in v
        and all(set(fs) <= _CUSTOMER_FIELDS for fs in v.values())
    ),
    str,
    str,
    _parse_required,
)


@dataclass(frozen=True)
class CrmConfig:
    # Calling code for numbers written in national form (380 Ukraine, 7 Russia, 86 China).
    default_country: str = _key(_choice_rule("380", "7", "86"), "380")
    session_hours: float = _key(_float_rule(0.1, 720), 12.0)
    # How often open cases are checked against their SLA deadline.
    overdue_check_seconds: float = _key(_float_rule(0.1, 3600), 60.0)
    # Load the "ABC Internet" demo tenant into an empty CRM.
    demo: bool = _key(
        _Rule("true or false", lambda v: isinstance(v, bool), _parse_bool, bool), True
    )
    # The demo admin's password when the demo tenant is first loaded; empty: a random one,
    # written to var/admin-password (mode 0600). Never logged.
    admin_password: str = _key(_Rule("a string", lambda v: isinstance(v, str), str, str), "")
    # Fields registration insists on, per service.
    required_fields: tuple[tuple[str, tuple[str, ...]], ...] = _key(
        REQUIRED_FIELDS,
        (("default", ("name", "phones")), ("internet", ("name", "phones", "addresses"))),
    )


@dataclass(frozen=True)
class SipConfig:
    """SIP signaling: where it listens, its timers, the registrar's realm, abuse limits."""

    host: str = _key(
        _Rule("an IP address", lambda v: isinstance(v, str) and _is_ip(v), str.strip, str),
        "127.0.0.1",
    )
    port: int = _key(PORT, 5060)
    udp: bool = _key(_BOOL, True)
    tcp: bool = _key(_BOOL, True)
    # The digest realm of agents' phones; changing it invalidates stored credentials.
    realm: str = _key(
        _Rule("a realm", lambda v: isinstance(v, str) and bool(v.strip()), str, str), "ccorch"
    )
    # Digest algorithms offered, in order (RFC 8760: SHA-256 first). Phones that only read
    # the first challenge and know only MD5 (SIPp) need "MD5,SHA-256".
    auth_algorithms: tuple[str, ...] = _key(
        _Rule(
            "a comma-separated list of SHA-256 and MD5",
            lambda v: isinstance(v, tuple) and bool(v) and set(v) <= {"SHA-256", "MD5"},
            str,
            str,
            lambda v: tuple(x.strip().upper() for x in v.split(",")) if isinstance(v, str) else v,
        ),
        ("SHA-256", "MD5"),
    )
    # RFC 3261 timers (T1 RTT estimate, T2 max retransmit interval, T4 max network lifetime).
    t1_ms: int = _key(_int_rule(10, 10000), 500)
    t2_ms: int = _key(_int_rule(100, 60000), 4000)
    t4_ms: int = _key(_int_rule(100, 60000), 5000)
    trunks_file: str = _key(PATH, "sip/trunks.toml")
    # Out-of-dialog requests per second (and burst) per untrusted source before a flood ban.
    rate_limit: float = _key(_float_rule(0.1, 100000), 20.0)
    rate_burst: float = _key(_float_rule(1, 100000), 60.0)
    flood_ban_seconds: float = _key(_float_rule(0, 86400), 60.0)
    # Calls a phone's address may have up at once and start per second (0: no limit); past
    # them, 503. A trunk's limits are in the trunks file.
    source_max_calls: int = _key(_int_rule(0, 1_000_000), 100)
    source_max_calls_per_second: float = _key(_float_rule(0, 100000), 10.0)
    # Overload: new calls get 503 while SIP datagrams wait in the receive queue longer than
    # the target for 100 ms running, and an INVITE that itself waited past stale.
    overload_queue_target_ms: int = _key(_int_rule(1, 10000), 50)
    overload_stale_ms: int = _key(_int_rule(1, 60000), 250)
    # ...and while more than this many database requests wait for a pooled connection
    overload_database_waiting: int = _key(_int_rule(1, 100000), 20)
    # Failed authentications per source (within a minute) before a ban, and its length.
    auth_failures: int = _key(_int_rule(1, 1000), 5)
    auth_ban_seconds: float = _key(_float_rule(0, 86400), 600.0)
    # How long an agent's phone rings before the call is refused as not answered.
    ring_timeout_seconds: float = _key(_float_rule(1, 600), 30.0)
    # RFC 4028 session refresh interval we ask for (0: no session timers) and accept at least.
    session_expires: int = _key(_int_rule(0, 86400), 1800)
    # RFC 4028 says at least 90; lower values exist so tests need not wait minutes.
    min_se: int = _key(_int_rule(1, 86400), 90)
    # SIP over TCP: connections per source address and in all (capped further so the RTP
    # range, HTTP and the database keep their descriptors), and how long one may stay idle.
    tcp_max_per_source: int = _key(_int_rule(1, 100000), 32)
    tcp_max_connections: int = _key(_int_rule(1, 1000000), 4096)
    tcp_idle_seconds: float = _key(_float_rule(1, 86400), 120.0)
    tcp_first_message_seconds: float = _key(_float_rule(0.1, 600), 5.0)
    # SIP over TLS (SIPS) on its own port, on when a certificate and key are set (PEM).
    tls_port: int = _key(PORT, 5061)
    tls_cert: str = _key(OPT_PATH, "")
    tls_key: str = _key(OPT_PATH, "")
    # CA bundle a trunk's certificate is verified against when we connect to it ("": the
    # system's); a trunk with verify = false in the trunks file is not verified.
    tls_ca: str = _key(OPT_PATH, "")
    # SRTP (SDES) with phones reached over TLS: off, optional (when the phone offers or
    # accepts it), required. Phones over UDP or TCP never get keys (they would be in clear).
    phones_srtp: str = _key(_choice_rule("off", "optional", "required"), "optional")
    # OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); TLS 1.2 is the least.
    tls_ciphers: str = _key(
        _Rule("an OpenSSL cipher list", lambda v: isinstance(v, str) and bool(v.strip()), str, str),
        "ECDHE+AESGCM:ECDHE+CHACHA20",
    )


_CODE = re.compile(r"^[a-z0-9_-]{1,40}$")


def _codes_rule() -> _Rule:
    """A comma-separated list of short codes (dispositions, not-ready reasons)."""
    return _Rule(
        "a comma-separated list of codes (a-z, 0-9, _ and -; up to 40 characters each)",
        lambda v: (
            isinstance(v, tuple)
            and bool(v)
            and len(set(v)) == len(v)
            and all(_CODE.match(x) for x in v)
        ),
        str,
        str,
        lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if isinstance(v, str) else v,
    )


@dataclass(frozen=True)
class AcdConfig:
    # A registered phone logs its operator in to all its groups, Ready (the demo, without a
    # desktop); off: operators log in themselves (POST /api/agent/login).
    auto_login_on_register: bool = _key(_BOOL, True)
    # The reasons an operator may give for Not ready (POST /api/agent/state). Add new ones at
    # the end: the order numbers them (reports and a restart go by name).
    not_ready_reasons: tuple[str, ...] = _key(
        _codes_rule(), ("lunch", "break", "not_ready", "training", "meeting")
    )
    # "More time" after a call (POST /api/agent/wrap_up {"action": "extend"}), once per call.
    wrap_up_extension_seconds: float = _key(_float_rule(1, 3600), 60.0)


@dataclass(frozen=True)
class CallsConfig:
    # The wrap-up codes an operator may set on a call (POST /api/calls/{id}/disposition).
    dispositions: tuple[str, ...] = _key(
        _codes_rule(),
        (
            "resolved",
            "callback_requested",
            "escalated",
            "sale",
            "no_sale",
            "complaint",
            "wrong_number",
            # a campaign's attempts: the script done, the customer said no, and a machine
            # the detection took for a person (the pacer learns from it; retried as one)
            "completed",
            "refused",
            "answering_machine",
        ),
    )


@dataclass(frozen=True)
class WebhooksConfig:
    # Attempts before a delivery is marked failed; the wait between them doubles from 1 s
    # up to max_backoff_seconds (20 attempts at the defaults: about 1.5 hours).
    max_attempts: int = _key(_int_rule(1, 1000), 20)
    max_backoff_seconds: float = _key(_float_rule(0.1, 86400), 600.0)
    # The longest a receiver may take to answer one request.
    timeout_seconds: float = _key(_float_rule(0.1, 120), 10.0)


@dataclass(frozen=True)
class IvrConfig:
    """IVR flows: the folder of flow files (one per service, chosen by DNIS) and the TTS cache."""

    flows_dir: str = _key(PATH, "flows")
    # ACD queues and their agents (TOML; see ccorch/acd/service.py); relative to flows_dir.
    queues_file: str = _key(PATH, "queues.toml")
    tts_cache_dir: str = _key(PATH, "var/tts")
    # How often the flows folder is checked for changed files (hot reload).
    reload_seconds: float = _key(_float_rule(0.1, 3600), 1.0)


def _is_zone(v: object) -> bool:
    if not isinstance(v, str) or not v.strip():
        return False
    try:
        ZoneInfo(v.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SupervisionConfig:
    # The center's time zone: where "today" starts for the wallboard, /metrics and reports.
    time_zone: str = _key(_Rule("an IANA time zone name", _is_zone, str.strip, str), "Europe/Kyiv")
    # A caller who hangs up within this many seconds of queuing is a short abandon: counted
    # apart, and not held against the service level.
    short_abandon_seconds: float = _key(_float_rule(0, 120), 5.0)


_TEXT = _Rule("a string", lambda v: isinstance(v, str), str, str)


@dataclass(frozen=True)
class SmsConfig:
    """The carrier's SMSC over SMPP 3.4 (bind transceiver); SMS is off while host is ""."""

    host: str = _key(OPT_HOST, "")
    port: int = _key(PORT, 2775)
    system_id: str = _key(_TEXT, "")
    password: str = _key(_TEXT, "")
    # who the messages come from: an alphanumeric sender name or a number
    source: str = _key(_TEXT, "ABC")
    # the longest wait between reconnection attempts (the wait doubles from 1 s)
    max_backoff_seconds: float = _key(_float_rule(1, 3600), 60.0)
    # messages per second at most (the carrier's contract)
    rate_per_second: float = _key(_float_rule(0.1, 1000), 20.0)
    # tell the customer by SMS when their case is resolved ("" for no), {number} is the case
    case_resolved_text: str = _key(_TEXT, "")


_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SECURITY = _choice_rule("tls", "starttls", "plain")


@dataclass(frozen=True)
class EmailConfig:
    """The center's mailbox: mail read over IMAP becomes interactions and cases, replies go
    out over SMTP. The channel is off while imap_host is ""."""

    # the center's address: replies come from it, and a message is for the center when it
    # lands in the mailbox below
    address: str = _key(
        _Rule(
            "an e-mail address, or empty",
            lambda v: isinstance(v, str) and (v == "" or bool(_ADDRESS.fullmatch(v))),
            str.strip,
            str,
        ),
        "",
    )
    display_name: str = _key(_TEXT, "Contact center")
    imap_host: str = _key(OPT_HOST, "")
    imap_port: int = _key(PORT, 993)
    # tls: TLS from the first byte (993); starttls: upgrade a plain connection; plain: none
    # (a test server on loopback)
    imap_security: str = _key(SECURITY, "tls")
    imap_user: str = _key(_TEXT, "")
    imap_password: str = _key(_TEXT, "")
    folder: str = _key(
        _Rule("a folder name", lambda v: isinstance(v, str) and bool(v), str.strip, str), "INBOX"
    )
    # how often the mailbox is looked at for new mail
    poll_seconds: float = _key(_float_rule(0.2, 3600), 15.0)
    smtp_host: str = _key(OPT_HOST, "")
    smtp_port: int = _key(PORT, 587)
    smtp_security: str = _key(SECURITY, "starttls")
    smtp_user: str = _key(_TEXT, "")
    smtp_password: str = _key(_TEXT, "")
    # the most a reply's attachments may weigh together
    max_attachment_bytes: int = _key(_int_rule(0, 100 * 1024 * 1024), 10 * 1024 * 1024)


@dataclass(frozen=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    crm: CrmConfig = field(default_factory=CrmConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    ivr: IvrConfig = field(default_factory=IvrConfig)
    acd: AcdConfig = field(default_factory=AcdConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    source: str = "defaults"


_SECTIONS: dict[str, type] = {
    "http": HttpConfig,
    "database": DatabaseConfig,
    "server": ServerConfig,
    "log": LogConfig,
    "media": MediaConfig,
    "crm": CrmConfig,
    "sip": SipConfig,
    "ivr": IvrConfig,
    "acd": AcdConfig,
    "calls": CallsConfig,
    "webhooks": WebhooksConfig,
    "supervision": SupervisionConfig,
    "sms": SmsConfig,
    "email": EmailConfig,
}


def _rules(section_cls: type) -> dict[str, _Rule]:
    return {f.name: f.metadata["rule"] for f in fields(section_cls)}


def _checked(key: str, rule: _Rule, value: Any, source: str, *, from_text: bool) -> Any:
    raw = value
    if from_text:
        try:
            value = rule.from_text(value)
        except ValueError:
            raise ConfigError(key, raw, rule.expected, source) from None
    elif value is not None and not isinstance(value, rule.toml_type):
        raise ConfigError(key, raw, rule.expected, source)
    value = rule.normalize(value)
    if not rule.check(value):
        raise ConfigError(key, raw, rule.expected, source)
    return value


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the effective configuration, or raise ConfigError naming the bad key."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}

    file_source = "defaults"
    if path is None and env.get("CCORCH_CONFIG"):
        path = Path(env["CCORCH_CONFIG"])
    if path is None and DEFAULT_FILE.is_file():
        path = DEFAULT_FILE
    if path is not None:
        file_source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                "config file", str(path), "an existing TOML file", "command line"
            ) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("config file", str(path), f"valid TOML ({e})", str(path)) from None
        for section, table in data.items():
            if section not in _SECTIONS:
                raise ConfigError(
                    section, table, "a known section: " + ", ".join(_SECTIONS), file_source
                )
            if not isinstance(table, dict):
                raise ConfigError(section, table, "a table of keys", file_source)
            rules = _rules(_SECTIONS[section])
            for key, value in table.items():
                name = f"{section}.{key}"
                if key not in rules:
                    raise ConfigError(name, value, "a known key: " + ", ".join(rules), file_source)
                values[section][key] = _checked(
                    name, rules[key], value, file_source, from_text=False
                )

    if env.get("DATABASE_URL"):
        rule = _rules(DatabaseConfig)["url"]
        values["database"]["url"] = _checked(
            "database.url", rule, env["DATABASE_URL"], "environment DATABASE_URL", from_text=True
        )
    for var, text in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var == "CCORCH_CONFIG":
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("_")
        source = f"environment {var}"
        if section not in _SECTIONS:
            raise ConfigError(
                var,
                text,
                "CCORCH_<SECTION>_<KEY> with a section among " + ", ".join(_SECTIONS),
                source,
            )
        rules = _rules(_SECTIONS[section])
        if key not in rules:
            raise ConfigError(var, text, f"a known key of [{section}]: " + ", ".join(rules), source)
        values[section][key] = _checked(
            f"{section}.{key}", rules[key], text, source, from_text=True
        )

    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    config = Config(**sections, source=file_source)
    if config.database.pool_min > config.database.pool_max:
        raise ConfigError(
            "database.pool_min",
            config.database.pool_min,
            f"at most database.pool_max ({config.database.pool_max})",
            file_source,
        )
    for section, sect in (("http", config.http), ("sip", config.sip)):
        cert, key = sect.tls_cert, sect.tls_key
        if bool(cert) != bool(key):
            missing = "tls_key" if cert else "tls_cert"
            raise ConfigError(
                f"{section}.{missing}",
                "",
                f"set with {section}.tls_cert/tls_key together",
                file_source,
            )
        if cert:
            _check_tls_files(section, cert, key, file_source)
    mail = config.email
    if mail.imap_host and not (mail.address and mail.smtp_host):
        missing = "email.address" if not mail.address else "email.smtp_host"
        raise ConfigError(
            missing, "", "set when email.imap_host is (replies need both)", file_source
        )
    if config.media.port_max - config.media.port_min < 3:
        raise ConfigError(
            "media.port_min",
            config.media.port_min,
            f"at least 4 below media.port_max ({config.media.port_max}), room for an RTP/RTCP pair",
            file_source,
        )
    return config


def _check_tls_files(section: str, cert: str, key: str, source: str) -> None:
    """The certificate and key load together (a wrong path or pair names the key)."""
    import ssl

    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"{section}.{name}", path, "a readable PEM file", source)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(
            f"{section}.tls_cert",
            cert,
            f"a PEM certificate matching {section}.tls_key ({e})",
            source,
        ) from None


def with_overrides(config: Config, *, host: str | None = None, port: int | None = None) -> Config:
    """Apply command-line overrides, checked like every other value."""
    http = config.http
    if host is not None:
        http = replace(http, host=_checked("http.host", HOST, host, "command line", from_text=True))
    if port is not None:
        http = replace(
            http, port=_checked("http.port", PORT, port, "command line", from_text=False)
        )
    return replace(config, http=http)
