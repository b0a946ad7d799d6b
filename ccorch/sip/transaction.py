"""The transaction layer (RFC 3261 §17), sans-IO.

Messages and the current time go in (``on_message``, ``send_request``, ``respond``,
``on_timeout``); what must happen comes out of ``poll()``: bytes to send and events for the
transaction user (the dialog and call layer). The layer never reads a clock or a socket, so
tests drive it through loss and retransmission in virtual time.

Deviations from RFC 3261, chosen on purpose:
- The INVITE server transaction keeps the 2xx it was given and retransmits it itself until
  the ACK (T1 doubling to T2, UDP only), then reports ``AckTimeout`` after 64*T1 (timer H's
  length) so the call layer can send BYE (§13.3.1.4 gives this job to the UAS core; doing it
  here, as RFC 6026's Accepted state suggests, keeps every retransmission timer in one
  place). ACKs for a 2xx are matched by Call-ID and CSeq number, as their branch is new.
- A retransmitted INVITE in that state gets the 2xx again rather than being absorbed
  silently (RFC 6026 §8.5): the peer evidently lost it.
- The INVITE client transaction stays ``Accepted`` for 64*T1 after a 2xx (RFC 6026 timer M)
  and hands every 2xx retransmission to the call layer, which re-sends its ACK.
"""

from __future__ import annotations

import heapq
import itertools
import os
from dataclasses import dataclass
from typing import Literal

from ccorch.sip.message import MAGIC_COOKIE, Request, Response, make_response

TransportName = Literal["UDP", "TCP", "TLS", "WS", "WSS"]
# connection-oriented: responses go back on the connection (WS/WSS: SIP over WebSocket,
# RFC 7118, where the browser can only be reached on the connection it opened)
STREAMS = ("TCP", "TLS", "WS", "WSS")


@dataclass(frozen=True, slots=True)
class Addr:
    """A peer: transport, host, port. For TCP the connection to it is found by this."""

    transport: TransportName
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport.lower()}:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


# --- what comes out -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    dest: Addr


@dataclass(frozen=True, slots=True)
class RequestIn:
    """A new request (or an ACK for a 2xx, ``txn`` None) for the transaction user."""

    request: Request
    source: Addr
    txn: ServerTxn | None


@dataclass(frozen=True, slots=True)
class ResponseIn:
    response: Response
    txn: ClientTxn


@dataclass(frozen=True, slots=True)
class Timeout:
    """A client transaction got no final response (timers B/F): treat as 408."""

    txn: ClientTxn


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A 2xx to INVITE was never acknowledged (64*T1): the call layer sends BYE."""

    txn: ServerTxn


Output = Send | RequestIn | ResponseIn | Timeout | AckTimeout

_branch_ids = itertools.count(1)
_branch_salt = os.urandom(4).hex()


def new_branch() -> str:
    return f"{MAGIC_COOKIE}-{_branch_salt}-{next(_branch_ids):x}"


# --- transactions -------------------------------------------------------------------------


class ServerTxn:
    __slots__ = (
        "ack_key",
        "dest",
        "interval",
        "invite",
        "key",
        "last_response_bytes",
        "method",
        "request",
        "source",
        "state",
        "timers",
        "user",
    )

    def __init__(self, key: str, request: Request, source: Addr, dest: Addr) -> None:
        self.key = key
        self.request = request
        self.method = request.method
        self.invite = request.method == "INVITE"
        self.source = source
        self.dest = dest  # where responses go (§18.2.2, RFC 3581)
        self.state = "proceeding" if self.invite else "trying"
        # only the bytes of the last response are kept, to send again: the parsed one would
        # stay for the transaction's 32 s after the call (a few KiB each, thousands under load)
        self.last_response_bytes: bytes | None = None
        self.timers: dict[str, int] = {}
        self.interval = 0.0
        self.ack_key: tuple[str, int] | None = None
        self.user: object = None  # the call layer's handle (for CANCEL and ACK timeouts)

    def __repr__(self) -> str:
        return f"<ServerTxn {self.method} {self.state} {self.key}>"


class ClientTxn:
    __slots__ = (
        "ack_bytes",
        "branch",
        "dest",
        "interval",
        "invite",
        "key",
        "request",
        "request_bytes",
        "state",
        "timers",
        "user",
    )

    def __init__(self, key: tuple[str, str], request: Request, dest: Addr) -> None:
        self.key = key
        self.branch = key[0]
        self.request = request
        self.request_bytes = request.to_bytes()
        self.dest = dest
        self.invite = request.method == "INVITE"
        self.state = "calling" if self.invite else "trying"
        self.timers: dict[str, int] = {}
        self.interval = 0.0
        self.ack_bytes: bytes | None = None
        self.user: object = None  # the call layer's handle (leg, registration...)

    def __repr__(self) -> str:
        return f"<ClientTxn {self.request.method} {self.state} {self.branch}>"


def response_dest(req: Request, source: Addr) -> Addr:
    """Where responses to ``req`` go: the connection for TCP; for UDP the source address
    with rport (RFC 3581) or the Via's sent-by port."""
    if source.transport in STREAMS:
        return source
    via = req.top_via
    if "rport" in via.params:
        return source
    if via.params.get("maddr"):
        return Addr("UDP", via.params["maddr"] or source.host, via.port or 5060)
    return Addr("UDP", source.host, via.port or 5060)


def stamp_received(req: Request, source: Addr) -> None:
    """Add received= (and rport's value) to the top Via, as a server must (§18.2.1, RFC 3581)."""
    via = req.top_via
    changed = False
    if "rport" in via.params and via.params["rport"] is None:
        via.params["rport"] = str(source.port)
        changed = True
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if changed:
        # rewrite the first value of the first Via header in place
        for i, (k, v) in enumerate(req.headers):
            if k == "via":
                rest = v.split(",", 1)
                req.headers[i] = ("via", str(via) + ("," + rest[1] if len(rest) > 1 else ""))
                req._cache.pop("_first", None)
                break


class TransactionLayer:
    def __init__(self, timers: Timers | None = None) -> None:
        self.t = timers or Timers()
        self.server: dict[str, ServerTxn] = {}
        self.client: dict[tuple[str, str], ClientTxn] = {}
        self.accepted: dict[tuple[str, int], ServerTxn] = {}  # (call-id, cseq) of 2xx awaiting ACK
        self._heap: list[tuple[float, int, ServerTxn | ClientTxn, str, int]] = []
        self._seq = itertools.count()
        self._arms = 0
        self._out: list[Output] = []
        self.stray_responses = 0

    # --- the transaction user's side ---

    def poll(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def next_timeout(self) -> float | None:
        h = self._heap
        while h:
            deadline, _, txn, name, gen = h[0]
            if txn.timers.get(name) == gen:
                return deadline
            heapq.heappop(h)
        return None

    def send_request(self, now: float, req: Request, dest: Addr) -> ClientTxn:
        """Start a client transaction; the request's top Via must carry a fresh branch.
        ACK for a 2xx is not a transaction: use ``send_stateless``."""
        branch = req.top_via.branch or ""
        key = (branch, req.method)
        txn = ClientTxn(key, req, dest)
        self.client[key] = txn
        self._out.append(Send(txn.request_bytes, dest))
        udp = dest.transport == "UDP"
        if txn.invite:
            if udp:
                txn.interval = self.t.t1
                self._arm(now, txn, "A", self.t.t1)
            self._arm(now, txn, "B", 64 * self.t.t1)
        else:
            if udp:
                txn.interval = self.t.t1
                self._arm(now, txn, "E", self.t.t1)
            self._arm(now, txn, "F", 64 * self.t.t1)
        return txn

    def known_key(self, key: str) -> bool:
        """Whether a server transaction with this key (as ``_server_key`` makes it) is under
        way: the Rust refusal computes the key from the datagram without parsing it here."""
        return key in self.server

    def known(self, req: Request) -> bool:
        """Whether ``req`` belongs to a server transaction already under way (a
        retransmission): it is absorbed by it, never refused as a new request."""
        return _server_key(req, req.method) in self.server

    def send_stateless(self, data: bytes, dest: Addr) -> None:
        self._out.append(Send(data, dest))

    def respond(self, now: float, txn: ServerTxn, resp: Response) -> None:
        if txn.state in ("completed", "confirmed", "terminated", "accepted"):
            return  # a final response was already sent
        data = resp.to_bytes()
        txn.last_response_bytes = data
        self._out.append(Send(data, txn.dest))
        udp = txn.dest.transport == "UDP"
        status = resp.status
        if status < 200:
            if not txn.invite:
                txn.state = "proceeding"
            return
        # the final response is out: the transaction resends it and matches ACKs, nothing
        # more of its request is needed (the call layer keeps its own reference if it does)
        txn.request = txn.request.essentials()
        if txn.invite:
            if status < 300:
                txn.state = "accepted"
                txn.ack_key = (txn.request.call_id, resp.cseq[0])
                self.accepted[txn.ack_key] = txn
                if udp:
                    txn.interval = self.t.t1
                    self._arm(now, txn, "G2xx", self.t.t1)
                self._arm(now, txn, "H2xx", 64 * self.t.t1)
            else:
                txn.state = "completed"
                if udp:
                    txn.interval = self.t.t1
                    self._arm(now, txn, "G", self.t.t1)
                self._arm(now, txn, "H", 64 * self.t.t1)
        else:
            txn.state = "completed"
            self._arm(now, txn, "J", 64 * self.t.t1 if udp else 0.0)

    def implicit_ack(self, call_id: str, cseq: int) -> bool:
        """A request inside the dialog (BYE) proves the peer got our 2xx: stop resending it,
        as if its ACK had arrived (an ACK lost on the way is never resent by some peers)."""
        acc = self.accepted.pop((call_id, cseq), None)
        if acc is None:
            return False
        self._cancel(acc, "G2xx")
        self._cancel(acc, "H2xx")
        acc.state = "terminated"
        self._drop_server(acc)
        return True

    def find_invite(self, cancel: Request) -> ServerTxn | None:
        """The INVITE server transaction a CANCEL refers to (§9.2)."""
        return self.server.get(_server_key(cancel, "INVITE"))

    # --- the network's side ---

    def on_message(self, now: float, msg: Request | Response, source: Addr) -> None:
        if isinstance(msg, Response):
            self._on_response(now, msg)
        else:
            self._on_request(now, msg, source)

    def _on_request(self, now: float, req: Request, source: Addr) -> None:
        stamp_received(req, source)
        method = req.method
        if method == "ACK":
            txn = self.server.get(_server_key(req, "INVITE"))
            if txn is not None and txn.state in ("completed", "confirmed"):
                # ACK for our non-2xx final response: ends the transaction (§17.2.1)
                if txn.state == "completed":
                    txn.state = "confirmed"
                    self._cancel(txn, "G")
                    self._cancel(txn, "H")
                    self._arm(now, txn, "I", self.t.t4 if txn.dest.transport == "UDP" else 0.0)
                return
            acc = self.accepted.pop((req.call_id, req.cseq[0]), None)
            if acc is not None:
                self._cancel(acc, "G2xx")
                self._cancel(acc, "H2xx")
                acc.state = "terminated"
                self._drop_server(acc)
            self._out.append(RequestIn(req, source, None))
            return
        key = _server_key(req, method)
        txn = self.server.get(key)
        if txn is not None:
            # a retransmission: the last response again, nothing for the user (§17.2)
            if txn.last_response_bytes is not None:
                self._out.append(Send(txn.last_response_bytes, txn.dest))
            return
        txn = ServerTxn(key, req, source, response_dest(req, source))
        self.server[key] = txn
        if txn.invite:
            # 100 Trying at once (§17.2.1): stops the caller's retransmissions while we route
            txn.last_response_bytes = make_response(req, 100).to_bytes()
            self._out.append(Send(txn.last_response_bytes, txn.dest))
        self._out.append(RequestIn(req, source, txn))

    def _on_response(self, now: float, resp: Response) -> None:
        try:
            branch = resp.top_via.branch or ""
        except (ValueError, IndexError):
            self.stray_responses += 1
            return
        txn = self.client.get((branch, resp.cseq[1]))
        if txn is None:
            self.stray_responses += 1  # §18.1.2: silently discarded
            return
        status = resp.status
        udp = txn.dest.transport == "UDP"
        if txn.invite:
            if txn.state in ("calling", "proceeding"):
                self._cancel(txn, "A")
                if status < 200:
                    txn.state = "proceeding"
                    self._cancel(txn, "B")
                    self._out.append(ResponseIn(resp, txn))
                elif status < 300:
                    txn.state = "accepted"
                    self._cancel(txn, "B")
                    self._arm(now, txn, "M", 64 * self.t.t1)
                    self._out.append(ResponseIn(resp, txn))
                else:
                    txn.state = "completed"
                    self._cancel(txn, "B")
                    txn.ack_bytes = _ack_for(txn.request, resp).to_bytes()
                    self._out.append(Send(txn.ack_bytes, txn.dest))
                    self._arm(now, txn, "D", 32.0 if udp else 0.0)
                    self._out.append(ResponseIn(resp, txn))
            elif txn.state == "accepted":
                if 200 <= status < 300:
                    self._out.append(ResponseIn(resp, txn))  # the call layer re-sends its ACK
            elif txn.state == "completed" and status >= 300 and txn.ack_bytes is not None:
                self._out.append(Send(txn.ack_bytes, txn.dest))
            return
        if txn.state in ("trying", "proceeding"):
            if status < 200:
                txn.state = "proceeding"
                self._out.append(ResponseIn(resp, txn))
                return
            self._cancel(txn, "E")
            self._cancel(txn, "F")
            txn.state = "completed"
            self._arm(now, txn, "K", self.t.t4 if udp else 0.0)
            self._out.append(ResponseIn(resp, txn))

    # --- time ---

    def on_timeout(self, now: float) -> None:
        h = self._heap
        while h and h[0][0] <= now:
            _, _, txn, name, gen = heapq.heappop(h)
            if txn.timers.get(name) != gen:
                continue
            del txn.timers[name]
            if isinstance(txn, ClientTxn):
                self._client_timer(now, txn, name)
            else:
                self._server_timer(now, txn, name)

    def _client_timer(self, now: float, txn: ClientTxn, name: str) -> None:
        if name == "A":
            self._out.append(Send(txn.request_bytes, txn.dest))
            txn.interval *= 2
            self._arm(now, txn, "A", txn.interval)
        elif name == "E":
            self._out.append(Send(txn.request_bytes, txn.dest))
            txn.interval = min(2 * txn.interval, self.t.t2) if txn.state == "trying" else self.t.t2
            self._arm(now, txn, "E", txn.interval)
        elif name in ("B", "F"):
            self._cancel(txn, "A")
            self._cancel(txn, "E")
            txn.state = "terminated"
            self.client.pop(txn.key, None)
            self._out.append(Timeout(txn))
        elif name in ("D", "K", "M"):
            txn.state = "terminated"
            self.client.pop(txn.key, None)

    def _server_timer(self, now: float, txn: ServerTxn, name: str) -> None:
        if name in ("G", "G2xx"):
            if txn.last_response_bytes is not None:
                self._out.append(Send(txn.last_response_bytes, txn.dest))
            txn.interval = min(2 * txn.interval, self.t.t2)
            self._arm(now, txn, name, txn.interval)
        elif name == "H":
            self._cancel(txn, "G")
            txn.state = "terminated"
            self._drop_server(txn)
        elif name == "H2xx":
            self._cancel(txn, "G2xx")
            txn.state = "terminated"
            if txn.ack_key is not None:
                self.accepted.pop(txn.ack_key, None)
            self._drop_server(txn)
            self._out.append(AckTimeout(txn))
        elif name in ("I", "J"):
            txn.state = "terminated"
            self._drop_server(txn)

    def _drop_server(self, txn: ServerTxn) -> None:
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]

    def _arm(self, now: float, txn: ServerTxn | ClientTxn, name: str, delay: float) -> None:
        gen = next(self._seq)
        txn.timers[name] = gen
        heap = self._heap
        heapq.heappush(heap, (now + delay, gen, txn, name, gen))
        # Cancelled timers stay in the heap until their time (lazy deletion), holding their
        # transaction's messages: at a few hundred calls/s that is 32 s of traffic. Sweep
        # them out once they outnumber the live ones.
        self._arms += 1
        if self._arms >= 4096 and self._arms * 2 >= len(heap):
            self._arms = 0
            live = [e for e in heap if e[2].timers.get(e[3]) == e[4]]
            if len(live) * 2 < len(heap):
                heapq.heapify(live)
                self._heap = live

    @staticmethod
    def _cancel(txn: ServerTxn | ClientTxn, name: str) -> None:
        txn.timers.pop(name, None)


def _server_key(req: Request, method: str) -> str:
    via = req.top_via
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return f"{branch}|{via.host}:{via.port}|{method}"
    # RFC 2543 peers: no usable branch (§17.2.3 fallback, simplified)
    return f"{req.call_id}|{req.cseq[0]}|{req.from_.tag}|{via}|{method}"


def _ack_for(invite: Request, resp: Response) -> Request:
    """The ACK a client INVITE transaction sends for a non-2xx final response (§17.1.1.3)."""
    headers: list[tuple[str, str]] = []
    for k, v in invite.headers:
        if k == "via":
            headers.append((k, v.split(",", 1)[0]))
            break
    for k, v in invite.headers:
        if k in ("from", "call-id", "route", "max-forwards"):
            headers.append((k, v))
    to = resp.get("to")
    headers.append(("to", to if to is not None else invite.get("to") or ""))
    headers.append(("cseq", f"{invite.cseq[0]} ACK"))
    return Request("ACK", invite.uri, headers)
