"""One SIP dialog of a call and its media endpoint.

Each leg answers its own peer: CANCEL, BYE, re-INVITE (hold and resume), session-timer
refreshes and OPTIONS are handled per leg; what one side does reaches the other only as
the call's logic (``ccorch.calls.call``) says.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import TYPE_CHECKING

from ccorch.calls import MOS_BUCKETS, CallHeld
from ccorch.errors import MediaError
from ccorch.sip import sdp
from ccorch.sip.dialog import Dialog, cancel_for, new_tag
from ccorch.sip.message import Request, Response, make_response, parse_params
from ccorch.sip.service import ALLOW, SUPPORTED
from ccorch.sip.transaction import Addr, ClientTxn, ServerTxn
from ccorch.sip.trunks import Trunk

if TYPE_CHECKING:
    from ccorch.calls.call import Call
    from ccorch.calls.controller import CallController

log = logging.getLogger(__name__)

_sdp_sessions = itertools.count(1)


class Leg:
    """One SIP dialog of a call and its media endpoint."""

    def __init__(self, call: Call, side: str) -> None:
        self.call = call
        self.side = side  # "a" (caller) or "b" (the phone we ring)
        self.dialog: Dialog | None = None
        self.invite: Request | None = None
        self.invite_txn: ServerTxn | ClientTxn | None = None
        # the answered INVITE's transaction: it passes a resent 2xx (RFC 6026) to this leg
        self.answered_txn: ServerTxn | ClientTxn | None = None
        self.local_tag = new_tag()
        self.dest: Addr | None = None
        self.media: int | None = None
        self.port = 0
        self.agreed: sdp.AudioAnswer | None = None
        self.sdp_session = (next(_sdp_sessions) + 1000, 1)
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
        # a target rung by a command: "transfer" or "consult" (ccorch.calls.commands)
        self.purpose = ""
        self.ring_timer: asyncio.TimerHandle | None = None
        # a browser (its SIP came over a WebSocket): WebRTC media, DTLS-SRTP only; the
        # engine makes and takes its SDP, and its first SDP is kept for the INVITE's answer
        self.webrtc = False
        self.webrtc_first_sdp = b""

    @property
    def c(self) -> CallController:
        return self.call.ctl

    # -- media --

    def allocate_media(self, law: str, dtmf_pt: int | None) -> None:
        self.media, self.port = self.c.media.allocate_leg(self.call.id, law=law, dtmf_pt=dtmf_pt)
        self.c.media_legs[self.media] = self

    def allocate_browser_media(self, offer: bytes | None) -> None:
        """A WebRTC leg answering the browser's ``offer``, or offering when there is none.
        Raises ``MediaError`` with the reason when the SDP is not one a browser leg takes."""
        text = offer.decode("utf-8", "replace") if offer is not None else None
        self.media, self.port, first = self.c.media.allocate_webrtc_leg(self.call.id, text)
        self.webrtc = True
        self.webrtc_first_sdp = first.encode()
        self.c.media_legs[self.media] = self

    def take_browser_answer(self, body: bytes) -> None:
        """The browser's answer to our offer (MediaError when it is not acceptable)."""
        assert self.media is not None
        self.c.media.webrtc_accept_answer(self.media, body.decode("utf-8", "replace"))

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

    def let_go(self) -> None:
        """The call is over: its INVITE transactions answer what still comes for them (a
        resent 2xx or INVITE) without this leg. They live up to 32 s after the answer, and
        while one refers to the leg the whole call stays in memory: at the end of a 15 s
        step at 300 calls/s offered, ~2,500 legs of ended calls were held that way."""
        for txn in (self.invite_txn, self.answered_txn):
            if txn is not None and txn.user is self:
                txn.user = None
        self.answered_txn = None

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
        if self.webrtc:
            assert self.media is not None
            if self.state != "confirmed":  # the INVITE's offer or answer, made at allocation
                return self.webrtc_first_sdp
            return self.c.media.webrtc_offer(self.media, direction).encode()
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
        elif self.invite is not None and isinstance(self.invite_txn, ClientTxn):
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
        if req.body and self.media is not None and self.webrtc:
            try:
                self.take_browser_answer(req.body)
            except MediaError as e:
                log.warning("bad SDP in ACK", extra={"call": self.call.id, "error": str(e)})
                self.call.end_from(self, "bad-sdp")
        elif req.body and self.media is not None:  # answer to our 2xx's offer (delayed offer)
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
        if req.body and self.webrtc:
            assert self.media is not None
            try:
                direction = sdp.Sdp.parse(req.body).audio_direction()
                body = self.c.media.webrtc_accept_offer(
                    self.media, req.body.decode("utf-8", "replace")
                ).encode()
            except (sdp.SdpError, MediaError) as e:
                svc.reply(txn, 488, f"Not Acceptable Here ({e})"[:100])
                return
            self._peer_held(direction in ("sendonly", "inactive"))
        elif req.body:
            try:
                offer = sdp.Sdp.parse(req.body)
                _, agreed = sdp.choose_audio(offer, srtp=self.srtp)
            except sdp.SdpError as e:
                svc.reply(txn, 488, f"Not Acceptable Here ({e})"[:100])
                return
            self._peer_held(agreed.direction in ("sendonly", "inactive"))
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
        se = session_expires(req)
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

    def _peer_held(self, held: bool) -> None:
        """The peer's re-offer put us on hold, or took us off it: say so once."""
        if held == self.held:
            return
        self.held = held
        self.sdp_session = (self.sdp_session[0], self.sdp_session[1] + 1)
        side = "caller" if self.side == "a" else "agent"
        self.c.events.publish(CallHeld(self.call.id, side, held, self.c.service.now()))

    # -- responses to what we sent --

    def on_response(self, resp: Response, txn: ClientTxn) -> None:
        method = txn.request.method
        if txn is self.invite_txn:
            self.call.b_response(self, resp, txn)
        elif method == "INVITE" and 200 <= resp.status < 300 and self.dialog is not None:
            # our own re-INVITE (hold, resume) answered: ACK it, take its answer
            ack = self.dialog.ack(resp.cseq[0])
            self.c.service.send_stateless(ack, self.dialog.dest)
            if resp.body and self.media is not None:
                try:
                    if self.webrtc:
                        self.take_browser_answer(resp.body)
                    else:
                        _, agreed = sdp.choose_audio(sdp.Sdp.parse(resp.body), srtp=self.srtp)
                        self.apply_remote(agreed)
                except (sdp.SdpError, MediaError) as e:  # the old media goes on
                    log.warning("bad SDP answer", extra={"call": self.call.id, "error": str(e)})

    def on_timeout(self, txn: ClientTxn) -> None:
        if txn is self.invite_txn:
            self.call.b_response(self, make_response(txn.request, 408), txn)
        elif txn.request.method in ("INVITE", "UPDATE", "BYE") and self.state == "confirmed":
            # §12.2.1.2: a request inside a dialog that times out ends the dialog
            self.call.end_from(self, "timeout")


def session_expires(req: Request) -> tuple[int, str] | None:
    value = req.get("session-expires")
    if value is None:
        return None
    num, _, rest = value.partition(";")
    if not num.strip().isdigit():
        return None
    refresher = parse_params(rest).get("refresher") or "uac"
    return int(num.strip()), refresher
