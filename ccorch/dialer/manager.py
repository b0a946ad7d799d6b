"""The campaign manager: dials the running campaigns' contacts on real SIP.

Every 250 ms, for each running campaign, the pacer (``ccorch._core.DialerPacer``, fed the
campaign's real events: operators of its queue free, busy, in wrap-up or gone; calls
placed, answered by a person or a machine, connected, abandoned) says how many numbers to
dial; that many due contacts (pending or due for a retry, inside their own calling window,
on no do-not-call list or the blacklist) are claimed in one transaction that also writes
their attempts, and only then dialed: a crash loses no attempt. A broadcast has no
operators: it keeps ``max_lines`` calls up.

What becomes of each call (``ccorch.calls.campaign`` reports it) is written in order by one
writer: the attempt's answer, detection, operator and outcome, then the contact's state
and next attempt by the campaign's retry rules (``ccorch.dialer.rules``). At start, the
attempts a dead run left open are closed (an attempt an operator had taken counts as
connected; any other is tried again at once, not counted against its retries), and the
pacer's abandon ledger is reloaded from the last 30 days of attempts.

Abandon rates (Ofcom's 24 hours, the TSR's 30 days) are abandoned over live answers, from
the attempts themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ccorch._core import DialerPacer
from ccorch.acd import AgentChanged
from ccorch.calls import campaign as campaign_call
from ccorch.calls.campaign import CampaignDial
from ccorch.dialer.callbacks import CallbackAsked
from ccorch.dialer.operator_dialing import OperatorDialing
from ccorch.dialer.rules import CallingRules, Outcome, next_attempt, opening
from ccorch.dialer.settings import DialingSettings
from ccorch.ivr import tts
from ccorch.tasks import cancel_and_wait

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from ccorch.acd.service import AcdService
    from ccorch.calls.controller import CallController
    from ccorch.ivr.flow import Flow
    from ccorch.ivr.store import FlowStore
    from ccorch.sip.trunks import Trunk
    from ccorch.sms.gateway import SmsGateway

log = logging.getLogger(__name__)

TICK = 0.25  # seconds between the pacer's decisions
REFRESH = 2.0  # seconds between reading the campaigns' statuses
DAY_MS = 86_400_000
PRIOR_FALSE_POSITIVES = 0.02  # machines detection passes as people, until measured
# live answers over 30 days before power or predictive pacing (until then one call per free
# operator: the pacer's figures are priors), and before the AMD share is the campaign's own
WARM_UP_LIVE = 50
MONTH_MS = 30 * DAY_MS
# outcomes that end the contact (a person was reached, or heard the broadcast)
REACHED = ("connected", "completed", "confirmed")
OUTCOMES = ("busy", "no_answer", "failed", "machine", "abandoned", "connected", "hung_up",
            "completed", "confirmed", "sent")  # fmt: skip
# an operator's wrap-up codes that change what became of the attempt
DISPOSITIONS = ("answering_machine", "wrong_number")
# retry rules that apply to outcomes without their own: nobody spoke with the person
RETRY_AS: dict[str, Outcome] = {"abandoned": "no_answer", "hung_up": "no_answer"}


# A callback campaign's new contacts: the open callback tasks of callers who left its queue
# (the number they called from, their customer and case), each once, at the time asked and
# for the operator asked (a personal callback).
CALLBACKS_SQL = """
INSERT INTO campaign_contacts (campaign_id, phone, name, time_zone, customer_id, source,
                               source_line, task_id, case_id, next_attempt_at, callback_agent)
SELECT %(campaign)s, t.phone, cu.name, %(tz)s, t.customer_id, 'callback', t.id, t.id, t.case_id,
       CASE WHEN t.due_at > now() THEN t.due_at END, t.agent
  FROM tasks t LEFT JOIN customers cu ON cu.id = t.customer_id
 WHERE t.kind = 'callback' AND t.status = 'open' AND t.queue = %(queue)s
   AND t.phone ~ '^[1-9][0-9]{6,14}$'
   AND NOT EXISTS (SELECT 1 FROM campaign_contacts c
                    WHERE c.campaign_id = %(campaign)s AND c.task_id = t.id)
ON CONFLICT DO NOTHING
"""


def _as_outcome(outcome: str) -> Outcome:
    for known in ("busy", "no_answer", "machine", "failed"):
        if outcome == known:
            return known
    return "failed"  # interrupted and the like: the failed rule's retries


def epoch_ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class Attempt:
    id: int
    contact_id: int
    phone: str
    time_zone: str
    tried: dict[str, int]
    task_id: int | None = None  # a callback's task: done once the customer is reached
    live: bool = False  # a person answered
    resolved: bool = False  # the pacer knows whether it was answered


@dataclass
class CampaignRun:
    """A running campaign in this node: its settings, pacer and calls in flight."""

    id: int
    name: str
    mode: str
    queue: str | None
    survey_id: int | None
    rules: CallingRules
    settings: DialingSettings
    pacer: DialerPacer
    agents: set[int] = field(default_factory=set)
    in_flight: dict[int, Attempt] = field(default_factory=dict)
    abandon_prompt: Path | None = None
    machine_prompt: Path | None = None
    # (ms, "live" | "abandoned") over the last 30 days: the abandon rates
    ledger: deque[tuple[int, str]] = field(default_factory=deque)
    outcomes: Counter[str] = field(default_factory=Counter)  # since this node started
    sms_credit: float = 0.0  # an SMS campaign's messages it may send now (its rate)
    # preview: attempts shown to an operator, not yet dialed (extension, contact, attempt)
    previews: dict[int, tuple[str, dict[str, Any], Attempt]] = field(default_factory=dict)
    stopping: bool = False  # paused or stopped: no new calls, those up go on


class CampaignManager:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        calls: CallController,
        acd: AcdService,
        *,
        flows: FlowStore | None,
        tts_dir: Path,
        clock: Callable[[], dt.datetime],
        time_zone: str = "UTC",
    ) -> None:
        self.pool = pool
        self.calls = calls
        self.acd = acd
        self.flows = flows
        self.tts_dir = tts_dir
        self.clock = clock
        self.time_zone = time_zone  # a callback's calling window is in the center's time
        self.sms: SmsGateway | None = None  # SMS campaigns send through it (set at start)
        self.runs: dict[int, CampaignRun] = {}
        self.holidays: list[dt.date] = []
        self._writes: asyncio.Queue[Callable[[AsyncConnection[Any]], Awaitable[None]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        # calls placed for one operator: previews and personal callbacks
        self.operator = OperatorDialing(self)
        # "call back at" asked during a call, applied when its attempt closes (by attempt)
        self._callbacks_asked: dict[int, CallbackAsked] = {}

    # --- life ---

    async def start(self) -> None:
        await self._recover()
        self._tasks = [
            asyncio.create_task(self._writer(), name="campaign_writer"),
            asyncio.create_task(self._loop(), name="campaign_loop"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._drain()

    def wake(self) -> None:
        """A campaign's status changed (the API): read the statuses now."""
        self._wake.set()

    async def _recover(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE campaign_attempts
                      SET ended_at = now(),
                          outcome = CASE WHEN connected_at IS NOT NULL THEN 'connected'
                                         ELSE 'interrupted' END
                    WHERE ended_at IS NULL
                RETURNING contact_id, outcome"""
            )
            closed = await cur.fetchall()
            for contact_id, outcome in closed:
                if outcome == "connected":
                    await conn.execute(
                        "UPDATE campaign_contacts SET state = 'done', last_outcome = 'connected'"
                        " WHERE id = %s",
                        (contact_id,),
                    )
                else:  # dialed again at once; the interrupted attempt is not held against it
                    await conn.execute(
                        "UPDATE campaign_contacts SET state = 'retry', next_attempt_at = now(),"
                        " last_outcome = 'interrupted' WHERE id = %s AND state = 'dialing'",
                        (contact_id,),
                    )
            # contacts claimed by a run that died before their attempt was written: none
            # (claim and attempt are one transaction), but a stray 'dialing' is freed
            await conn.execute(
                """UPDATE campaign_contacts c SET state = 'retry', next_attempt_at = now()
                    WHERE state = 'dialing' AND NOT EXISTS (
                          SELECT 1 FROM campaign_attempts a
                           WHERE a.contact_id = c.id AND a.ended_at IS NULL)"""
            )
        if closed:
            log.warning("campaign attempts a previous run left open", extra={"n": len(closed)})

    # --- the loop ---

    async def _loop(self) -> None:
        last_refresh = -REFRESH
        loop = asyncio.get_running_loop()
        while True:
            if self._wake.is_set() or loop.time() - last_refresh >= REFRESH:
                self._wake.clear()
                last_refresh = loop.time()
                try:
                    await self._refresh()
                except Exception:
                    log.exception("campaigns not read")
            for run in list(self.runs.values()):
                try:
                    await self._tick(run)
                except Exception:
                    log.exception("campaign tick failed", extra={"campaign": run.id})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)

    async def _refresh(self) -> None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT day FROM holidays WHERE day >= %s", (self.clock().date(),))
            self.holidays = [r["day"] for r in await cur.fetchall()]
            await cur.execute(
                "SELECT id, name, mode, status, queue, survey_id, rules, dialing FROM campaigns"
                " WHERE status = 'running' OR id = ANY(%s)",
                (list(self.runs),),
            )
            rows = await cur.fetchall()
            running = [r for r in rows if r["status"] == "running"]
            for r in running:  # a callback campaign takes its queue's new callback tasks
                if r["queue"] is not None and (r["dialing"] or {}).get("callbacks"):
                    await cur.execute(CALLBACKS_SQL, {"campaign": r["id"], "queue": r["queue"],
                                                      "tz": self.time_zone})  # fmt: skip
            # a number put on a do-not-call list after import is never dialed
            await cur.execute(
                """UPDATE campaign_contacts c SET state = 'dnc'
                    WHERE c.campaign_id = ANY(%s) AND c.state IN ('pending', 'retry')
                      AND EXISTS (SELECT 1 FROM do_not_call d WHERE d.phone = c.phone
                                   AND (d.campaign_id IS NULL OR d.campaign_id = c.campaign_id))""",
                ([r["id"] for r in running],),
            )
        for row in rows:
            run = self.runs.get(row["id"])
            if row["status"] == "running" and run is None:
                run = await self._start_run(row)
                if run is not None:
                    self.runs[row["id"]] = run
            elif row["status"] != "running" and run is not None:
                run.stopping = True
                if not run.in_flight:
                    self.runs.pop(row["id"], None)
            elif run is not None and run.stopping and row["status"] == "running":
                run.stopping = False
        for run in list(self.runs.values()):
            if not run.stopping and not run.in_flight:
                await self._finish_if_done(run)

    async def _finish_if_done(self, run: CampaignRun) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT count(*) FROM campaign_contacts WHERE campaign_id = %s"
                " AND state IN ('pending', 'retry', 'dialing')",
                (run.id,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                await conn.execute(
                    "UPDATE campaigns SET status = 'finished' WHERE id = %s AND status = 'running'",
                    (run.id,),
                )
                self.runs.pop(run.id, None)
                log.info("campaign finished", extra={"campaign": run.id})

    async def _start_run(self, row: dict[str, Any]) -> CampaignRun | None:
        try:
            rules = CallingRules.model_validate(row["rules"])
            settings = DialingSettings.model_validate(row["dialing"])
        except Exception as e:  # stored before a rule changed: the campaign waits, named
            log.error("campaign not started", extra={"campaign": row["id"], "error": str(e)})
            return None
        mode = row["mode"]
        pacer_mode = {"broadcast": "progressive", "sms": "progressive"}.get(mode, mode)
        pacer = DialerPacer(
            pacer_mode,
            ratio=(settings.ratio or 2.0) if mode == "power" else None,
            utc_offset_minutes=0,
            amd_false_positive_share=await self._false_positive_share(row["id"]),
            warm_up_live=WARM_UP_LIVE,
        )
        run = CampaignRun(
            id=row["id"],
            name=row["name"],
            mode=mode,
            queue=row["queue"],
            survey_id=row["survey_id"],
            rules=rules,
            settings=settings,
            pacer=pacer,
        )
        lang = settings.language
        try:
            run.abandon_prompt = await asyncio.to_thread(
                tts.render, settings.abandon_text(), lang, self.tts_dir
            )
            if settings.machine_message:
                run.machine_prompt = await asyncio.to_thread(
                    tts.render, settings.machine_message, lang, self.tts_dir
                )
        except tts.TtsError as e:  # the calls still go; those messages are not heard
            log.error("campaign messages not rendered", extra={"campaign": run.id, "error": str(e)})
        await self._reload_ledger(run)
        now = epoch_ms(self.clock())
        if run.queue is not None:
            for ext in self.acd.logged_in:
                if run.queue in self.acd.working.get(ext, ()):
                    state = self.acd.agent_state(ext)
                    if state is not None and state[0] != "not_ready":
                        run.agents.add(int(ext))
                        run.pacer.handle(now, "agent_joined", int(ext))
                        if state[0] in ("busy", "offered"):
                            run.pacer.handle(now, "call_connected", 0, agent=int(ext))
                        elif state[0] == "wrap_up":
                            run.pacer.handle(now, "call_connected", 0, agent=int(ext))
                            run.pacer.handle(now, "talk_ended", int(ext))
        log.info("campaign running", extra={"campaign": run.id, "mode": mode})
        return run

    async def _false_positive_share(self, campaign_id: int) -> float:
        """The share of detection's "person" verdicts that operators found to be machines,
        on this campaign's last 30 days (once it has 50 live answers; a prior before)."""
        since = self.clock() - dt.timedelta(days=30)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'machine')"
                " FROM campaign_attempts WHERE campaign_id = %s AND live_at >= %s",
                (campaign_id, since),
            )
            row = await cur.fetchone()
        live, found = row or (0, 0)
        return found / live if live >= WARM_UP_LIVE else PRIOR_FALSE_POSITIVES

    async def _reload_ledger(self, run: CampaignRun) -> None:
        """The last 30 days' live answers and abandons, into the pacer's ledger and ours."""
        since = self.clock() - dt.timedelta(days=30)
        events: list[tuple[int, str, int]] = []
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT live_at, answered_at, detected, outcome, ended_at
                     FROM campaign_attempts
                    WHERE campaign_id = %s AND answered_at >= %s AND ended_at IS NOT NULL
                    ORDER BY answered_at""",
                (run.id, since),
            )
            for live_at, answered_at, detected, outcome, ended_at in await cur.fetchall():
                if live_at is not None:
                    events.append((epoch_ms(live_at), "live", 0))
                    if outcome == "abandoned":
                        events.append((epoch_ms(ended_at), "abandoned", 0))
                    elif outcome == "machine":  # an operator found a machine
                        events.append((epoch_ms(ended_at), "not_live", epoch_ms(live_at)))
                elif detected == "machine":
                    events.append((epoch_ms(answered_at), "machine", 0))
        events.sort()
        for i, (t, kind, live_ms) in enumerate(events):
            if kind == "machine":
                run.pacer.handle(t, "call_answered", 1 << 40 | i, human=False)
            elif kind == "live":
                run.pacer.handle(t, "call_answered", 1 << 40 | i, human=True)
                run.ledger.append((t, kind))
            elif kind == "abandoned":
                run.pacer.handle(t, "call_abandoned", 1 << 40 | i)
                run.ledger.append((t, kind))
            else:
                run.pacer.handle(t, "not_live_after_all", live_ms)
                run.ledger.append((live_ms, kind))

    # --- agents (an ACD listener) ---

    def on_acd_event(self, ev: object) -> None:
        if not isinstance(ev, AgentChanged):
            return
        ext = str(ev.agent)
        now = epoch_ms(self.clock())
        for run in self.runs.values():
            if run.queue is None:
                continue
            serves = run.queue in self.acd.working.get(ext, ())
            known = ev.agent in run.agents
            if ev.state in ("logged_out", "not_ready") or not serves:
                if known:
                    run.agents.discard(ev.agent)
                    run.pacer.handle(now, "agent_left", ev.agent)
            elif ev.state == "ready":
                if known:
                    run.pacer.handle(now, "agent_ready", ev.agent)
                else:
                    run.agents.add(ev.agent)
                    run.pacer.handle(now, "agent_joined", ev.agent)
            elif ev.state == "busy" and known:
                # an inbound call of a blended queue also takes the operator
                run.pacer.handle(now, "call_connected", ev.detail or 0, agent=ev.agent)
            elif ev.state == "wrap_up" and known:
                run.pacer.handle(now, "talk_ended", ev.agent)

    # --- dialing ---

    def trunk(self) -> Trunk | None:
        return next(
            (t for t in self.calls.service.trunks if t.outbound and t.up is not False), None
        )

    async def _tick(self, run: CampaignRun) -> None:
        if run.stopping:
            return
        now = self.clock()
        if run.mode == "sms":
            await self._text(run, now)
            return
        if run.mode != "broadcast":
            await self.operator.personal_callbacks(run, now)
        if run.mode == "broadcast":
            n = run.settings.max_lines - len(run.in_flight)
        elif run.mode == "preview":
            return  # the operator asks for each call from the desktop
        else:
            n = run.pacer.dials(epoch_ms(now))
            n = min(n, run.settings.max_lines - len(run.in_flight))
        if n <= 0:
            return
        trunk = self.trunk()
        if trunk is None:
            return
        svc = self.calls.service
        room = svc.call_limits.room(svc.now(), trunk.limit_key, trunk.limit)
        if room is not None:  # the carrier's contract: no more calls than the trunk takes
            n = min(n, room)
            if n <= 0:
                return
        flow = None
        if run.mode == "broadcast":
            flow = self.flows.by_name.get(run.settings.flow or "") if self.flows else None
            if flow is None:
                log.error("broadcast without its flow", extra={"campaign": run.id})
                return
        for contact, attempt in await self.claim(run, n, now):
            self.place(run, trunk, contact, attempt, flow)

    def place(
        self,
        run: CampaignRun,
        trunk: Trunk,
        contact: dict[str, Any],
        attempt: Attempt,
        flow: Flow | None = None,
        agent: str | None = None,
        personal: bool = False,
    ) -> None:
        """Dial a claimed contact (``agent``: a preview's or a personal callback's operator,
        rung when it answers)."""
        dial = CampaignDial(
            attempt_id=attempt.id,
            campaign_id=run.id,
            queue=run.queue if run.mode not in ("broadcast", "preview") else None,
            detect_machines=run.settings.detects(run.mode),
            ring_seconds=run.settings.ring_seconds,
            abandon_prompt=run.abandon_prompt,
            machine_prompt=run.machine_prompt,
            report=self._reported(run),
            priority=run.settings.queue_priority,
            flow=flow,
            variables={"name": contact["name"] or "", **contact["variables"]},
            campaign_name=run.name,
            survey_id=run.survey_id,
            case_id=contact["case_id"],
            contact={"name": contact["name"], "variables": contact["variables"]},
            agent=agent,
            personal=personal,
        )
        run.in_flight[attempt.id] = attempt
        run.pacer.handle(epoch_ms(self.clock()), "call_placed", attempt.id)
        caller_id = run.settings.caller_id or trunk.username or "anonymous"
        call = campaign_call.place(
            self.calls,
            trunk,
            contact["phone"],
            dial,
            caller_id=caller_id,
            customer_id=contact["customer_id"],
        )
        if call is None:  # no media resources: the attempt fails, retried by the rules
            self._reported(run)(
                dial, "ended", {"outcome": "failed", "sip_call_id": None, "keys": ""}
            )

    async def _text(self, run: CampaignRun, now: dt.datetime) -> None:
        """An SMS campaign's tick: the due contacts, at ``sms_per_second``, each its text."""
        sms = self.sms
        if sms is None or not sms.enabled:
            return
        run.sms_credit = min(
            run.settings.sms_per_second, run.sms_credit + run.settings.sms_per_second * TICK
        )
        n = int(run.sms_credit)
        if n <= 0:
            return
        for contact, attempt in await self.claim(run, n, now):
            run.sms_credit -= 1
            variables = {"name": contact["name"] or "", **contact["variables"]}
            sms_id = await sms.send(
                contact["phone"],
                run.settings.sms_for(variables),
                customer_id=contact["customer_id"],
                campaign_id=run.id,
                contact_id=contact["id"],
            )
            run.outcomes["sent"] += 1

            async def write(
                conn: AsyncConnection[Any], a: Attempt = attempt, m: int = sms_id
            ) -> None:
                await conn.execute(
                    "UPDATE campaign_attempts SET ended_at = now(), outcome = 'sent', sms_id = %s"
                    " WHERE id = %s",
                    (m, a.id),
                )
                await conn.execute(
                    "UPDATE campaign_contacts SET state = 'done', last_outcome = 'sent'"
                    " WHERE id = %s",
                    (a.contact_id,),
                )

            self._writes.put_nowait(write)

    async def claim(
        self,
        run: CampaignRun,
        n: int,
        now: dt.datetime,
        previewed_by: str | None = None,
        personal_for: str | None = None,
    ) -> list[tuple[dict[str, Any], Attempt]]:
        """Up to ``n`` contacts that may be called now, marked dialing with their attempts
        written, in one transaction; those outside their window move to its next opening.
        A personal callback is claimed only for its operator (``personal_for``)."""
        claimed: list[tuple[dict[str, Any], Attempt]] = []
        async with (
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                """SELECT c.id, c.phone, c.name, c.time_zone, c.customer_id, c.variables, c.tried,
                          c.task_id, c.case_id
                     FROM campaign_contacts c
                    WHERE c.campaign_id = %s AND c.state IN ('pending', 'retry')
                      AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= %s)
                      AND c.callback_agent IS NOT DISTINCT FROM %s
                      AND NOT EXISTS (SELECT 1 FROM do_not_call d WHERE d.phone = c.phone
                                       AND (d.campaign_id IS NULL OR d.campaign_id = c.campaign_id))
                      AND NOT EXISTS (SELECT 1 FROM blacklist b WHERE b.number = c.phone)
                    ORDER BY coalesce(c.next_attempt_at, c.created_at), c.id
                    LIMIT %s FOR UPDATE SKIP LOCKED""",
                (run.id, now, personal_for, max(n * 4, 20)),
            )
            for contact in await cur.fetchall():
                tz = ZoneInfo(contact["time_zone"])
                opens = opening(run.rules, tz, now, self.holidays)
                if opens is None:  # the campaign's end comes before its window opens
                    await cur.execute(
                        "UPDATE campaign_contacts SET state = 'failed',"
                        " last_outcome = 'campaign_ended' WHERE id = %s",
                        (contact["id"],),
                    )
                    continue
                if opens > now:
                    await cur.execute(
                        "UPDATE campaign_contacts SET next_attempt_at = %s WHERE id = %s",
                        (opens, contact["id"]),
                    )
                    continue
                if len(claimed) == n:
                    continue
                await cur.execute(
                    "UPDATE campaign_contacts SET state = 'dialing', attempts = attempts + 1"
                    " WHERE id = %s",
                    (contact["id"],),
                )
                await cur.execute(
                    "INSERT INTO campaign_attempts (campaign_id, contact_id, phone, started_at,"
                    " previewed_by) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (run.id, contact["id"], contact["phone"], now, previewed_by),
                )
                row = await cur.fetchone()
                assert row is not None
                claimed.append(
                    (
                        contact,
                        Attempt(
                            row["id"],
                            contact["id"],
                            contact["phone"],
                            contact["time_zone"],
                            dict(contact["tried"]),
                            contact["task_id"],
                        ),
                    )
                )
        return claimed

    # --- what became of the calls ---

    def _reported(self, run: CampaignRun) -> Callable[[CampaignDial, str, dict[str, Any]], None]:
        def report(dial: CampaignDial, kind: str, data: dict[str, Any]) -> None:
            attempt = run.in_flight.get(dial.attempt_id)
            if attempt is None:
                return
            self._on_report(run, attempt, kind, data)

        return report

    def _on_report(
        self, run: CampaignRun, attempt: Attempt, kind: str, data: dict[str, Any]
    ) -> None:
        at = self.clock()
        now = epoch_ms(at)
        pacer = run.pacer
        aid = attempt.id
        if kind == "answered":
            self._write("UPDATE campaign_attempts SET answered_at = %s WHERE id = %s", (at, aid))
        elif kind == "live":
            # the pacer hears of a live answer when it is connected or abandoned: until
            # then it still needs an operator, as a call ringing does (told at once, the
            # operator it will reach looks free for the moment the phone takes to answer)
            attempt.live = True
            self._count(run, now, "live")
            self._write(
                "UPDATE campaign_attempts SET detected = %s, live_at = %s WHERE id = %s",
                (data["detected"], at, aid),
            )
        elif kind == "detected":
            attempt.resolved = True
            pacer.handle(now, "call_answered", aid, human=False)
            self._write(
                "UPDATE campaign_attempts SET detected = %s WHERE id = %s", (data["detected"], aid)
            )
        elif kind == "connected":
            agent = str(data["agent"])
            self._resolve(run, attempt, now)
            if agent.isdigit():
                pacer.handle(now, "call_connected", aid, agent=int(agent))
            self._write(
                "UPDATE campaign_attempts SET connected_at = %s, agent = %s WHERE id = %s",
                (at, agent, aid),
            )
        elif kind == "abandoned":
            self._resolve(run, attempt, now)
            pacer.handle(now, "call_abandoned", aid)
            self._count(run, now, "abandoned")
        elif kind == "ended":
            run.in_flight.pop(aid, None)
            self.operator.release(aid)
            if not attempt.resolved and attempt.live:
                self._resolve(run, attempt, now)  # a broadcast, or hung up while waiting
            elif not attempt.resolved:
                pacer.handle(now, "call_unanswered", aid)
            outcome = str(data["outcome"])
            keys = str(data.get("keys") or "")
            if outcome == "completed" and run.mode == "broadcast" and "1" in keys[:1]:
                outcome = "confirmed"
            run.outcomes[outcome] += 1
            disposition = data.get("disposition")
            self._close(run, attempt, outcome, keys, data.get("sip_call_id"), disposition, at)
            if isinstance(disposition, str) and disposition in DISPOSITIONS:
                self.disposition(str(data.get("sip_call_id")), disposition)

    def callback(self, attempt_id: int, asked: CallbackAsked) -> None:
        """ "Call back at" on a campaign call: the contact is called again at that time (by
        the operator when personal), whatever its retry rules say; asked during the call it
        applies when the attempt closes."""
        if any(attempt_id in run.in_flight for run in self.runs.values()):
            self._callbacks_asked[attempt_id] = asked
            return

        async def write(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                """UPDATE campaign_contacts c SET state = 'retry', next_attempt_at = %s,
                          callback_agent = %s, last_outcome = 'callback'
                     FROM campaign_attempts a WHERE a.id = %s AND c.id = a.contact_id""",
                (asked.at, asked.agent, attempt_id),
            )

        self._writes.put_nowait(write)

    def write(self, write: Callable[[AsyncConnection[Any]], Awaitable[None]]) -> None:
        """An update in the ordered writer's turn (after those already queued)."""
        self._writes.put_nowait(write)

    def disposition(self, sip_call_id: str, code: str) -> None:
        """The operator's wrap-up code on a campaign call, during it or after: a machine
        detection took for a person is a machine attempt (retried by the machine rule, and
        the pacer counts it out of the live answers); a wrong number is not called again."""
        if code not in DISPOSITIONS:
            return

        async def write(conn: AsyncConnection[Any]) -> None:
            cur = await conn.execute(
                """SELECT a.id, a.campaign_id, a.contact_id, a.live_at, a.outcome, c.time_zone,
                          c.tried, k.rules
                     FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id
                     JOIN campaigns k ON k.id = a.campaign_id
                    WHERE a.sip_call_id = %s AND a.ended_at IS NOT NULL""",
                (sip_call_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return
            attempt_id, campaign_id, contact_id, live_at, outcome, tz, tried, rules = row
            if code == "wrong_number":
                await conn.execute(
                    "UPDATE campaign_contacts SET state = 'failed', next_attempt_at = NULL,"
                    " last_outcome = 'wrong_number' WHERE id = %s",
                    (contact_id,),
                )
                return
            if outcome != "connected" or live_at is None:
                return
            now = self.clock()
            tried = dict(tried)
            tried["machine"] = tried.get("machine", 0) + 1
            next_at = next_attempt(
                CallingRules.model_validate(rules), ZoneInfo(tz), "machine",
                {"machine": tried["machine"]}, now, self.holidays,
            )  # fmt: skip
            await conn.execute(
                "UPDATE campaign_attempts SET outcome = 'machine', detected = 'machine'"
                " WHERE id = %s",
                (attempt_id,),
            )
            await conn.execute(
                "UPDATE campaign_contacts SET state = %s, next_attempt_at = %s, tried = %s,"
                " last_outcome = 'machine' WHERE id = %s",
                ("retry" if next_at else "failed", next_at, Jsonb(tried), contact_id),
            )
            run = self.runs.get(campaign_id)
            if run is not None:
                answered = epoch_ms(live_at)
                run.pacer.handle(epoch_ms(now), "not_live_after_all", answered)
                self._count(run, answered, "not_live")
                run.outcomes["connected"] -= 1
                run.outcomes["machine"] += 1

        self._writes.put_nowait(write)

    def _resolve(self, run: CampaignRun, attempt: Attempt, now: int) -> None:
        if not attempt.resolved:
            attempt.resolved = True
            run.pacer.handle(now, "call_answered", attempt.id, human=True)

    def _count(self, run: CampaignRun, now: int, kind: str) -> None:
        run.ledger.append((now, kind))
        while run.ledger and run.ledger[0][0] < now - MONTH_MS:
            run.ledger.popleft()

    def _close(
        self,
        run: CampaignRun,
        attempt: Attempt,
        outcome: str,
        keys: str,
        sip_call_id: object,
        disposition: object,
        at: dt.datetime,
    ) -> None:
        tried = dict(attempt.tried)
        state, next_at, personal, last_outcome = "done", None, None, outcome
        asked = self._callbacks_asked.pop(attempt.id, None)
        if asked is not None and outcome in REACHED:  # "call back at", asked during the call
            state, next_at, personal, last_outcome = "retry", asked.at, asked.agent, "callback"
        elif outcome not in REACHED:
            # each outcome counted apart; an abandon is retried by no_answer's rule
            tried[outcome] = tried.get(outcome, 0) + 1
            rule = RETRY_AS.get(outcome) or _as_outcome(outcome)
            next_at = next_attempt(
                run.rules, ZoneInfo(attempt.time_zone), rule, {rule: tried[outcome]}, at,
                self.holidays,
            )  # fmt: skip
            state = "retry" if next_at is not None else "failed"
        log.info(
            "campaign attempt ended",
            extra={"campaign": run.id, "attempt": attempt.id, "outcome": outcome, "next": state},
        )

        async def write(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE campaign_attempts SET ended_at = %s, outcome = %s, keys = %s,"
                " sip_call_id = %s, disposition = coalesce(%s, disposition) WHERE id = %s",
                (at, outcome, keys or None, sip_call_id, disposition, attempt.id),
            )
            # a personal callback stays its operator's while it is retried; a new "call back
            # at" names its own; a contact reached is nobody's any more
            await conn.execute(
                """UPDATE campaign_contacts SET state = %s, next_attempt_at = %s, tried = %s,
                          last_outcome = %s,
                          callback_agent = CASE WHEN %s THEN %s
                                                WHEN %s = 'done' THEN NULL
                                                ELSE callback_agent END
                    WHERE id = %s""",
                (state, next_at, Jsonb(tried), last_outcome, last_outcome == "callback",
                 personal, state, attempt.contact_id),
            )  # fmt: skip
            if attempt.task_id is not None and state == "done":  # the callback is made
                await conn.execute(
                    "UPDATE tasks SET status = 'done' WHERE id = %s AND status = 'open'",
                    (attempt.task_id,),
                )

        self._writes.put_nowait(write)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        async def write(conn: AsyncConnection[Any]) -> None:
            await conn.execute(sql, params)

        self._writes.put_nowait(write)

    async def _writer(self) -> None:
        """One writer: an attempt's updates land in the order they happened."""
        while True:
            first = await self._writes.get()
            batch = [first]
            while not self._writes.empty() and len(batch) < 200:
                batch.append(self._writes.get_nowait())
            await self._apply(batch)

    async def _apply(self, batch: list[Callable[[AsyncConnection[Any]], Awaitable[None]]]) -> None:
        for delay in (0.5, 1, 2, 4, 8, 16, 30):
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    for write in batch:
                        await write(conn)
                return
            except Exception as e:  # the database is away: kept and tried again
                log.error("campaign outcomes not written", extra={"error": str(e)})
                await asyncio.sleep(delay)

    async def _drain(self) -> None:
        batch = []
        while not self._writes.empty():
            batch.append(self._writes.get_nowait())
        if batch:
            await self._apply(batch)

    # --- figures ---

    def rates(self, run: CampaignRun) -> dict[str, float | None]:
        """Abandoned over live answers: the last 24 hours (Ofcom) and 30 days (TSR)."""
        now = epoch_ms(self.clock())
        out: dict[str, float | None] = {}
        for name, span in (("abandon_rate_24h", DAY_MS), ("abandon_rate_30d", MONTH_MS)):
            live = sum(1 for t, k in run.ledger if k == "live" and t >= now - span) - sum(
                1 for t, k in run.ledger if k == "not_live" and t >= now - span
            )
            gone = sum(1 for t, k in run.ledger if k == "abandoned" and t >= now - span)
            out[name] = gone / live if live else None
        return out

    def live(self, campaign_id: int) -> dict[str, Any] | None:
        """A running campaign now, for its page and the supervisor's console."""
        run = self.runs.get(campaign_id)
        if run is None:
            return None
        return {
            "calls_in_flight": len(run.in_flight),
            "operators": len(run.agents),
            "outcomes_since_start": dict(run.outcomes),
            **self.rates(run),
        }


__all__ = ["OUTCOMES", "CampaignManager", "CampaignRun"]
