"""A call: two (or, during a transfer or consultation, three) SIP legs whose media meet in
the media engine, never directly.

Leg A is the caller (a trunk, or an agent's phone calling out); leg B is the phone we ring.
This room holds the call's path (routing, IVR, queue, ringing, answer, end) and its CDR;
the legs' SIP is in ``ccorch.calls.leg``, REFER transfers in ``ccorch.calls.transfer``, and
the commands from outside the call (hold, transfer, conference, ...) in
``ccorch.calls.commands``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from typing import TYPE_CHECKING, Any

from ccorch.calls import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallIdentified,
    CallInIvr,
    CallQueued,
    CallRecorded,
    CallRinging,
    campaign,
    cdr,
    commands,
    originate,
    transfer,
)
from ccorch.calls.journal import SavedDialog
from ccorch.calls.leg import Leg, session_expires
from ccorch.calls.routing import Reject, RingTrunk, RunFlow
from ccorch.crm import screen
from ccorch.db.pool import autocommit
from ccorch.errors import MediaError
from ccorch.ivr.flow import Flow
from ccorch.ivr.interpreter import Session
from ccorch.ivr.runner import IvrRunner
from ccorch.sip import digest, registrar, sdp
from ccorch.sip.dialog import Dialog, new_call_id
from ccorch.sip.message import Request, Response, Uri, make_response, parse_params, quote
from ccorch.sip.service import ALLOW, SUPPORTED, Origin
from ccorch.sip.transaction import Addr, ClientTxn, ServerTxn, new_branch
from ccorch.sip.trunks import Trunk

if TYPE_CHECKING:
    from ccorch.calls.campaign import CampaignDial
    from ccorch.calls.controller import CallController

log = logging.getLogger(__name__)

_call_ids = itertools.count(1)

# An operator who sent a caller into a flow (say, to enter a PIN) gets the caller back first
# for so long when the flow queues it again.
RETURN_TO_OPERATOR_SECONDS = 30.0

_FAIL_STATUS = {486: 486, 600: 486, 603: 603, 404: 480, 480: 480, 408: 480}


class Call:
    def __init__(
        self,
        ctl: CallController,
        req: Request | None,
        origin: Origin,
        ani: str,
        dnis: str,
    ) -> None:
        """``req``: the INVITE that brought the call; None for a call the node places
        (an operator's click-to-dial, ``ccorch.calls.originate``)."""
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
        sip_call_id = req.call_id if req is not None else new_call_id(ctl.service.host)
        self.key = (sip_call_id, req.from_.tag or "" if req is not None else "originate")
        self.transfer: Leg | None = None  # a blind-transfer target being rung
        self.ivr: IvrRunner | None = None
        self.queue: str | None = None  # the ACD queue the caller waits in (or was served from)
        self.served = False  # an operator from the queue answered
        # for the CDR: wall-clock moments of the call's path, and who it was
        self.sip_call_id = sip_call_id
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
        self.recording_started = 0.0  # the service clock when recording began
        self.recording_gaps: list[list[int]] = []  # paused stretches, ms from its start
        # the limits this call counts in (its trunks, the phone's address), released at its end
        self.limit_keys: list[str] = []
        # call control (ccorch.calls.commands)
        self.priority = 0  # in the queue (kept when an operator transfers it back)
        self.moh: int | None = None  # the music-on-hold playback on leg A
        self._on_hold_since: float | None = None  # the operator put the customer on hold
        self.hold_seconds = 0.0  # closed stretches of hold
        self.queue_outcome: str | None = None  # how it left its last queue (the ACD's word)
        self.muted = False  # the operator's voice does not reach the customer
        self.consult: Leg | None = None  # the party the operator consults
        # a supervisor's phone in the call: listen, whisper (to the operator) or barge
        self.monitor: Leg | None = None
        self.monitor_mode = "listen"
        self.consult_room: int | None = None  # the operator and the consulted party
        self.third: Leg | None = None  # the third party of a three-way conference
        self.return_to: str | None = None  # the operator who sent the caller into a flow
        self.disposition: str | None = None
        self.note: str | None = None
        self.direction = "in"
        self.outbound_trunk: Trunk | None = None  # a click-to-dial's way out
        self.campaign: CampaignDial | None = None  # a campaign's call (ccorch.calls.campaign)
        self.case_id: int | None = None  # the case the call is about (a callback's)
        self.previous_agents: list[str] = []  # operators who handed the call on
        # for the operator's screen (ccorch.crm.screen): gathered at arrival
        self.ivr_path: list[str] = []
        self.menu_keys: list[str] = []
        self.authorized: bool | None = None
        self.screen: dict[str, Any] = {}

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
        browser = source.transport in ("WS", "WSS")
        if browser:
            # SIP over a WebSocket: a browser's WebRTC offer, answered by the media engine
            # (only from a user the registrar authenticated: the SIP service saw to that)
            if self.origin.agent is None or not req.body:
                self._fail_a(488, "Not Acceptable Here (a WebRTC offer is required)", "bad-sdp")
                return
            try:
                a.allocate_browser_media(req.body)
            except MediaError as e:
                self._fail_a(488, f"Not Acceptable Here ({e})"[:120], "bad-sdp")
                return
        elif req.body:
            try:
                offer = sdp.Sdp.parse(req.body)
                _, agreed = sdp.choose_audio(offer, srtp=a.srtp)
            except sdp.SdpError as e:
                self._fail_a(488, f"Not Acceptable Here ({e})"[:100], "bad-sdp")
                return
        law, dtmf_pt = (agreed.law, agreed.dtmf_pt) if offer is not None else ("PCMU", 101)
        try:
            if not browser:
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
        if await self._look_up_caller():
            log.info("caller refused: blacklisted", extra={"call": self.id, "ani": self.ani})
            self._fail_a(603, "Decline", "blacklisted")
            return
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
            self.start_ivr(decision.flow)
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
            self.recording_started = self.ctl.service.now()
        except Exception as e:  # the call goes on unrecorded; the CDR says so (no path)
            log.error("recording not started", extra={"call": self.id, "error": str(e)})

    async def _look_up_caller(self) -> bool:
        """Before anything is said or anyone is rung (trunk calls): the blacklist (True:
        refused), ANI → the customer (one match only; several are for the desktop), the
        screen pop and the customer's preferred operators, on one connection."""
        deps, trunk = self.ctl.ivr, self.origin.trunk
        if deps is None or deps.pool is None or not self.ani or trunk is None:
            return False
        try:
            async with autocommit(deps.pool) as conn:
                caller = await screen.look_up_caller(conn, self.ani, trunk.country, dt.date.today())
        except Exception as e:  # the database is away: serve the call rather than refuse it
            log.warning("caller not looked up", extra={"call": self.id, "error": str(e)})
            return False
        if caller.blacklisted is not None:
            return True
        self.screen = caller.screen
        if len(caller.matches) == 1:
            m = caller.matches[0]
            self.customer_id = m.customer_id
            self._publish_identified("ani")
            self.customer = {
                "customer_id": m.customer_id,
                "customer_name": m.name,
                "segment": m.segment or "",
            }
            self.preferred = caller.preferred
        return False

    async def _gather_screen(self, customer_id: int | None) -> None:
        """What the operator's screen shows about the caller (``ccorch.crm.screen``)."""
        deps, trunk = self.ctl.ivr, self.origin.trunk
        if deps is None or deps.pool is None or trunk is None:
            return
        try:
            async with deps.pool.connection() as conn:
                self.screen = await screen.about_caller(
                    conn, self.ani, trunk.country, dt.date.today(), customer_id
                )
        except Exception as e:  # the screen is poorer, the call goes on
            log.warning("screen pop not gathered", extra={"call": self.id, "error": str(e)})

    def identified(self, customer_id: int, by: str = "pin") -> None:
        """The flow identified the caller as this customer (a PIN checked, or an account
        number given): the screen shows them."""
        if self.customer_id is None or self.customer_id != customer_id:
            self.customer_id = customer_id
            self.ctl.service.spawn(self._gather_screen(customer_id))
        self._publish_identified(by)

    def identified_by_operator(self, customer_id: int) -> None:
        """The operator says who the caller is (found or just registered): the call's
        record and its interaction name that customer."""
        if self.customer_id != customer_id:
            self.customer_id = customer_id
            self.ctl.service.spawn(self._gather_screen(customer_id))
        self._publish_identified("operator")

    def _publish_identified(self, by: str) -> None:
        assert self.customer_id is not None
        svc = self.ctl.service
        self.ctl.events.publish(
            CallIdentified(self.id, self.customer_id, by, bool(self.authorized), svc.now())
        )

    def ivr_step(self, node: str, kind: str) -> None:
        """The flow entered a node: the path for the screen, and the live stream."""
        self.ivr_path.append(node)
        self.ctl.events.publish(
            CallInIvr(
                self.id,
                self.flow or "",
                node,
                kind,
                list(self.ivr_path),
                list(self.menu_keys),
                self.ctl.service.now(),
            )
        )

    def menu_key(self, digit: str) -> None:
        """A key pressed at a menu (never a PIN's or an entry's digits)."""
        self.menu_keys.append(digit)

    def screen_pop(self, queue: str) -> dict[str, Any]:
        """The offer's screen pop: who calls, from where, about what, and their history."""
        waited = (
            int((dt.datetime.now(dt.UTC) - self.queued_at).total_seconds() * 1000)
            + (self.waited_ms or 0)
            if self.queued_at is not None
            else None
        )
        return {
            "call": self.id,
            # a campaign's call: the customer is the number dialed
            "ani": self.dnis if self.campaign is not None else self.ani,
            "dnis": self.ani if self.campaign is not None else self.dnis,
            "service": self.flow,
            "queue": queue,
            "waited_ms": waited,
            "ivr_path": list(self.ivr_path),
            "authorized": self.authorized,
            **self.screen,
            **(
                {"campaign": campaign.screen_pop(self.campaign)}
                if self.campaign is not None
                else {}
            ),
        }

    def start_ivr(self, flow: Flow) -> None:
        """Answer the caller (if not yet) and hand the call to the flow (the IVR speaks on
        leg A): a new call's service, or an operator's transfer into a flow."""
        svc = self.ctl.service
        if self.a.state != "confirmed":
            self._answer_a()
        self.state = "ivr"
        if self.answered_at is None:
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
        self.priority = priority
        self.served = False
        self.ivr_ended_at = self.queued_at = dt.datetime.now(dt.UTC)
        if self.return_to is not None:  # the operator who sent the caller into this flow
            prefer_seconds = max(prefer_seconds, RETURN_TO_OPERATOR_SECONDS)
        preferred = [(ext, prefer_seconds) for ext in self.preferred] if prefer_seconds else []
        taken = acd.enqueue(self, queue, priority, preferred, waited_ms=self.waited_ms or 0)
        if taken and self.state == "queued":  # (not offered at once)
            self.ctl.events.publish(
                CallQueued(
                    self.id,
                    queue,
                    priority,
                    acd.position(self),
                    acd.estimated_wait(self),
                    self.waited_ms or 0,
                    self.ctl.service.now(),
                )
            )
        return taken

    def estimated_wait(self) -> float | None:
        return self.ctl.acd.estimated_wait(self) if self.ctl.acd is not None else None

    def queue_position(self) -> int | None:
        return self.ctl.acd.position(self) if self.ctl.acd is not None else None

    def offer_to_agent(self, extension: str, queue: str) -> bool:
        """The ACD chose ``extension`` for this call: ring its phone (the ACD's offer
        deadline, not ours, decides when it stops ringing)."""
        if self.state != "queued":
            return False
        # a campaign's customer is waiting on the line: the phone should answer by itself
        leg = (
            self.ring(extension)
            if self.campaign is None
            else self.ring(extension, extra=originate.AUTO_ANSWER, from_user=self.dnis)
        )
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

    @property
    def on_hold(self) -> bool:
        return self._on_hold_since is not None

    @on_hold.setter
    def on_hold(self, held: bool) -> None:
        now = self.ctl.service.now()
        if held and self._on_hold_since is None:
            self._on_hold_since = now
        elif not held and self._on_hold_since is not None:
            self.hold_seconds += now - self._on_hold_since
            self._on_hold_since = None

    def held_seconds(self) -> float:
        """Time on hold so far, the stretch in progress included."""
        since = self._on_hold_since
        return self.hold_seconds + (self.ctl.service.now() - since if since is not None else 0)

    def left_queue(self, outcome: str, waited_ms: int) -> None:
        self.waited_ms = waited_ms
        self.queue_outcome = outcome
        if outcome == "answered":
            return
        if self.campaign is not None and self.ivr is None and self.state in ("queued", "ringing"):
            campaign.left_queue(self, outcome)
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
        elif self.state in ("queued", "ringing"):  # transferred into the queue: no flow
            self.end(f"queue-{outcome}")

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

    def ring(
        self, user: str, extra: tuple[tuple[str, str], ...] = (), from_user: str | None = None
    ) -> Leg | None:
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
            extra=extra,
            from_user=from_user,
        )

    def ring_trunk(self, trunk: Trunk, number: str, from_user: str | None = None) -> Leg | None:
        """Call ``number`` through ``trunk`` (its credentials answer a 401/407); None when
        the trunk is at its limits or no media could be had (nothing was sent)."""
        svc = self.ctl.service
        refused = svc.call_limits.admit(svc.now(), trunk.limit_key, trunk.limit)
        if refused is not None:
            svc.stats["limit_rejects"] += 1
            log.warning(
                "trunk at its limit", extra={"call": self.id, "trunk": trunk.name, "why": refused}
            )
            return None
        uri = Uri.parse(trunk.request_uri(number))
        leg = self._invite_out(
            number,
            uri,
            trunk.addr,
            f"<{uri}>",
            codecs=trunk.codecs,
            srtp=trunk.srtp,
            from_user=from_user,
        )
        if leg is None:
            svc.call_limits.release(trunk.limit_key)
            return None
        leg.trunk = trunk
        self.limit_keys.append(trunk.limit_key)
        return leg

    def _invite_out(
        self,
        target: str,
        uri: Uri,
        dest: Addr,
        to: str,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        srtp: str = "off",
        *,
        from_user: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Leg | None:
        """INVITE ``target``; None when no media could be had for the leg (nothing sent).
        ``from_user``: who the far end sees calling (default: the caller's number)."""
        svc = self.ctl.service
        leg = Leg(self, "b")
        leg.target = target
        leg.srtp = srtp
        try:
            if dest.transport in ("WS", "WSS"):
                leg.allocate_browser_media(None)  # a browser: WebRTC, we offer
            else:
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
            (
                "from",
                f"{caller}<sip:{from_user or self.ani or 'anonymous'}@{svc.host}>"
                f";tag={leg.local_tag}",
            ),
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
        headers.extend(extra)
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
            leg.answered_txn = leg.invite_txn  # until the call ends (``Leg.let_go``)
            leg.invite = leg.invite_txn = None  # a 2xx resent later is ACKed from the dialog
            try:
                if leg.webrtc:
                    leg.take_browser_answer(resp.body)
                else:
                    _, agreed = sdp.choose_audio(sdp.Sdp.parse(resp.body), srtp=leg.srtp)
                    if leg.srtp != "off" and agreed.crypto is not None and agreed.crypto.tag != 1:
                        raise sdp.SdpError("the answer's a=crypto tag is not our offer's")
                    leg.apply_remote(agreed)
            except (sdp.SdpError, MediaError) as e:
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
                transfer.transfer_answered(self, leg)
            elif leg is self.transfer or leg is self.consult or leg is self.monitor:
                commands.target_answered(self, leg)
            elif self.campaign is not None:
                campaign.answered(self, leg)
            elif self.direction == "out":
                originate.answered(self, leg)
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
            transfer.transfer_failed(self, leg, status)
            return
        if leg is self.transfer or leg is self.consult or leg is self.monitor:
            commands.target_failed(self, leg, status)
            return
        if self.campaign is not None and leg is self.a:
            campaign.failed(self, leg, status)
            return
        if self.campaign is not None and self.campaign.agent is not None and leg is self.b:
            campaign.operator_failed(self)
            return
        if self.direction == "out" and self.campaign is None:
            originate.failed(self, leg, status)
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

    def answered(self, b: Leg) -> None:
        self._answered(b)

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
        if self.moh is not None:  # transferred into a queue: the music stops
            self.moh = None
            self.ctl.media.stop_playback(a.media)
        self.return_to = None
        self.room = self.ctl.media.bridge(a.media, b.media)
        if self.queue is not None and self.ctl.acd is not None and not self.served:
            self.served = True
            self.ctl.acd.answered(self)
        self.agent = b.target
        self.agent_answered_at = dt.datetime.now(dt.UTC)
        if self.recording is not None:  # back from a queue or flow: the same file goes on
            self.ctl.media.set_recording_sources(self.recording, a.media, b.media)
        elif self.flow is not None or self.direction == "out":
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
        se = session_expires(a.invite)
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
        a.answered_txn = a.invite_txn  # until the call ends (``Leg.let_go``)
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

    def legs(self) -> list[Leg]:
        """Every leg the call has now: the customer, the operator, a transfer or
        consultation target, a conference's third party."""
        legs = [self.a, self.b, self.transfer, self.consult, self.third, self.monitor]
        return [leg for leg in legs if leg is not None]

    def recording_ms(self) -> int:
        """Milliseconds since the call's recording began."""
        return int((self.ctl.service.now() - self.recording_started) * 1000)

    def end_placed(self, reason: str, status: int) -> None:
        """A call the node placed ended before both sides talked."""
        self._finish(reason, status)

    def end(self, reason: str) -> None:
        """End the call for every party (a flow's hang-up, a command)."""
        self.end_from(self.a, reason)

    def end_from(self, leg: Leg, reason: str) -> None:
        """``leg``'s side ended (BYE, timeout): hang up every other leg and finish."""
        if self.state == "ended":
            return
        if leg is self.consult:
            leg.hangup() if leg.state != "ended" else leg.release_media()
            commands.consult_party_left(self, leg)
            return
        if leg is self.monitor:  # the supervisor hung up: the call goes on
            leg.hangup() if leg.state != "ended" else leg.release_media()
            commands.monitor_left(self, leg)
            return
        if self.third is not None and commands.party_left(self, leg):
            leg.hangup() if leg.state != "ended" else leg.release_media()
            return
        for other in self.legs():
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
        for key in self.limit_keys:  # the trunk's or the phone's count falls at once
            self.ctl.service.call_limits.release(key)
        self.limit_keys.clear()
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
        self.ctl.remember_ended(self)
        self.ctl.events.publish(CallEnded(self.id, reason, status, now, talk))
        sink = self.ctl.cdrs
        if sink is None:  # no records kept (a node without a database): none written
            self.ctl.events.publish(CallRecorded(self.id, None, svc.now()))
            self._release()
        else:
            # The record is committed (or spooled) before the call's media goes.
            svc.spawn(self._commit_then_release(sink, self._record(reason, status, ended)))
        if self.campaign is not None:
            campaign.ended(self)

    def journal(self) -> None:
        """Keep what a restart needs to close this call if the node dies while it is up."""
        journal = self.ctl.journal
        if journal is None or self.state == "ended":
            return
        dialogs = [
            SavedDialog.of(leg.dialog, leg.side, leg.target)
            for leg in self.legs()
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
            agent=self.agent or (self.previous_agents[-1] if self.previous_agents else None),
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
            disposition=self.disposition,
            note=self.note,
            direction=self.direction,
            recording_gaps=[
                [f, t if t >= 0 else self.recording_ms()] for f, t in self.recording_gaps
            ],
            queue_outcome=self.queue_outcome,
            hold_seconds=round(self.held_seconds(), 3),
            case_id=self.case_id,
        )

    async def _commit_then_release(self, sink: cdr.CdrSink, record: cdr.Cdr) -> None:
        try:
            cdr_id = await sink.commit(record)
            self.ctl.events.publish(CallRecorded(self.id, cdr_id, self.ctl.service.now()))
        finally:
            self._release()

    def _release(self) -> None:
        """Frees what the ended call held: its RTP legs, room and dialogs."""
        svc = self.ctl.service
        for leg in self.legs():
            leg.let_go()
            leg._stop_session_timer()
            if leg.ring_timer is not None:
                leg.ring_timer.cancel()
            if leg.state != "confirmed":
                leg.release_media()
                if leg.dialog is not None:
                    svc.remove_dialog(leg.dialog.call_id, leg.dialog.local_tag)
                elif leg.call_id and leg.side == "b":
                    svc.remove_dialog(leg.call_id, leg.local_tag)
        if self.a.call_id:
            svc.remove_dialog(self.a.call_id, self.a.local_tag)
        for room in (self.room, self.consult_room):
            if room is not None:
                try:
                    self.ctl.media.destroy_room(room)
                except Exception as e:
                    log.debug("destroy_room", extra={"error": str(e)})
        self.room = self.consult_room = None
        if self.ctl.journal is not None:  # its CDR is in: nothing left to recover
            self.ctl.journal.drop(self.id, self.arrived_at)
        self.ctl.calls.pop(self.key, None)
        self.ctl.released += 1

    # --- REFER from a phone (``ccorch.calls.transfer``) ---

    def refer(self, referrer: Leg, req: Request, txn: ServerTxn) -> None:
        transfer.refer(self, referrer, req, txn)
