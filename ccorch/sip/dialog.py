"""Dialogs (RFC 3261 §12): the state two user agents share, and the requests sent inside one.

A ``Dialog`` is plain data plus builders; it does no I/O. The call layer creates one when a
leg is answered (as UAS from an INVITE and our 2xx, or as UAC from our INVITE and its 2xx).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from ccorch.sip.message import NameAddr, Request, Response, Uri
from ccorch.sip.transaction import Addr, new_branch

_tag_ids = itertools.count(1)
_salt = os.urandom(3).hex()


def new_tag() -> str:
    return f"{_salt}{next(_tag_ids):x}"


def new_call_id(host: str) -> str:
    return f"{os.urandom(6).hex()}{next(_tag_ids):x}@{host}"


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # our From in requests we send (the name-addr without tag)
    remote_uri: str  # their To
    remote_target: Uri  # their Contact: Request-URI of our in-dialog requests
    dest: Addr  # where in-dialog requests go
    local_cseq: int
    remote_cseq: int | None
    route_set: list[str] = field(default_factory=list)
    contact: str = ""  # our Contact header value
    via_host: str = ""  # our sent-by

    @classmethod
    def as_uas(
        cls, req: Request, resp: Response, source: Addr, contact: str, via_host: str
    ) -> Dialog:
        """Our side of a dialog we answered (§12.1.1)."""
        remote_contacts = req.contacts()
        target = remote_contacts[0].uri if remote_contacts else req.from_.uri
        return cls(
            call_id=req.call_id,
            local_tag=resp.to.tag or "",
            remote_tag=req.from_.tag or "",
            local_uri=_without_tag(req.get("to") or ""),
            remote_uri=_without_tag(req.get("from") or ""),
            remote_target=target,
            dest=source,
            local_cseq=0,
            remote_cseq=req.cseq[0],
            route_set=req.get_all("record-route"),
            contact=contact,
            via_host=via_host,
        )

    @classmethod
    def as_uac(cls, req: Request, resp: Response, dest: Addr) -> Dialog:
        """Our side of a dialog we created with ``req`` and its 2xx ``resp`` (§12.1.2)."""
        contacts = resp.contacts()
        target = contacts[0].uri if contacts else req.uri
        return cls(
            call_id=req.call_id,
            local_tag=req.from_.tag or "",
            remote_tag=resp.to.tag or "",
            local_uri=_without_tag(req.get("from") or ""),
            remote_uri=_without_tag(resp.get("to") or ""),
            remote_target=target,
            dest=dest,
            local_cseq=req.cseq[0],
            remote_cseq=None,
            route_set=list(reversed(resp.get_all("record-route"))),
            contact=req.get("contact") or "",
            via_host=req.top_via.host + (f":{req.top_via.port}" if req.top_via.port else ""),
        )

    def request(
        self, method: str, body: bytes = b"", extra: list[tuple[str, str]] | None = None
    ) -> Request:
        """A new request inside the dialog (§12.2.1.1); ACK and CANCEL are not built here."""
        self.local_cseq += 1
        return self._build(method, self.local_cseq, body, extra, new_branch())

    def ack(self, cseq: int, body: bytes = b"") -> Request:
        """The ACK for a 2xx to our INVITE with CSeq ``cseq`` (§13.2.2.4)."""
        return self._build("ACK", cseq, body, None, new_branch())

    def _build(
        self, method: str, cseq: int, body: bytes, extra: list[tuple[str, str]] | None, branch: str
    ) -> Request:
        headers = [
            ("via", f"SIP/2.0/{self.dest.transport} {self.via_host};branch={branch};rport"),
            ("max-forwards", "70"),
            ("from", f"{self.local_uri};tag={self.local_tag}"),
            ("to", f"{self.remote_uri};tag={self.remote_tag}"),
            ("call-id", self.call_id),
            ("cseq", f"{cseq} {method}"),
        ]
        for r in self.route_set:
            headers.append(("route", r))
        if self.contact and method not in ("BYE", "ACK", "CANCEL"):
            headers.append(("contact", self.contact))
        if extra:
            headers.extend(extra)
        if body:
            headers.append(("content-type", "application/sdp"))
        return Request(method, self.remote_target, headers, body)

    def accepts(self, req: Request) -> bool:
        """Checks the remote CSeq of an in-dialog request (§12.2.2): lower is out of order."""
        num = req.cseq[0]
        if self.remote_cseq is not None and num < self.remote_cseq:
            return False
        if req.method != "ACK":
            self.remote_cseq = num
        return True

    def refresh_target(self, msg: Request | Response) -> None:
        """A re-INVITE (or its 2xx) with a Contact moves the remote target (§12.2)."""
        try:
            contacts = msg.contacts()
        except ValueError:
            return
        if contacts and not contacts[0].star:
            self.remote_target = contacts[0].uri


def _without_tag(value: str) -> str:
    na = NameAddr.parse(value)
    na.params.pop("tag", None)
    return str(na)


def cancel_for(invite: Request) -> Request:
    """CANCEL for a pending INVITE (§9.1): same Request-URI, top Via, From, To, Call-ID, Route."""
    headers: list[tuple[str, str]] = []
    for k, v in invite.headers:
        if k == "via":
            headers.append((k, v.split(",", 1)[0]))
            break
    for k, v in invite.headers:
        if k in ("max-forwards", "from", "to", "call-id", "route"):
            headers.append((k, v))
    headers.append(("cseq", f"{invite.cseq[0]} CANCEL"))
    return Request("CANCEL", invite.uri, headers)
