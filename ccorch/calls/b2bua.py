"""The back-to-back user agent: every call is two (or, during a transfer, three) SIP legs whose
media meet in the media engine, never directly.

Leg A is the caller (a trunk, or an agent's phone calling out); leg B is the phone we ring.
Each leg answers its own peer: CANCEL, BYE, re-INVITE (hold and resume), session-timer
refreshes and OPTIONS are handled per leg, and what one side does reaches the other only
as the call's logic says (a BYE ends both legs; a hold is answered locally, the other side
keeps its media). REFER transfers the far party to a new leg (blind), or onto another call's
leg (attended, Replaces: RFC 3891).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote as url_unquote

from ccorch.acd.service import AcdService
from ccorch.calls import (
    MOS_BUCKETS,
    CallAnswered,
    CallArrived,
    CallEnded,
    CallEvents,
    CallHeld,
    CallRinging,
    CallTransferred,
    cdr,
    screening,
)
from ccorch.calls.journal import Journal, SavedDialog
from ccorch.crm import store as crm_store
from ccorch.ivr.flow import Flow
from ccorch.ivr.interpreter import Session
from ccorch.ivr.runner import IvrDeps, IvrRunner
from ccorch.ivr.store import FlowStore
from ccorch.media import DtmfDigit, MediaEngine, MediaTimeout, PlaybackFinished
from ccorch.sip import digest, registrar, sdp
from ccorch.sip.dialog import Dialog, cancel_for, new_call_id, new_tag
from ccorch.sip.message import NameAddr, Request, Response, Uri, make_response, parse_params, quote
from ccorch.sip.service import ALLOW, SUPPORTED, Origin, SipService
from ccorch.sip.transaction import Addr, ClientTxn, ServerTxn, new_branch
from ccorch.sip.trunks import Trunk

log = logging.getLogger(__name__)

_call_ids = itertools.count(1)


# --- routing decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RingUser:
    """Ring the registered phones of this SIP account."""

    user: str


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RingTrunk:
    """Call ``number`` outside, through the trunk named ``trunk``."""

    trunk: str
    number: str


@dataclass(frozen=True, slots=True)
class RunFlow:
    """Answer and run this IVR flow."""

    flow: Flow


Decision = RingUser | RingTrunk | RunFlow | Reject


class Router(Protocol):
    async def route(self, call: Call) -> Decision: ...


class DirectRouter:
    """The DNIS (or dialled extension) is an agent's SIP account: ring it. Otherwise 404.
    The IVR and the ACD take over routing in ``ccorch.ivr``; this is the plain PBX part."""

    def __init__(self, service: SipService, flows: FlowStore | None = None) -> None:
        self.service = service
        self.flows = flows

    async def route(self, call: Call) -> Decision:
        if self.flows is not None and call.origin.trunk is not None:
            flow = self.flows.for_dnis(call.dnis)
            if flow is not None:
                return RunFlow(flow)
        if call.dnis in self.service.accounts:
            return RingUser(call.dnis)
        if call.origin.agent is not None and call.dnis.lstrip("+").isdigit():
            for t in self.service.trunks:
                if t.outbound and t.up is not False:
                    return RingTrunk(t.name, call.dnis)
            return Reject(503, "Service Unavailable (no trunk for outside calls)")
        return Reject(404, "Not Found (no such number)")


# --- the call ----------------------------------------------------------------------------


_FAIL_STATUS = {486: 486, 600: 486, 603: 603, 404: 480, 480: 480, 408: 480}


class Leg:
    """One SIP dialog of a call and its media endpoint."""

    def __init__(self, call: Call, side: str) -> None:
        self.call = call
        self.side = side  # "a" (caller) or "b" (the phone we ring)
        self.dialog: Dialog | None = None
        self.invite: Request | None = None
        self.invite_txn: ServerTxn | ClientTxn | None = None
        self.local_tag = new_tag()
        self.dest: Addr | None = None
        self.media: int | None = None
        self.port = 0
        self.agreed: sdp.AudioAnswer | None = None
        self.sdp_session = (next(_call_ids) + 1000, 1)
        self.held = False  # the peer put us on hold
        self.state = "new"  # new, early, confirmed, ended
        self.final_sent = False
        self.invite_cseq = 0  # kept when the INVITE itself is let go after the answer
        self.call_id = ""
        self.pending_reinvite: ServerTxn | None = None
        self.refer_from: Leg | None = None  # this leg is a transfer target started by REFER
        self.target = ""
        self.session_timer: asyncio.TimerHandle | None = None
        self.session_interval = 0
        self.offer: sdp.Sdp | None = None  # the caller's offer, answered when B answers
        self.trunk: Trunk | None = None  # an outbound leg's trunk (its credentials)
        self.auth_tried = False
        # SRTP (SDES): what this peer must, may or may not do, and the keys once agreed
        self.srtp = "off"
        self.srtp_local: bytes | None = None
        self.srtp_remote: bytes | None = None

    @property
    def c(self) -> CallController:
        return self.call.ctl

    # -- media --

    def allocate_media(self, law: str, dtmf_pt: int | None) -> None:
        self.media, self.port = self.c.media.allocate_leg(self.call.id, law=law, dtmf_pt=dtmf_pt)
        self.c.media_legs[self.media] = self

    def apply_remote(self, agreed: sdp.AudioAnswer) -> None:
        assert self.media is not None
        self.agreed = agreed
        self.c.media.set_codec(self.media, agreed.law, agreed.dtmf_pt)
        if agreed.crypto is not None and agreed.crypto.key != self.srtp_remote:
            # the peer's key (new, or changed by a re-offer): the leg is SRTP from now on
            local = self.local_key()
            self.c.media.set_srtp(self.media, local, agreed.crypto.key)
            self.srtp_remote = agreed.crypto.key
        if agreed.port and agreed.host not in ("0.0.0.0", "::"):  # noqa: S104 - "no address" (hold)
            self.c.media.set_remote(self.media, agreed.host, agreed.port, agreed.rtcp_port)

    def local_key(self) -> bytes:
        """Our SDES key for this leg, made once."""
        if self.srtp_local is None:
            self.srtp_local = os.urandom(sdp.KEY_LEN)
        return self.srtp_local

    def release_media(self) -> None:
        if self.media is not None:
            self.c.media_legs.pop(self.media, None)
            self._count_quality()
            try:
                self.c.media.release_leg(self.media)
            except Exception as e:  # already gone with the engine's shutdown
                log.debug("release_leg", extra={"error": str(e)})
            self.media = None

    def _count_quality(self) -> None:
        """The leg's received-audio figures (RTP loss, the E-model MOS estimate) into the
        node's counters, for ``cc_media_*`` on /metrics."""
        assert self.media is not None
        try:
            st = self.c.media.leg_stats(self.media)
        except Exception:
            return
        received = int(st.get("packets_received", 0))
        if received <= 0:
            return
        stats = self.c.service.stats
        stats["media_legs_measured"] += 1
        side = "caller" if self.side == "a" else "operator"
        stats[f"media_packets_received_{side}"] += received
        stats[f"media_packets_lost_{side}"] += max(0, int(st.get("packets_lost", 0)))
        mos = float(st.get("mos") or 0.0)
        stats["media_mos_milli_sum"] += int(mos * 1000)
        for bound in MOS_BUCKETS:
            if mos <= bound:
                stats[f"media_mos_le_{bound}"] += 1

    def our_sdp(
        self,
        offer: sdp.Sdp | None = None,
        *,
        direction: str = "sendrecv",
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    ) -> bytes:
        ip = self.c.service.host
        if offer is not None:
            body, agreed = sdp.answer(
                ip,
                self.port,
                offer,
                session=self.sdp_session,
                srtp=self.srtp,
                srtp_key=self.local_key(),
            )
            self.apply_remote(agreed)
            return body
        return sdp.offer(
            ip,
            self.port,
            session=self.sdp_session,
            direction=direction,
            codecs=codecs,
            srtp_key=self.local_key() if self.srtp != "off" else None,
            savp=self.srtp == "required",
        )

    # -- sending --

    def send_in_dialog(
        self, method: str, body: bytes = b"", extra: list[tuple[str, str]] | None = None
    ) -> None:
        if self.dialog is None:
            return
        req = self.dialog.request(method, body, extra)
        self.c.service.send_request(req, self.dialog.dest, self)

    def hangup(self) -> None:
        """End this leg whatever its state: BYE, CANCEL, or a final response."""
        if self.state == "ended":
            return
        if self.dialog is not None and self.state == "confirmed":
            self.send_in_dialog("BYE")
        elif (
            self.side == "b" and self.invite is not None and isinstance(self.invite_txn, ClientTxn)
        ):
            if self.invite_txn.state in ("calling", "proceeding"):
                self.c.service.send_request(cancel_for(self.invite), self.invite_txn.dest, self)
        elif self.side == "a" and isinstance(self.invite_txn, ServerTxn) and not self.final_sent:
            self.final_sent = True
            self.c.service.reply(self.invite_txn, 487, to_tag=self.local_tag)
        self.state = "ended"
        self._stop_session_timer()
        if self.dialog is not None:
            self.c.service.remove_dialog(self.dialog.call_id, self.dialog.local_tag)
        self.release_media()

    # -- session timers (RFC 4028) --

    def start_session_timer(self, interval: int, we_refresh: bool) -> None:
        self._stop_session_timer()
        if interval <= 0:
            return
        self.session_interval = interval
        loop = asyncio.get_running_loop()
        if we_refresh:
            self.session_timer = loop.call_later(interval / 2, self._refresh_session)
        else:
            # §10: without a refresh, BYE before the interval runs out (minus min(32, I/3))
            self.session_timer = loop.call_later(
                interval - min(32, interval / 3), self._session_expired
            )

    def _stop_session_timer(self) -> None:
        if self.session_timer is not None:
            self.session_timer.cancel()
            self.session_timer = None

    def _refresh_session(self) -> None:
        if self.state != "confirmed" or self.dialog is None:
            return
        self.send_in_dialog(
            "UPDATE",
            extra=[
                ("session-expires", f"{self.session_interval};refresher=uac"),
                ("supported", "timer"),
            ],
        )
        self.start_session_timer(self.session_interval, True)

    def _session_expired(self) -> None:
        log.info("session timer expired", extra={"call": self.call.id, "side": self.side})
        self.call.end_from(self, "session-expired")

    # -- from the peer --

    def on_cancel(self, cancel: Request) -> None:
        self.call.cancelled()

    def on_ack_timeout(self, txn: ServerTxn) -> None:
        if self.pending_reinvite is txn:
            self.pending_reinvite = None
            return
        log.warning("2xx never acknowledged", extra={"call": self.call.id, "side": self.side})
        self.call.end_from(self, "ack-timeout")

    def on_ack(self, req: Request, source: Addr) -> None:
        if (
            self.pending_reinvite is not None
            and req.cseq[0] == self.pending_reinvite.request.cseq[0]
        ):
            self.pending_reinvite = None
        if req.body and self.media is not None:  # answer to the offer in our 2xx (delayed offer)
            try:
                _, agreed = sdp.choose_audio(sdp.Sdp.parse(req.body), srtp=self.srtp)
                self.apply_remote(agreed)
            except sdp.SdpError as e:
                log.warning("bad SDP in ACK", extra={"call": self.call.id, "error": str(e)})
                self.call.end_from(self, "bad-sdp")

    def on_request(self, req: Request, source: Addr, txn: ServerTxn) -> None:
        svc = self.c.service
        d = self.dialog
        if d is None or self.state == "ended":
            svc.reply(txn, 481)
            return
        if not d.accepts(req):
            svc.reply(txn, 500, "Server Internal Error (CSeq out of order)")
            return
        m = req.method
        if self.side == "a" and m != "ACK":
            svc.txn.implicit_ack(d.call_id, self.invite_cseq)
        if m == "BYE":
            svc.reply(txn, 200)
            self.state = "ended"
            self.call.end_from(self, "caller-hangup" if self.side == "a" else "agent-hangup")
        elif m in ("INVITE", "UPDATE"):
            self._reinvite(req, txn)
        elif m == "OPTIONS":
            svc.reply(txn, 200, headers=[("allow", ALLOW), ("supported", SUPPORTED)])
        elif m == "INFO":
            svc.reply(txn, 200)
        elif m == "REFER":
            self.call.refer(self, req, txn)
        elif m == "NOTIFY":
            svc.reply(txn, 200)
        else:
            svc.reply(txn, 405, headers=[("allow", ALLOW)])

    def _reinvite(self, req: Request, txn: ServerTxn) -> None:
        """Hold, resume, remote-target refresh, session refresh (§14, RFC 3264 §8.4, RFC 4028)."""
        svc = self.c.service
        assert self.dialog is not None
        if self.pending_reinvite is not None and req.method == "INVITE":
            svc.reply(txn, 491)  # §14.2: one INVITE at a time in a dialog
            return
        self.dialog.refresh_target(req)
        body = b""
        if req.body:
            try:
                offer = sdp.Sdp.parse(req.body)
                _, agreed = sdp.choose_audio(offer, srtp=self.srtp)
            except sdp.SdpError as e:
                svc.reply(txn, 488, f"Not Acceptable Here ({e})"[:100])
                return
            held = agreed.direction in ("sendonly", "inactive")
            if held != self.held:
                self.held = held
                self.sdp_session = (self.sdp_session[0], self.sdp_session[1] + 1)
                self.c.events.publish(
                    CallHeld(
                        self.call.id, "caller" if self.side == "a" else "agent", held, svc.now()
                    )
                )
            body, agreed = sdp.answer(
                svc.host,
                self.port,
                offer,
                session=self.sdp_session,
                srtp=self.srtp,
                srtp_key=self.local_key(),
            )
            self.apply_remote(agreed)
        elif req.method == "INVITE":
            body = self.our_sdp()  # offerless re-INVITE: we offer, the ACK answers
        headers = [("contact", self.dialog.contact), ("supported", SUPPORTED)]
        se = _session_expires(req)
        if se is not None:
            interval, refresher = se
            headers.append(("session-expires", f"{interval};refresher={refresher}"))
            headers.append(("require", "timer"))
            self.start_session_timer(interval, refresher == "uas")
        resp = make_response(req, 200, to_tag=self.dialog.local_tag)
        resp.headers.extend(headers)
        if body:
            resp.headers.append(("content-type", "application/sdp"))
            resp.body = body
        if req.method == "INVITE":
            self.pending_reinvite = txn
        svc.respond(txn, resp)

    # -- responses to what we sent --

    def on_response(self, resp: Response, txn: ClientTxn) -> None:
        method = txn.request.method
        if txn is self.invite_txn:
            self.call.b_response(self, resp, txn)
        elif method == "INVITE" and 200 <= resp.status < 300 and self.dialog is not None:
            # our own re-INVITE answered: ACK it
            ack = self.dialog.ack(resp.cseq[0])
            self.c.service.send_stateless(ack, self.dialog.dest)

    def on_timeout(self, txn: ClientTxn) -> None:
        if txn is self.invite_txn:
            self.call.b_response(self, make_response(txn.request, 408), txn)
        elif txn.request.method in ("INVITE", "UPDATE", "BYE") and self.state == "confirmed":
            # §12.2.1.2: a request inside a dialog that times out ends the dialog
            self.call.end_from(self, "timeout")


def _session_expires(req: Request) -> tuple[int, str] | None:
    value = req.get("session-expires")
    if value is None:
        return None
    num, _, rest = value.partition(";")
    if not num.strip().isdigit():
        return None
    refresher = parse_params(rest).get("refresher") or "uac"
    return int(num.strip()), refresher


class Call:
    def __init__(
        self, ctl: CallController, req: Request, origin: Origin, ani: str, dnis: str
    ) -> None:
        self.ctl = ctl
        self.id = next(_call_ids)
        self.origin = origin
        self.ani = ani
        self.dnis = dnis
        self.a = Leg(self, "a")
        self.b: Leg | None = None
        self.room: int | None = None
        self.state = "routing"  # routing, ringing, answered, ended
        self.started = ctl.service.now()
        self.answered_at: float | None = None
        self.ring_timer: asyncio.TimerHandle | None = None
        self.key = (req.call_id, req.from_.tag or "")
        self.transfer: Leg | None = None  # a blind-transfer target being rung
        self.ivr: IvrRunner | None = None
        self.queue: str | None = None  # the ACD queue the caller waits in (or was served from)
        self.served = False  # an operator from the queue answered
        # for the CDR: wall-clock moments of the call's path, and who it was
        self.sip_call_id = req.call_id
        self.arrived_at = dt.datetime.now(dt.UTC)
        self.ivr_ended_at: dt.datetime | None = None
        self.queued_at: dt.datetime | None = None
        self.offered_at: dt.datetime | None = None
        self.agent_answered_at: dt.datetime | None = None
        self.agent: str | None = None
        self.flow: str | None = None
        self.customer_id: int | None = None
        # The identified customer's manager, then last operator: offered the call first.
        self.preferred: list[str] = []
        self.customer: dict[str, Any] = {}
        self.waited_ms: int | None = None
        self.recording: int | None = None
        self.recording_path: str | None = None

    # --- arrival ---

    async def start(self, req: Request, source: Addr, txn: ServerTxn) -> None:
        svc = self.ctl.service
        a = self.a
        a.invite, a.invite_txn, a.dest = req, txn, source
        a.invite_cseq, a.call_id = req.cseq[0], req.call_id
        txn.user = a
        offer: sdp.Sdp | None = None
        a.srtp = self.ctl.srtp_policy(self.origin.trunk, source)
        if a.srtp == "required" and not req.body:
            self._fail_a(488, "Not Acceptable Here (SRTP required: offer it)", "bad-sdp")
            return
        if req.body:
            try:
                offer = sdp.Sdp.parse(req.body)
                _, agreed = sdp.choose_audio(offer, srtp=a.srtp)
            except sdp.SdpError as e:
                self._fail_a(488, f"Not Acceptable Here ({e})"[:100], "bad-sdp")
                return
        law, dtmf_pt = (agreed.law, agreed.dtmf_pt) if offer is not None else ("PCMU", 101)
        try:
            a.allocate_media(law, dtmf_pt)
        except Exception as e:  # no RTP port or descriptor left: the caller must hear so
            log.error("no media for a new call", extra={"call": self.id, "error": str(e)})
            a.final_sent = True
            svc.reply(
                txn,
                503,
                "Service Unavailable (no media resources)",
                to_tag=a.local_tag,
                headers=[("retry-after", "5")],
            )
            a.state = "ended"
            self._finish("no-resources", 503)
            return
        if offer is not None:
            a.apply_remote(agreed)
        a.offer = offer
        self.ctl.events.publish(
            CallArrived(
                self.id,
                self.ani,
                self.dnis,
                self.origin.trunk.name if self.origin.trunk else f"agent:{self.origin.agent}",
                self.started,
            )
        )
        reason = await self._screen()
        if reason is not None:
            log.info("caller refused: blacklisted", extra={"call": self.id, "ani": self.ani})
            self._fail_a(603, "Decline", "blacklisted")
            return
        await self._identify()
        try:
            decision = await self.ctl.router.route(self)
        except Exception:
            log.exception("routing failed", extra={"call": self.id})
            decision = Reject(500)
        if self.state == "ended":
            return  # cancelled while routing
        if isinstance(decision, Reject):
            self._fail_a(decision.status, decision.reason, "rejected")
            return
        if isinstance(decision, RunFlow):
            self._start_ivr(decision.flow)
            return
        if isinstance(decision, RingTrunk):
            trunk = next((t for t in svc.trunks if t.name == decision.trunk), None)
            if trunk is None:
                self._fail_a(500, None, "failed")
                return
            self.b = self.ring_trunk(trunk, decision.number)
        else:
            self.b = self.ring(decision.user)
        if self.b is None:
            self._fail_a(480, "Temporarily Unavailable (not registered)", "not-registered")
            return
        self.state = "ringing"
        loop = asyncio.get_running_loop()
        self.ring_timer = loop.call_later(self.ctl.ring_timeout, self._ring_timeout)
        svc.stats["calls_started"] += 1

    def _start_recording(self, caller: int, operator: int) -> None:
        """Contact-center calls are recorded from the operator's answer (the flow said so):
        the caller on the left channel, the operator on the right."""
        deps = self.ctl.ivr
        if deps is None or deps.recordings_dir is None:
            return
        day = self.arrived_at.strftime("%Y/%m/%d")
        path = (
            deps.recordings_dir
            / day
            / f"{self.arrived_at:%H%M%S}-{self.id}-{self.ani or 'anon'}.wav"
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.recording = self.ctl.media.start_recording(path, caller, operator)
            self.recording_path = str(path)
        except Exception as e:  # the call goes on unrecorded; the CDR says so (no path)
            log.error("recording not started", extra={"call": self.id, "error": str(e)})

    async def _screen(self) -> str | None:
        """The blacklist, before anything is said or anyone is rung (trunk calls only)."""
        deps = self.ctl.ivr
        if deps is None or deps.pool is None or not self.ani or self.origin.trunk is None:
            return None
        try:
            async with deps.pool.connection() as conn:
                return await screening.blacklisted(conn, self.ani)
        except Exception as e:  # the database is away: serve the call rather than refuse it
            log.warning("blacklist not checked", extra={"call": self.id, "error": str(e)})
            return None

    async def _identify(self) -> None:
        """ANI → the customer, before the IVR (one match only; several are for the desktop)."""
        deps = self.ctl.ivr
        if deps is None or deps.pool is None or not self.ani or self.origin.trunk is None:
            return
        try:
            async with deps.pool.connection() as conn:
                matches = await crm_store.identify_by_ani(conn, self.ani, self.origin.trunk.country)
        except Exception as e:
            log.warning("caller not identified", extra={"call": self.id, "error": str(e)})
            return
        if len(matches) == 1:
            m = matches[0]
            self.customer_id = m.customer_id
            self.customer = {
                "customer_id": m.customer_id,
                "customer_name": m.name,
                "segment": m.segment or "",
            }
            try:
                async with deps.pool.connection() as conn:
                    self.preferred = await crm_store.preferred_extensions(conn, m.customer_id)
            except Exception as e:
                log.warning("preferred operators unknown", extra={"call": self.id, "error": str(e)})

    def _start_ivr(self, flow: Flow) -> None:
        """Answer the caller and hand the call to the flow (the IVR speaks on leg A)."""
        svc = self.ctl.service
        self._answer_a()
        self.state = "ivr"
        self.answered_at = svc.now()
        svc.stats["calls_ivr"] += 1
        assert self.a.media is not None and self.ctl.ivr is not None
        self.flow = flow.name
        session = Session(
            flow, {"ani": self.ani, "dnis": self.dnis, "call_id": self.id, **self.customer}
        )
        self.ivr = IvrRunner(self, session, self.ctl.ivr, self.a.media)
        self.ivr.start()

    # --- the ACD's side (ccorch.acd.service.CallSide) ---

    def enqueue(self, queue: str, priority: int, prefer_seconds: float = 0.0) -> bool:
        acd = self.ctl.acd
        if acd is None or self.state != "ivr":
            return False
        self.queue = queue
        self.state = "queued"
        self.ivr_ended_at = self.queued_at = dt.datetime.now(dt.UTC)
        preferred = [(ext, prefer_seconds) for ext in self.preferred] if prefer_seconds else []
        return acd.enqueue(self, queue, priority, preferred)

    def estimated_wait(self) -> float | None:
        return self.ctl.acd.estimated_wait(self) if self.ctl.acd is not None else None

    def queue_position(self) -> int | None:
        return self.ctl.acd.position(self) if self.ctl.acd is not None else None

    def offer_to_agent(self, extension: str, queue: str) -> bool:
        """The ACD chose ``extension`` for this call: ring its phone (the ACD's offer
        deadline, not ours, decides when it stops ringing)."""
        if self.state != "queued":
            return False
        leg = self.ring(extension)
        if leg is None:
            return False
        self.b = leg
        self.state = "ringing"
        self.offered_at = dt.datetime.now(dt.UTC)
        return True

    def revoke_offer(self, extension: str) -> None:
        if self.state == "ringing" and self.b is not None and self.b.target == extension:
            self.b.hangup()
            self.b = None
            self.state = "queued"

    def withdraw_from_queue(self) -> None:
        """The waiting caller chose one of the queue's options (voicemail, callback): the
        ACD lets the call go as withdrawn and the flow continues (``left_queue``)."""
        if self.state in ("queued", "ringing") and self.ctl.acd is not None:
            self.ctl.acd.withdraw(self)

    def left_queue(self, outcome: str, waited_ms: int) -> None:
        self.waited_ms = waited_ms
        if outcome == "answered":
            return
        log.info(
            "call left the queue",
            extra={"call": self.id, "outcome": outcome, "waited_ms": waited_ms},
        )
        if self.state in ("queued", "ringing") and self.ivr is not None:
            if self.b is not None:
                self.b.hangup()
                self.b = None
            self.state = "ivr"
            self.ivr.queue_left(outcome)

    def transfer_from_ivr(self, to: str) -> bool:
        """The flow sends the caller to an extension (a registered phone) or an outside
        number (through the outbound trunk): ring it; False if it cannot ring."""
        if self.state != "ivr":
            return False
        leg = self.ring(to)
        if leg is None and to.lstrip("+").isdigit() and len(to.lstrip("+")) > 4:
            trunk = next(
                (t for t in self.ctl.service.trunks if t.outbound and t.up is not False), None
            )
            if trunk is not None:
                leg = self.ring_trunk(trunk, to)
        if leg is None:
            return False
        self.b = leg
        self.state = "ringing"
        self.ring_timer = asyncio.get_running_loop().call_later(
            self.ctl.ring_timeout, self._ring_timeout
        )
        return True

    def ring(self, user: str) -> Leg | None:
        """Ring ``user``'s best registered contact (forking to all is left for later)."""
        svc = self.ctl.service
        bindings = svc.registrar.lookup(svc.now(), user)
        if not bindings:
            return None
        b = bindings[0]
        dest = registrar.target(b, svc.transports.connected)
        return self._invite_out(
            user,
            Uri.parse(b.contact),
            dest,
            f"<sip:{user}@{svc.host}>",
            srtp=self.ctl.srtp_policy(None, dest),
        )

    def ring_trunk(self, trunk: Trunk, number: str) -> Leg | None:
        """Call ``number`` through ``trunk`` (its credentials answer a 401/407)."""
        uri = Uri.parse(trunk.request_uri(number))
        leg = self._invite_out(
            number, uri, trunk.addr, f"<{uri}>", codecs=trunk.codecs, srtp=trunk.srtp
        )
        if leg is not None:
            leg.trunk = trunk
        return leg

    def _invite_out(
        self,
        target: str,
        uri: Uri,
        dest: Addr,
        to: str,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        srtp: str = "off",
    ) -> Leg | None:
        """INVITE ``target``; None when no media could be had for the leg (nothing sent)."""
        svc = self.ctl.service
        leg = Leg(self, "b")
        leg.target = target
        leg.srtp = srtp
        try:
            leg.allocate_media(codecs[0], 101)
        except Exception as e:
            log.error("no media for an outgoing leg", extra={"call": self.id, "error": str(e)})
            return None
        leg.dest = dest
        a_from = self.a.invite.from_ if self.a.invite is not None else None
        display = a_from.display if a_from and a_from.display else None
        caller = f"{quote(display)} " if display else ""
        call_id = new_call_id(svc.host)
        body = leg.our_sdp(codecs=codecs)
        headers = [
            (
                "via",
                f"SIP/2.0/{dest.transport} {svc.via_host(dest.transport)};branch={new_branch()};rport",
            ),
            ("max-forwards", "70"),
            ("from", f"{caller}<sip:{self.ani or 'anonymous'}@{svc.host}>;tag={leg.local_tag}"),
            ("to", to),
            ("call-id", call_id),
            ("cseq", "1 INVITE"),
            ("contact", svc.contact(dest.transport)),
            ("allow", ALLOW),
            ("supported", SUPPORTED),
            ("content-type", "application/sdp"),
        ]
        if self.ctl.session_expires:
            headers.append(("session-expires", str(self.ctl.session_expires)))
        req = Request("INVITE", uri, headers, body)
        leg.invite = req
        leg.call_id = call_id
        leg.state = "early"
        leg.invite_txn = svc.send_request(req, dest, leg)
        svc.add_dialog(call_id, leg.local_tag, leg)
        self.ctl.events.publish(CallRinging(self.id, target, svc.now()))
        return leg

    # --- the B side ---

    def b_response(self, leg: Leg, resp: Response, txn: ClientTxn) -> None:
        svc = self.ctl.service
        status = resp.status
        if status < 200:
            if status in (180, 183) and leg is self.b and self.state == "ringing":
                self._a_provisional(180)
            return
        if 200 <= status < 300:
            if leg.dialog is None:
                leg.dialog = Dialog.as_uac(txn.request, resp, leg.dest or txn.dest)
            ack = leg.dialog.ack(resp.cseq[0])
            svc.send_stateless(ack, leg.dialog.dest)
            if leg.state == "confirmed":
                return  # a 2xx retransmission: the ACK above was all it needed
            if leg.state == "ended" or self.state == "ended":
                leg.state = "confirmed"  # answered after we gave up: hang it up at once
                leg.hangup()
                return
            leg.state = "confirmed"
            leg.invite = leg.invite_txn = None  # a 2xx resent later is ACKed from the dialog
            try:
                _, agreed = sdp.choose_audio(sdp.Sdp.parse(resp.body), srtp=leg.srtp)
                if leg.srtp != "off" and agreed.crypto is not None and agreed.crypto.tag != 1:
                    raise sdp.SdpError("the answer's a=crypto tag is not our offer's")
                leg.apply_remote(agreed)
            except sdp.SdpError as e:
                log.warning("agent answered with bad SDP", extra={"call": self.id, "error": str(e)})
                leg.hangup()
                self._b_failed(leg, 488)
                return
            se = resp.get("session-expires")
            if se is not None:
                num, _, rest = se.partition(";")
                if num.strip().isdigit():
                    refresher = parse_params(rest).get("refresher") or "uac"
                    leg.start_session_timer(int(num.strip()), refresher == "uac")
            if leg.refer_from is not None:
                self._transfer_answered(leg)
            elif leg is self.b:
                self._answered(leg)
            return
        if leg.state == "ended":
            return
        if (
            status in (401, 407)
            and leg.trunk is not None
            and not leg.auth_tried
            and self._authenticate_out(leg, resp, txn)
        ):
            return
        leg.state = "ended"
        leg.release_media()
        svc.remove_dialog(txn.request.call_id, leg.local_tag)
        self._b_failed(leg, status)

    def _authenticate_out(self, leg: Leg, resp: Response, txn: ClientTxn) -> bool:
        """Answer a trunk's challenge once: the same INVITE, next CSeq, with credentials."""
        trunk = leg.trunk
        assert trunk is not None
        proxy = resp.status == 407
        challenge = resp.get("proxy-authenticate" if proxy else "www-authenticate")
        if challenge is None or not trunk.username:
            return False
        leg.auth_tried = True
        old = txn.request
        cseq = old.cseq[0] + 1
        headers = [(k, v) for k, v in old.headers if k not in ("via", "cseq")]
        headers.insert(
            0,
            (
                "via",
                f"SIP/2.0/{txn.dest.transport} {self.ctl.service.via_host(txn.dest.transport)};branch={new_branch()};rport",
            ),
        )
        headers.append(("cseq", f"{cseq} INVITE"))
        headers.append(
            (
                "proxy-authorization" if proxy else "authorization",
                digest.authorization(
                    challenge, "INVITE", old.uri_text, trunk.username, trunk.password
                ),
            )
        )
        req = Request("INVITE", old.uri_text, headers, old.body)
        leg.invite = req
        leg.invite_txn = self.ctl.service.send_request(req, txn.dest, leg)
        return True

    def _b_failed(self, leg: Leg, status: int) -> None:
        if leg.refer_from is not None:
            self._transfer_failed(leg, status)
            return
        if leg is not self.b or self.state != "ringing":
            return
        self._cancel_ring_timer()
        if self.queue is not None and self.ctl.acd is not None and not self.served:
            # the operator did not take it: back to its place in the queue, music goes on
            self.b = None
            self.state = "queued"
            self.ctl.acd.not_answered(self)
            return
        if self.ivr is not None:  # a transfer from the IVR failed: back to the flow
            self.b = None
            self.state = "ivr"
            self.ivr.transfer_failed()
            return
        reason = {
            486: "busy",
            600: "busy",
            603: "declined",
            408: "no-answer",
            487: "no-answer",
        }.get(status, "failed")
        self._fail_a(_FAIL_STATUS.get(status, 480), None, reason)

    def _answered(self, b: Leg) -> None:
        svc = self.ctl.service
        a = self.a
        self._cancel_ring_timer()
        assert a.media is not None and b.media is not None
        if self.ivr is not None:  # the caller leaves the IVR for the agent
            self.ivr.stop()
            self.ivr = None
            if self.ivr_ended_at is None:
                self.ivr_ended_at = dt.datetime.now(dt.UTC)
            self.ctl.media.stop_playback(a.media)
        self.room = self.ctl.media.bridge(a.media, b.media)
        if self.queue is not None and self.ctl.acd is not None and not self.served:
            self.served = True
            self.ctl.acd.answered(self)
        self.agent = b.target
        self.agent_answered_at = dt.datetime.now(dt.UTC)
        if self.flow is not None and self.recording is None:
            self._start_recording(a.media, b.media)
        if a.state != "confirmed":
            self._answer_a()
        self.state = "answered"
        if self.answered_at is None:
            self.answered_at = svc.now()
        svc.stats["calls_answered"] += 1
        self.journal()
        self.ctl.events.publish(CallAnswered(self.id, b.target, svc.now()))

    def _answer_a(self) -> None:
        """200 OK to the caller with our SDP answer: the call is up on our side."""
        svc = self.ctl.service
        a = self.a
        body = a.our_sdp(a.offer)
        assert a.invite is not None and isinstance(a.invite_txn, ServerTxn)
        resp = make_response(a.invite, 200, to_tag=a.local_tag)
        contact = svc.contact(a.dest.transport if a.dest else "UDP")
        resp.headers += [
            ("contact", contact),
            ("allow", ALLOW),
            ("supported", SUPPORTED),
            ("content-type", "application/sdp"),
        ]
        se = _session_expires(a.invite)
        if se is not None and self.ctl.session_expires:
            interval = max(se[0], self.ctl.min_se)
            resp.headers += [("session-expires", f"{interval};refresher=uac"), ("require", "timer")]
            a.start_session_timer(interval, False)
        resp.body = body
        a.final_sent = True
        svc.respond(a.invite_txn, resp)
        a.dialog = Dialog.as_uas(
            a.invite,
            resp,
            a.dest or a.invite_txn.source,
            contact,
            svc.via_host(a.dest.transport if a.dest else "UDP"),
        )
        a.state = "confirmed"
        # the dialog has all it needs from here on: let the INVITE and its offer go
        # (an established call keeps a few KiB, not the messages that set it up)
        a.invite = a.invite_txn = a.offer = None
        self.journal()

    def _a_provisional(self, status: int) -> None:
        a = self.a
        if isinstance(a.invite_txn, ServerTxn) and not a.final_sent:
            self.ctl.service.reply(a.invite_txn, status, to_tag=a.local_tag)

    def _ring_timeout(self) -> None:
        self.ring_timer = None
        if self.state != "ringing" or self.b is None:
            return
        log.info("no answer", extra={"call": self.id, "target": self.b.target})
        self.b.hangup()
        if self.ivr is not None:
            self.b = None
            self.state = "ivr"
            self.ivr.transfer_failed()
            return
        self._fail_a(480, "Temporarily Unavailable (no answer)", "no-answer")

    def _cancel_ring_timer(self) -> None:
        if self.ring_timer is not None:
            self.ring_timer.cancel()
            self.ring_timer = None

    # --- ends ---

    def _fail_a(self, status: int, reason: str | None, why: str) -> None:
        a = self.a
        if isinstance(a.invite_txn, ServerTxn) and not a.final_sent:
            a.final_sent = True
            self.ctl.service.reply(a.invite_txn, status, reason, to_tag=a.local_tag)
        a.state = "ended"
        self._finish(why, status)

    def cancelled(self) -> None:
        if self.state in ("answered", "ended"):
            return
        self._cancel_ring_timer()
        if self.b is not None:
            self.b.hangup()
        self._fail_a(487, None, "cancelled")

    def end_from(self, leg: Leg, reason: str) -> None:
        """``leg``'s side ended (BYE, timeout): hang up every other leg and finish."""
        if self.state == "ended":
            return
        for other in (self.a, self.b, self.transfer):
            if other is not None and other is not leg:
                other.hangup()
        leg.hangup() if leg.state != "ended" else leg.release_media()
        if leg.dialog is not None:
            self.ctl.service.remove_dialog(leg.dialog.call_id, leg.dialog.local_tag)
        self._finish(reason, 200 if self.answered_at is not None else 487)

    def _finish(self, reason: str, status: int) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self._cancel_ring_timer()
        if self.ivr is not None:
            self.ivr.stop()
        if self.recording is not None:
            try:
                self.ctl.media.stop_recording(self.recording)  # finalized before the legs go
            except Exception as e:
                log.error("recording not stopped", extra={"call": self.id, "error": str(e)})
            self.recording = None
        if self.queue is not None and self.ctl.acd is not None:
            if self.served:
                self.ctl.acd.call_ended(self)  # the operator goes to wrap-up
            else:
                self.ctl.acd.caller_gone(self)  # an abandon, with its wait
        svc = self.ctl.service
        now = svc.now()
        talk = now - self.answered_at if self.answered_at is not None else 0.0
        ended = dt.datetime.now(dt.UTC)
        if self.ivr is not None and self.ivr_ended_at is None:
            self.ivr_ended_at = ended
        svc.stats[f"calls_ended_{reason}"] += 1
        self.ctl.events.publish(CallEnded(self.id, reason, status, now, talk))
        sink = self.ctl.cdrs
        if sink is None:
            self._release()
        else:
            # The record is committed (or spooled) before the call's media goes.
            svc.spawn(self._commit_then_release(sink, self._record(reason, status, ended)))

    def journal(self) -> None:
        """Keep what a restart needs to close this call if the node dies while it is up."""
        journal = self.ctl.journal
        if journal is None or self.state == "ended":
            return
        dialogs = [
            SavedDialog.of(leg.dialog, leg.side, leg.target)
            for leg in (self.a, self.b, self.transfer)
            if leg is not None and leg.dialog is not None and leg.state == "confirmed"
        ]
        try:
            journal.save(self._record("up", 200, dt.datetime.now(dt.UTC)), dialogs)
        except OSError as e:  # a full disk must not take the call down with it
            log.error("call not journaled", extra={"call": self.id, "error": str(e)})

    def _record(self, reason: str, status: int, ended: dt.datetime) -> cdr.Cdr:
        operator_talk = (
            (ended - self.agent_answered_at).total_seconds() if self.agent_answered_at else 0.0
        )
        return cdr.Cdr(
            call_ref=self.id,
            sip_call_id=self.sip_call_id,
            ani=self.ani,
            dnis=self.dnis,
            origin=self.origin.trunk.name if self.origin.trunk else f"agent:{self.origin.agent}",
            flow=self.flow,
            queue=self.queue,
            agent=self.agent,
            customer_id=self.customer_id,
            outcome=reason,
            status=status,
            arrived_at=self.arrived_at,
            ivr_ended_at=self.ivr_ended_at,
            queued_at=self.queued_at,
            offered_at=self.offered_at,
            answered_at=self.agent_answered_at,
            ended_at=ended,
            waited_ms=self.waited_ms,
            talk_seconds=operator_talk,
            recording_path=self.recording_path,
        )

    async def _commit_then_release(self, sink: cdr.CdrSink, record: cdr.Cdr) -> None:
        try:
            await sink.commit(record)
        finally:
            self._release()

    def _release(self) -> None:
        """Frees what the ended call held: its RTP legs, room and dialogs."""
        svc = self.ctl.service
        for leg in (self.a, self.b, self.transfer):
            if leg is not None:
                leg._stop_session_timer()
                if leg.state != "confirmed":
                    leg.release_media()
                    if leg.dialog is not None:
                        svc.remove_dialog(leg.dialog.call_id, leg.dialog.local_tag)
                    elif leg.call_id and leg.side == "b":
                        svc.remove_dialog(leg.call_id, leg.local_tag)
        if self.a.call_id:
            svc.remove_dialog(self.a.call_id, self.a.local_tag)
        if self.room is not None:
            try:
                self.ctl.media.destroy_room(self.room)
            except Exception as e:
                log.debug("destroy_room", extra={"error": str(e)})
            self.room = None
        if self.ctl.journal is not None:  # its CDR is in: nothing left to recover
            self.ctl.journal.drop(self.id, self.arrived_at)
        self.ctl.calls.pop(self.key, None)

    # --- transfers (RFC 3515, RFC 3891) ---

    def refer(self, referrer: Leg, req: Request, txn: ServerTxn) -> None:
        svc = self.ctl.service
        refer_to = req.get("refer-to")
        if refer_to is None or self.state != "answered":
            svc.reply(
                txn,
                400 if refer_to is None else 491,
                "Bad Request (no Refer-To)" if refer_to is None else None,
            )
            return
        try:
            target = NameAddr.parse(refer_to).uri
        except ValueError as e:
            svc.reply(txn, 400, f"Bad Request (Refer-To: {e})"[:100])
            return
        other = self.b if referrer is self.a else self.a
        if other is None or other.media is None:
            svc.reply(txn, 481)
            return
        replaces = _header_param(target.headers, "replaces")
        if replaces is not None:
            self._attended(referrer, other, replaces, txn)
            return
        user = target.user or ""
        if user not in svc.accounts:
            svc.reply(txn, 404, "Not Found (no such transfer target)")
            return
        svc.reply(txn, 202, to_tag=None)
        referrer_notify(referrer, 100, "Trying", active=True)
        leg = self.ring(user)
        if leg is None:
            referrer_notify(referrer, 480, "Temporarily Unavailable", active=False)
            return
        leg.refer_from = referrer
        self.transfer = leg

    def _transfer_answered(self, leg: Leg) -> None:
        """The blind-transfer target answered: the far party now talks to it."""
        referrer = leg.refer_from
        assert referrer is not None
        other = self.a if referrer is self.b else self.b
        assert other is not None and other.media is not None and leg.media is not None
        if self.room is not None:
            self.ctl.media.destroy_room(self.room)
        self.room = self.ctl.media.bridge(other.media, leg.media)
        referrer_notify(referrer, 200, "OK", active=False)
        referrer.hangup()
        if referrer is self.b:
            self.b = leg
        else:
            self.a = leg
        leg.refer_from = None
        self.transfer = None
        self.journal()
        self.ctl.events.publish(CallTransferred(self.id, leg.target, False, self.ctl.service.now()))

    def _transfer_failed(self, leg: Leg, status: int) -> None:
        referrer = leg.refer_from
        leg.refer_from = None
        self.transfer = None
        if referrer is not None and referrer.state == "confirmed":
            referrer_notify(referrer, status, None, active=False)

    def _attended(self, referrer: Leg, other: Leg, replaces: str, txn: ServerTxn) -> None:
        """Refer-To carries Replaces: connect ``other`` to the far leg of the replaced dialog."""
        svc = self.ctl.service
        call_id, _, params = replaces.strip().partition(";")
        call_id = call_id.strip()
        p = parse_params(params)
        tags = [p.get("to-tag") or "", p.get("from-tag") or ""]
        replaced: Leg | None = None
        for tag in tags:
            d = svc.dialogs.get((call_id, tag))
            if isinstance(d, Leg):
                replaced = d
                break
        if replaced is None or replaced.call.state != "answered":
            svc.reply(txn, 481, "Call/Transaction Does Not Exist (Replaces)")
            return
        call2 = replaced.call
        far = call2.b if replaced is call2.a else call2.a
        if far is None or far.media is None or other.media is None:
            svc.reply(txn, 481)
            return
        svc.reply(txn, 202)
        referrer_notify(referrer, 100, "Trying", active=True)
        # move the far leg of the consultation call into this call
        if call2.room is not None:
            self.ctl.media.destroy_room(call2.room)
            call2.room = None
        if self.room is not None:
            self.ctl.media.destroy_room(self.room)
        self.room = self.ctl.media.bridge(other.media, far.media)
        far.call = self
        if far.media is not None:
            self.ctl.media_legs[far.media] = far
        if call2.a is far:
            call2.a = Leg(call2, "a")
            call2.a.state = "ended"
        else:
            call2.b = None
        referrer_notify(referrer, 200, "OK", active=False)
        referrer.hangup()
        replaced.hangup()
        call2._finish("transferred", 200)
        if referrer is self.b:
            self.b = far
        else:
            self.a = far
        self.ctl.events.publish(CallTransferred(self.id, far.target, True, svc.now()))


def referrer_notify(leg: Leg, status: int, reason: str | None, *, active: bool) -> None:
    """The implicit REFER subscription's NOTIFY with a sipfrag of the transfer's progress."""
    from ccorch.sip.message import REASONS

    frag = f"SIP/2.0 {status} {reason or REASONS.get(status, '')}\r\n".encode()
    state = "active;expires=60" if active else "terminated;reason=noresource"
    leg.send_in_dialog(
        "NOTIFY",
        frag,
        [
            ("event", "refer"),
            ("subscription-state", state),
            ("content-type", "message/sipfrag;version=2.0"),
        ],
    )


def _header_param(headers: str, name: str) -> str | None:
    """A header carried in a URI's ?headers part (Refer-To: <...?Replaces=...>)."""
    for part in headers.split("&"):
        k, _, v = part.partition("=")
        if k.strip().lower() == name:
            return url_unquote(v)
    return None


# --- the controller ------------------------------------------------------------------------


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
        se = _session_expires(req)
        if se is not None and se[0] < self.min_se:
            self.service.reply(txn, 422, headers=[("min-se", str(self.min_se))])
            return
        user = req.uri.user or ""
        trunk = origin.trunk
        dnis = trunk.normalize_number(user) if trunk else user
        ani_user = req.from_.uri.user or ""
        ani = trunk.normalize_number(ani_user) if trunk and ani_user else ani_user
        call = Call(self, req, origin, ani, dnis)
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
            elif isinstance(ev, DtmfDigit | PlaybackFinished):
                leg = self.media_legs.get(ev.leg)
                if leg is not None and leg.call.ivr is not None and leg is leg.call.a:
                    leg.call.ivr.on_media(ev)

    def active_calls(self) -> int:
        return len(self.calls)
