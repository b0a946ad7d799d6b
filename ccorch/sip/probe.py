"""OPTIONS probing of trunks: a trunk is up when it answers (any final response), down after
a transaction timeout. State changes are logged once each."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ccorch.sip.dialog import new_call_id, new_tag
from ccorch.sip.message import Request, Response
from ccorch.sip.transaction import ClientTxn, new_branch
from ccorch.sip.trunks import Trunk

if TYPE_CHECKING:
    from ccorch.sip.service import SipService

log = logging.getLogger(__name__)


class OptionsProbe:
    def __init__(self, service: SipService, trunk: Trunk) -> None:
        self.service = service
        self.trunk = trunk
        self.call_id = new_call_id(service.host)
        self.cseq = 0
        self.pending: ClientTxn | None = None

    def send(self) -> None:
        """One probe at a time: a slow or dead trunk is not sent a pile of them, and an old
        probe's timeout can never overrule a newer answer."""
        if self.pending is not None:
            return
        s, t = self.service, self.trunk
        self.cseq += 1
        uri = f"sip:{t.host}:{t.port}" + (
            f";transport={t.transport.lower()}" if t.transport != "UDP" else ""
        )
        req = Request(
            "OPTIONS",
            uri,
            [
                (
                    "via",
                    f"SIP/2.0/{t.addr.transport} {s.via_host(t.addr.transport)};branch={new_branch()};rport",
                ),
                ("max-forwards", "70"),
                ("from", f"<sip:ccorch@{s.host}>;tag={new_tag()}"),
                ("to", f"<{uri}>"),
                ("call-id", self.call_id),
                ("cseq", f"{self.cseq} OPTIONS"),
                ("accept", "application/sdp"),
            ],
        )
        self.pending = s.send_request(req, t.addr, self)

    def on_response(self, resp: Response, txn: ClientTxn) -> None:
        if resp.status >= 200 and txn is self.pending:
            self.pending = None
            self._set(True, resp.status)

    def on_timeout(self, txn: ClientTxn) -> None:
        if txn is self.pending:
            self.pending = None
            self._set(False, 408)

    def _set(self, up: bool, status: int) -> None:
        t = self.trunk
        if t.up is not up:
            log.log(
                logging.INFO if up else logging.WARNING,
                "trunk up" if up else "trunk down",
                extra={"trunk": t.name, "status": status},
            )
        t.up = up
        t.failures = 0 if up else t.failures + 1
