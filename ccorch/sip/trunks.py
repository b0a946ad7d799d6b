"""Trunk profiles: who may send us calls and how we call out through them.

Trunks are declared in a TOML file (``sip.trunks_file``), one ``[[trunk]]`` table each::

    [[trunk]]
    name = "carrier-a"
    host = "127.0.0.1"          # calls from this address are this trunk's
    port = 5080                 # where we send (OPTIONS probes, outbound calls)
    transport = "udp"           # udp | tcp | tls (SIPS: sip.tls_* must be set)
    verify = true               # tls: check the trunk's certificate (sip.tls_ca or the system's)
    srtp = "off"                # off | optional | required: SDES-keyed SRTP (transport = "tls" only)
    codecs = ["PCMA", "PCMU"]   # our preference when we offer
    country = "380"             # DNIS/ANI in national form are made E.164 with this code
    strip_prefix = ""           # removed from the DNIS before normalizing
    username = ""               # digest credentials for our outbound INVITEs (401/407)
    password = ""
    options_interval = 30       # seconds between OPTIONS probes; 0: no probing
    match = "host"              # host: any source port is this trunk; host+port: only `port`
    outbound = false            # agents' calls to outside numbers leave through this trunk
    max_calls = 0               # calls up at once on this trunk, both directions (0: no limit)
    max_calls_per_second = 0    # calls started per second, burst twice that (0: no limit)

A bad file stops start-up with the trunk, key and reason.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccorch.errors import ConfigError
from ccorch.phones import PhoneError, normalize
from ccorch.sip.call_limits import Limit
from ccorch.sip.transaction import Addr

_KEYS = {
    "max_calls",
    "max_calls_per_second",
    "verify",
    "srtp",
    "name",
    "host",
    "port",
    "transport",
    "codecs",
    "country",
    "strip_prefix",
    "username",
    "password",
    "options_interval",
    "match",
    "outbound",
}


@dataclass(slots=True)
class Trunk:
    name: str
    host: str
    port: int = 5060
    transport: str = "UDP"
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    country: str = "380"
    strip_prefix: str = ""
    username: str = ""
    password: str = ""
    options_interval: float = 30.0
    match_port: bool = False
    outbound: bool = False
    # TLS: the trunk's certificate is checked (against sip.tls_ca, or the system's CAs)
    verify: bool = True
    srtp: str = "off"  # off, optional, required
    # what the carrier's contract allows, both directions (0: no limit); past it, 503
    max_calls: int = 0
    max_calls_per_second: float = 0.0
    # run-time state
    up: bool | None = field(default=None, compare=False)
    failures: int = field(default=0, compare=False)

    @property
    def limit(self) -> Limit:
        return Limit(self.max_calls, self.max_calls_per_second)

    @property
    def limit_key(self) -> str:
        return f"trunk:{self.name}"

    @property
    def addr(self) -> Addr:
        return Addr(self.transport, self.host, self.port)  # type: ignore[arg-type]

    def matches(self, source: Addr) -> bool:
        return source.host == self.host and (not self.match_port or source.port == self.port)

    def request_uri(self, number: str) -> str:
        """Where an outbound call to ``number`` goes: E.164 with '+' for long numbers."""
        n = self.normalize_number(number)
        user = f"+{n}" if len(n) > 6 and n.isdigit() else n
        t = f";transport={self.transport.lower()}" if self.transport != "UDP" else ""
        return f"sip:{user}@{self.host}:{self.port}{t}"

    def normalize_number(self, number: str) -> str:
        """DNIS/ANI to E.164 digits; short numbers (service numbers, extensions) unchanged."""
        n = number.strip()
        if self.strip_prefix and n.startswith(self.strip_prefix):
            n = n[len(self.strip_prefix) :]
        digits = n.lstrip("+")
        if len(digits) <= 6:
            return digits
        try:
            return normalize(n, self.country)
        except PhoneError:
            return n


def load_trunks(path: Path) -> list[Trunk]:
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("sip.trunks_file", src, "an existing TOML file", src) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("sip.trunks_file", src, f"valid TOML ({e})", src) from None
    out: list[Trunk] = []
    names: set[str] = set()
    for i, t in enumerate(data.get("trunk", [])):
        where = f"trunk[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(where, t, "a table", src)
        unknown = set(t) - _KEYS
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}",
                "…",
                "a known key: " + ", ".join(sorted(_KEYS)),
                src,
            )
        out.append(_trunk(t, where, src))
        if out[-1].name in names:
            raise ConfigError(f"{where}.name", out[-1].name, "a unique name", src)
        names.add(out[-1].name)
    return out


def _trunk(t: dict[str, Any], where: str, src: str) -> Trunk:
    def need(key: str, typ: Any, check: Any, expected: str, default: Any = None) -> Any:
        v = t.get(key, default)
        if (
            v is None
            or not isinstance(v, typ)
            or (isinstance(v, bool) and typ is not bool)
            or not check(v)
        ):
            raise ConfigError(f"{where}.{key}", v, expected, src)
        return v

    name = need("name", str, lambda v: bool(v.strip()), "a non-empty name")
    host = need("host", str, _is_ip, "an IP address")
    port = need("port", int, lambda v: 0 < v < 65536, "a port 1-65535", 5060)
    transport = need(
        "transport", str, lambda v: v.lower() in ("udp", "tcp", "tls"), "udp, tcp or tls", "udp"
    )
    codecs = need(
        "codecs",
        list,
        lambda v: bool(v) and all(c in ("PCMU", "PCMA") for c in v),
        "a list of PCMU, PCMA",
        ["PCMU", "PCMA"],
    )
    country = need(
        "country", str, lambda v: v.isdigit() and 0 < len(v) <= 3, "a calling code", "380"
    )
    interval = need(
        "options_interval", (int, float), lambda v: 0 <= v <= 3600, "0 to 3600 seconds", 30
    )
    return Trunk(
        name=name,
        host=host,
        port=port,
        transport=transport.upper(),
        codecs=tuple(codecs),
        country=country,
        strip_prefix=need("strip_prefix", str, lambda v: v.isdigit() or v == "", "digits", ""),
        username=need("username", str, lambda v: True, "a string", ""),
        password=need("password", str, lambda v: True, "a string", ""),
        options_interval=float(interval),
        match_port=need(
            "match", str, lambda v: v in ("host", "host+port"), "host or host+port", "host"
        )
        == "host+port",
        outbound=need("outbound", bool, lambda v: True, "true or false", False),
        max_calls=need("max_calls", int, lambda v: 0 <= v <= 1_000_000, "0 to 1000000", 0),
        max_calls_per_second=float(
            need(
                "max_calls_per_second",
                (int, float),
                lambda v: 0 <= v <= 100_000,
                "0 to 100000 calls per second",
                0,
            )
        ),
        verify=need("verify", bool, lambda v: True, "true or false", True),
        srtp=need(
            "srtp",
            str,
            lambda v: (
                v in ("off", "optional", "required") and (v == "off" or transport.lower() == "tls")
            ),
            'off, optional or required (not "off" only with transport = "tls": SDES keys'
            " travel in the SDP)",
            "off",
        ),
    )


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True
