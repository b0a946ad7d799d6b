"""The node's ports, checked before anything else starts (the database, migrations).

A second node started on the same configuration, or any other program on one of our ports,
is told in one line which port is taken and which key moves it; nothing is started first.
The check binds each port the way the node will (TCP with SO_REUSEADDR, as servers do, so a
closed connection in TIME_WAIT is not mistaken for a listener) and lets it go again.
"""

from __future__ import annotations

import socket

from ccorch.config import Config
from ccorch.errors import CcorchError


class PortBusy(CcorchError):
    """A port the node needs is taken: which one, and the key that moves it."""

    def __init__(self, key: str, env: str, address: str, proto: str, reason: str) -> None:
        self.key = key
        super().__init__(
            f"{address} ({proto}) is not free: {reason}; set {key} (or {env}) to another port"
        )


def _try(host: str, port: int, kind: socket.SocketKind) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e
    return None


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check(config: Config) -> None:
    """Raise :class:`PortBusy` for the first port the node could not bind."""
    wanted: list[tuple[str, str, str, int, socket.SocketKind]] = [
        ("http.port", "CCORCH_HTTP_PORT", config.http.host, config.http.port, socket.SOCK_STREAM)
    ]
    sip = config.sip
    if sip.udp:
        wanted.append(("sip.port", "CCORCH_SIP_PORT", sip.host, sip.port, socket.SOCK_DGRAM))
    if sip.tcp:
        wanted.append(("sip.port", "CCORCH_SIP_PORT", sip.host, sip.port, socket.SOCK_STREAM))
    if sip.tls_cert:
        wanted.append(
            ("sip.tls_port", "CCORCH_SIP_TLS_PORT", sip.host, sip.tls_port, socket.SOCK_STREAM)
        )
    for key, env, host, port, kind in wanted:
        error = _try(host, port, kind)
        if error is not None:
            proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
            raise PortBusy(key, env, _address(host, port), proto, error.strerror or str(error))
    _check_rtp(config)


def _check_rtp(config: Config) -> None:
    """At least one RTP/RTCP pair of the media range must be free (legs take them as they
    come; a range wholly taken would fail every call)."""
    m = config.media
    first = m.port_min + (m.port_min % 2)
    for rtp in range(first, m.port_max, 2):
        if (
            _try(m.bind_ip, rtp, socket.SOCK_DGRAM) is None
            and _try(m.bind_ip, rtp + 1, socket.SOCK_DGRAM) is None
        ):
            return
    raise PortBusy(
        "media.port_min",
        "CCORCH_MEDIA_PORT_MIN",
        f"{_address(m.bind_ip, m.port_min)}-{m.port_max}",
        "UDP",
        "every RTP port pair of the range is in use",
    )
