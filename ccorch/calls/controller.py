"""The call controller: creates calls from INVITEs and keeps them until they end; the
media engine's events reach the call they concern from here."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ccorch.acd.service import AcdService
from ccorch.calls import CallEvents, campaign, cdr, originate
from ccorch.calls.call import Call
from ccorch.calls.journal import Journal
from ccorch.calls.leg import Leg, session_expires
from ccorch.calls.routing import DirectRouter, Router
from ccorch.ivr.runner import IvrDeps
from ccorch.ivr.store import FlowStore
from ccorch.media import (
    AmdResult,
    DtmfDigit,
    MediaEngine,
    MediaTimeout,
    PlaybackFinished,
    WebRtcState,
)
from ccorch.sip.message import Request
from ccorch.sip.service import Origin, SipService
from ccorch.sip.transaction import Addr, ServerTxn
from ccorch.sip.trunks import Trunk

log = logging.getLogger(__name__)

# Calls remembered after they end, for a disposition given in wrap-up.
ENDED_KEPT = 10_000


@dataclass(frozen=True)
class EndedCall:
    """What a disposition after the call needs to find its CDR."""

    sip_call_id: str
    arrived_at: dt.datetime
    agents: tuple[str, ...]  # the operators it reached


class CallController:
    """Creates calls from INVITEs and keeps them until they end."""

    def __init__(
        self,
        service: SipService,
        media: MediaEngine,
        *,
        router: Router | None = None,
        events: CallEvents | None = None,
        ring_timeout: float = 30.0,
        session_expires: int = 1800,
        min_se: int = 90,
        flows: FlowStore | None = None,
        ivr: IvrDeps | None = None,
        acd: AcdService | None = None,
        cdrs: cdr.CdrSink | None = None,
        journal: Journal | None = None,
        phones_srtp: str = "optional",
    ) -> None:
        self.service = service
        self.cdrs = cdrs
        self.journal = journal
        self.phones_srtp = phones_srtp
        self.media = media
        self.flows = flows
        self.ivr = ivr
        self.acd = acd
        self.router: Router = router or DirectRouter(service, flows)
        self.events = events or CallEvents()
        self.ring_timeout = ring_timeout
        self.session_expires = session_expires
        self.min_se = min_se
        self.calls: dict[tuple[str, str], Call] = {}
        self.media_legs: dict[int, Leg] = {}
        self.ended: OrderedDict[int, EndedCall] = OrderedDict()
        self.released = 0  # calls ended and let go so far (``ccorch.memory``)
        self._media_task: asyncio.Task[None] | None = None
        service.calls = self

    def srtp_policy(self, trunk: Trunk | None, peer: Addr) -> str:
        """SRTP for a leg: the trunk's setting; for a phone, ``sip.phones_srtp`` when it is
        reached over TLS, else off (SDES keys travel in the SDP: never in clear text)."""
        if trunk is not None:
            return trunk.srtp
        return self.phones_srtp if peer.transport == "TLS" else "off"

    def on_invite(self, req: Request, source: Addr, txn: ServerTxn, origin: Origin) -> None:
        key = (req.call_id, req.from_.tag or "")
        if key in self.calls:
            # §8.2.2.2: the same request arriving by another path (new branch): merged
            self.service.reply(txn, 482)
            return
        se = session_expires(req)
        if se is not None and se[0] < self.min_se:
            self.service.reply(txn, 422, headers=[("min-se", str(self.min_se))])
            return
        trunk = origin.trunk
        svc = self.service
        limit_key, limit = (
            (trunk.limit_key, trunk.limit) if trunk else (f"source:{source.host}", svc.source_limit)
        )
        refused = svc.call_limits.admit(svc.now(), limit_key, limit)
        if refused is not None:
            svc.stats["limit_rejects"] += 1
            who = f"trunk {trunk.name}" if trunk else "this address"
            svc.reply(
                txn,
                503,
                f"Service Unavailable ({who}: {refused})",
                headers=[("retry-after", "5")],
            )
            return
        user = req.uri.user or ""
        dnis = trunk.normalize_number(user) if trunk else user
        ani_user = req.from_.uri.user or ""
        ani = trunk.normalize_number(ani_user) if trunk and ani_user else ani_user
        call = Call(self, req, origin, ani, dnis)
        call.limit_keys.append(limit_key)
        self.calls[key] = call
        self.service.add_dialog(req.call_id, call.a.local_tag, call.a)
        self.service.spawn(call.start(req, source, txn))

    async def watch_media(self, queue: asyncio.Queue[Any]) -> None:
        """Media timeouts (no RTP for the leg's limit) end the call, as a dead line would."""
        while True:
            ev = await queue.get()
            if isinstance(ev, MediaTimeout):
                leg = self.media_legs.get(ev.leg)
                if leg is not None and leg.call.state != "ended":
                    log.info("media timeout", extra={"call": leg.call.id, "side": leg.side})
                    leg.call.end_from(leg, "media-timeout")
            elif isinstance(ev, WebRtcState):
                leg = self.media_legs.get(ev.leg)
                if leg is not None and not ev.connected and leg.call.state != "ended":
                    log.warning(
                        "browser media failed",
                        extra={"call": leg.call.id, "side": leg.side, "reason": ev.reason},
                    )
                    leg.call.end_from(leg, "webrtc-failed")
            elif isinstance(ev, DtmfDigit | PlaybackFinished | AmdResult):
                leg = self.media_legs.get(ev.leg)
                if leg is None or leg is not leg.call.a:
                    continue
                if leg.call.ivr is not None and not isinstance(ev, AmdResult):
                    leg.call.ivr.on_media(ev)
                elif leg.call.campaign is not None:
                    campaign.on_media(leg.call, ev)

    def originate(self, extension: str, number: str, trunk: Trunk) -> Call:
        """Click-to-dial: ring ``extension``, then call ``number`` through ``trunk``."""
        call = Call(self, None, Origin(agent=extension), extension, number)
        call.direction, call.outbound_trunk = "out", trunk
        self.calls[call.key] = call
        self.service.spawn(originate.start(call, extension, number, trunk))
        return call

    def find(self, call_id: int) -> Call | None:
        """The call in progress with this id (the API's number for it)."""
        return next((c for c in list(self.calls.values()) if c.id == call_id), None)

    def remember_ended(self, call: Call) -> None:
        agents = (*call.previous_agents, *([call.agent] if call.agent else []))
        self.ended[call.id] = EndedCall(call.sip_call_id, call.arrived_at, agents)
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)

    def active_calls(self) -> int:
        return len(self.calls)
