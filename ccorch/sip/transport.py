"""UDP, TCP and TLS transports on the asyncio loop: the only part of the SIP stack with sockets.

TLS (SIPS, RFC 3261 §26.2 and RFC 5630) is the stdlib ``ssl`` in memory-BIO mode, as
asyncio's TLS transports run it: the handshake and records are worked out in memory over
the same stream protocol as TCP, so the SIP layer above sees one more stream transport.

Incoming bytes go to ``on_data(data, source, queued)`` (one datagram, or one framed message
from a TCP stream). UDP is read from a socket of our own with each datagram's kernel arrival
time (``SO_TIMESTAMPNS``): ``queued`` is how long it waited before the node read it, which
the overload control admits new calls by (0 for streams, where a message has no such time).
``send(data, dest)`` writes to UDP, or to the TCP connection with that peer, opening one if
there is none (RFC 3261 §18.1.1; connections are reused in both directions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import struct
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ccorch.sip.message import ParseError, StreamFramer
from ccorch.sip.transaction import Addr

log = logging.getLogger(__name__)

OnData = Callable[[bytes, Addr, float], None]

# Datagrams read in one go before other work gets the loop (a burst is read in batches, and
# their timestamps still tell how long each waited).
UDP_BATCH = 64
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)  # struct timespec
# SO_TIMESTAMPNS is Linux's (socket module names it only on some builds)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@dataclass(frozen=True)
class TcpLimits:
    """What one source and everyone together may hold open, and for how long.

    A connection must bring its first whole message within ``first_message_seconds`` (a
    half-open or silent connection costs a descriptor and nothing else); after that it is
    closed when idle for ``idle_seconds``, unless a phone's registration rides on it (the
    node calls the phone back over it), which keeps it for ``registered_idle_seconds``.
    Over a limit, the new connection is accepted and closed at once (TCP cannot refuse
    later than the kernel's accept) and counted.
    """

    per_source: int = 32
    total: int = 4096
    first_message_seconds: float = 5.0
    idle_seconds: float = 120.0
    registered_idle_seconds: float = 3900.0  # one registration's longest life and a margin


def tls_contexts(
    cert: str, key: str, ca: str, ciphers: str
) -> tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]:
    """(server, client verifying peers against ``ca`` or the system's, client not verifying)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    unverified = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    for ctx in (server, client, unverified):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        ctx.load_cert_chain(cert, key)  # ours, also offered when a peer asks for one
    return server, client, unverified


def tcp_budget(wanted: int, reserved: int) -> int:
    """Connections this process can afford: ``wanted``, capped so ``reserved`` descriptors
    (RTP sockets, HTTP, files, the database) stay free whatever TCP clients do."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - reserved))


# Room for a burst (~2,000 INVITEs), not for a standing queue: past that, waiting costs the
# callers retransmissions, and the overload control sheds instead. Capped by rmem_max.
UDP_RCVBUF = 1024 * 1024


class _Udp:
    """SIP over UDP on a non-blocking socket the loop watches: reads in batches, each
    datagram with the kernel's arrival time; writes at once, or queued until writable."""

    def __init__(self, owner: Transports, sock: socket.socket) -> None:
        self.owner = owner
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65535, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP port unreachable from a phone that went away: nothing to do but note it
                self.owner.send_errors += 1
                continue
            queued = 0.0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    queued = max(0.0, time.time() - (sec + nsec / 1e9))
            self.owner.on_data(data, Addr("UDP", str(addr[0]), int(addr[1])), queued)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._backlog:
            try:
                self.sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self.sock.fileno(), self._writable)
            except OSError:
                self.owner.send_errors += 1
                return
        if len(self._backlog) >= 10_000:  # a peer that never drains: UDP may lose, so we do
            self.owner.send_errors += 1
            return
        self._backlog.append((data, addr))

    def _writable(self) -> None:
        while self._backlog:
            data, addr = self._backlog[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.owner.send_errors += 1
            self._backlog.popleft()
        self._loop.remove_writer(self.sock.fileno())

    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        if self._backlog:
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # a burst must wait in the kernel, not be dropped, while the loop catches up
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_RCVBUF)
        with contextlib.suppress(OSError):  # without it, queued is 0: admission by loop lag
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Tcp(asyncio.Protocol):
    def __init__(self, owner: Transports, *, inbound: bool = True, kind: str = "TCP") -> None:
        self.owner = owner
        self.kind = kind  # TCP or TLS
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None
        self.last = 0.0
        self.inbound = inbound
        self.messages = 0
        self.counted = False  # in the per-source and total counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Addr(self.kind, host, port)  # type: ignore[arg-type]
        self.last = asyncio.get_running_loop().time()
        if self.inbound and not self.owner.admit(self):
            self.transport.abort()
            return
        self.counted = True
        self.owner.tcp[self.peer] = self

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.transport is None or not self.counted:
            return
        self.last = asyncio.get_running_loop().time()
        try:
            messages = self.framer.feed(data)
        except ParseError as e:
            # the stream lost its framing: nothing after this can be trusted (§18.3)
            log.warning(
                "closing TCP connection", extra={"peer": str(self.peer), "reason": e.reason}
            )
            self.owner.malformed += 1
            self.transport.close()
            return
        self.messages += len(messages)
        for m in messages:
            self.owner.on_data(m, self.peer, 0.0)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.owner.tcp.get(self.peer) is self:
            del self.owner.tcp[self.peer]
        if self.counted:
            self.counted = False
            self.owner.release(self)


class WsConnection:
    """One SIP-over-WebSocket connection (RFC 7118), opened by a browser or a softphone.

    The HTTP server owns the socket (``ccorch.api.sip_ws``); messages arrive here one per
    frame and leave through a queue, so ``send`` never blocks the SIP layer. ``user`` is
    who the connection proved to be (the app's session, or a digest-authenticated
    request); a connection that proved nothing is refused browser media."""

    def __init__(self, peer: Addr, user: str | None = None) -> None:
        self.peer = peer
        self.user = user
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1024)
        self.closed = False

    def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.outbox.put_nowait(data)
        except asyncio.QueueFull:
            return False  # a browser this far behind is gone; the SIP timers will say so
        return True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)


class Transports:
    def __init__(self, on_data: OnData, limits: TcpLimits | None = None) -> None:
        self.on_data = on_data
        self.limits = limits or TcpLimits()
        self.per_source: Counter[str] = Counter()
        self.open_total = 0
        self.refused: Counter[str] = Counter()  # reason -> connections closed at accept
        self.closed_idle: Counter[str] = Counter()  # silent (no first message), idle
        # the sources of live registrations: their connections are kept longer
        self.registered: Callable[[], set[Addr]] = set
        self.udp: _Udp | None = None
        self.tcp: dict[Addr, _Tcp] = {}
        self.ws: dict[Addr, WsConnection] = {}
        # called with the peer when a WebSocket closes (its registrations end with it)
        self.on_ws_closed: Callable[[Addr], None] = lambda peer: None
        self.tcp_server: asyncio.Server | None = None
        self.tls_server: asyncio.Server | None = None
        # TLS: how we accept (our certificate) and how we connect (whom we trust)
        self.tls_server_ctx: ssl.SSLContext | None = None
        self.tls_client_ctx: ssl.SSLContext | None = None
        self.tls_client_unverified: ssl.SSLContext | None = None
        self.tls_unverified: set[tuple[str, int]] = set()  # trunks with verify = false
        self.tls_handshake_failures = 0
        self.send_errors = 0
        self.malformed = 0
        self._connecting: dict[Addr, asyncio.Task[None]] = {}
        self._pending: dict[Addr, list[bytes]] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(
        self, host: str, port: int, *, udp: bool, tcp: bool, tls_port: int | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if udp:
            self.udp = _Udp(self, _udp_socket(host, port))
        if tcp:
            self.tcp_server = await loop.create_server(
                lambda: _Tcp(self), host, port, reuse_address=True
            )
        if tls_port is not None and self.tls_server_ctx is not None:
            self.tls_server = await loop.create_server(
                lambda: _Tcp(self, kind="TLS"),
                host,
                tls_port,
                reuse_address=True,
                ssl=self.tls_server_ctx,
                ssl_handshake_timeout=self.limits.first_message_seconds,
            )
        if tcp or self.tls_server is not None:
            self._reaper = asyncio.create_task(self._reap_idle(), name="sip_tcp_reaper")

    def admit(self, conn: _Tcp) -> bool:
        """Count an accepted connection in, or say it is over a limit."""
        assert conn.peer is not None
        host = conn.peer.host
        if self.open_total >= self.limits.total:
            self.refused["total"] += 1
            return False
        if self.per_source[host] >= self.limits.per_source:
            self.refused["per_source"] += 1
            if self.refused["per_source"] % 100 == 1:
                log.warning("TCP connections over the per-source limit", extra={"peer": host})
            return False
        self.per_source[host] += 1
        self.open_total += 1
        return True

    def release(self, conn: _Tcp) -> None:
        assert conn.peer is not None
        host = conn.peer.host
        self.open_total -= 1
        self.per_source[host] -= 1
        if self.per_source[host] <= 0:
            del self.per_source[host]

    def local_port(self) -> int | None:
        if self.udp is not None:
            return self.udp.port()
        if self.tcp_server is not None and self.tcp_server.sockets:
            port: int = self.tcp_server.sockets[0].getsockname()[1]
            return port
        return None

    def ws_opened(self, conn: WsConnection) -> None:
        self.ws[conn.peer] = conn

    def ws_closed(self, conn: WsConnection) -> None:
        conn.close()
        if self.ws.get(conn.peer) is conn:
            del self.ws[conn.peer]
            self.on_ws_closed(conn.peer)

    def connected(self, peer: Addr) -> bool:
        if peer.transport in ("WS", "WSS"):
            ws = self.ws.get(peer)
            return ws is not None and not ws.closed
        conn = self.tcp.get(peer)
        return conn is not None and conn.transport is not None and not conn.transport.is_closing()

    def send(self, data: bytes, dest: Addr) -> None:
        if dest.transport in ("WS", "WSS"):
            # a WebSocket is only ever the peer's own connection: never opened by us
            ws = self.ws.get(dest)
            if ws is None or not ws.send(data):
                self.send_errors += 1
            return
        if dest.transport == "UDP":
            if self.udp is None:
                self.send_errors += 1
                return
            self.udp.sendto(data, (dest.host, dest.port))
            return
        conn = self.tcp.get(dest)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        if dest.transport == "TLS" and self.tls_client_ctx is None:
            self.send_errors += 1  # SIPS needs sip.tls_cert/tls_key configured
            return
        self._pending.setdefault(dest, []).append(data)
        if dest not in self._connecting:
            self._connecting[dest] = asyncio.create_task(self._connect(dest))

    async def _connect(self, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls: ssl.SSLContext | None = None
            if dest.transport == "TLS":
                unverified = (dest.host, dest.port) in self.tls_unverified
                tls = self.tls_client_unverified if unverified else self.tls_client_ctx
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Tcp(self, inbound=False, kind=dest.transport),
                    dest.host,
                    dest.port,
                    ssl=tls,
                    server_hostname=dest.host if tls is not None else None,
                ),
                timeout=5,
            )
            # registered under the address we dialled too, so replies find it
            self.tcp[dest] = proto
            for data in self._pending.pop(dest, []):
                assert proto.transport is not None
                proto.transport.write(data)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            if isinstance(e, ssl.SSLError):
                self.tls_handshake_failures += 1
            self.send_errors += len(self._pending.pop(dest, []))
            log.info("TCP connect failed", extra={"peer": str(dest), "error": str(e)})
        finally:
            self._connecting.pop(dest, None)

    async def _reap_idle(self) -> None:
        loop = asyncio.get_running_loop()
        lim = self.limits
        while True:
            await asyncio.sleep(min(1.0, lim.first_message_seconds / 2))
            now = loop.time()
            registered: set[Addr] | None = None
            for conn in list(self.tcp.values()):
                if conn.transport is None or conn.peer is None:
                    continue
                quiet = now - conn.last
                if conn.inbound and conn.messages == 0:
                    if quiet > lim.first_message_seconds:
                        self.closed_idle["silent"] += 1
                        conn.transport.abort()
                    continue
                if quiet <= lim.idle_seconds:
                    continue
                if registered is None:
                    registered = self.registered()
                keep = lim.registered_idle_seconds if conn.peer in registered else lim.idle_seconds
                if quiet > keep:
                    self.closed_idle["idle"] += 1
                    conn.transport.close()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        for conn in list(self.tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        for ws in list(self.ws.values()):
            ws.close()
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
