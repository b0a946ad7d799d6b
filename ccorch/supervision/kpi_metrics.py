"""The contact center's KPIs on /metrics: queues (waiting, oldest wait, offered by outcome,
waits, service-level threshold and target, handle time by phase), operators (by state and
not-ready reason, time per state), today's figures, and the recordings' disk.

Read at scrape time from :class:`ccorch.supervision.kpis.QueueKpis` and the ACD; every known
label value (queues, outcomes, phases, states, reasons) is always written, from 0, so a
series never goes missing when nothing happened yet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ccorch.acd.service import AcdService
from ccorch.calls.cdr import CdrSink
from ccorch.config import SupervisionConfig
from ccorch.supervision.kpis import (
    AGENT_STATES,
    OUTCOMES,
    PHASES,
    TODAY_SQL,
    QueueKpis,
    QueueTarget,
    Tally,
)

log = logging.getLogger(__name__)
WAIT_OUTCOMES = ("answered", "abandoned")  # the histogram's: 15 series per queue each

__all__ = ["KpiCollector", "fed_by", "install"]


def fed_by(acd: AcdService, *, short_abandon_seconds: float, tz: ZoneInfo) -> QueueKpis:
    """A tally of the ACD's queues (their targets), fed its decisions and entries; its
    figures go into the queues' snapshots."""
    kpis = QueueKpis(
        {
            name: QueueTarget(q.service_level_seconds, q.service_level_target)
            for name, q in acd.queues.items()
        },
        short_abandon_seconds=short_abandon_seconds,
        tz=tz,
        mono=time.monotonic,
        wall=lambda: dt.datetime.now(dt.UTC),
        reason_name=acd.reason_name,
        queue_name=lambda qid: acd.queue_names.get(qid, "?"),
    )
    acd.listeners.append(kpis.on_acd)
    acd.entry_listeners.append(kpis.entered)
    acd.queue_figures = kpis.figures
    return kpis


async def install(
    registry: CollectorRegistry,
    acd: AcdService,
    cdrs: CdrSink,
    pool: AsyncConnectionPool,
    config: SupervisionConfig,
    recordings_dir: Path,
) -> QueueKpis:
    """Feed the KPIs from the ACD and the calls' records, load the day so far from the
    database, and put them on /metrics."""
    tz = ZoneInfo(config.time_zone)
    kpis = fed_by(acd, short_abandon_seconds=config.short_abandon_seconds, tz=tz)
    cdrs.listeners.append(
        lambda r: kpis.call_recorded(r.queue, r.queue_outcome, r.talk_seconds, r.hold_seconds)
    )
    day = kpis.day
    start = dt.datetime.combine(day, dt.time(), tz)
    try:
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                TODAY_SQL,
                {
                    "start": start,
                    "short": config.short_abandon_seconds,
                    "thresholds": json.dumps(
                        {n: t.threshold_seconds for n, t in kpis.targets.items()}
                    ),
                },
            )
            kpis.load_today(day, await cur.fetchall())
    except Exception as e:  # the database is away: today starts from the restart
        log.warning("today's figures not loaded", extra={"error": str(e)})
    registry.register(KpiCollector(kpis, acd, recordings_dir))
    return kpis


class KpiCollector(Collector):
    def __init__(self, kpis: QueueKpis, acd: AcdService, recordings_dir: Path) -> None:
        self.kpis = kpis
        self.acd = acd
        self.recordings_dir = recordings_dir

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        yield from self._queues_now()
        yield from self._tallies(self.kpis.total, today=False)
        yield from self._tallies(self.kpis.today, today=True)
        yield from self._wait_histogram()
        yield from self._agents()
        yield from self._disk()

    def _queues_now(self) -> Iterable[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "cc_queue_calls_waiting", "Calls waiting in the queue now", labels=["queue"]
        )
        ringing = GaugeMetricFamily(
            "cc_queue_calls_ringing",
            "Calls of the queue ringing an operator's phone now",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "cc_queue_oldest_wait_seconds",
            "How long the longest-waiting call of the queue has waited (0: none waits)",
            labels=["queue"],
        )
        members = GaugeMetricFamily(
            "cc_queue_agents",
            "Operators logged in to the queue, by state",
            labels=["queue", "state"],
        )
        threshold = GaugeMetricFamily(
            "cc_queue_service_level_threshold_seconds",
            "The queue's service-level threshold: calls answered within it count as in service",
            labels=["queue"],
        )
        target = GaugeMetricFamily(
            "cc_queue_service_level_target_ratio",
            "The share of calls the queue aims to answer within its threshold",
            labels=["queue"],
        )
        for q, qt in sorted(self.kpis.targets.items()):
            snap = self.acd.queue_now(q)
            waiting.add_metric([q], snap["waiting"])
            ringing.add_metric([q], snap["ringing"])
            oldest.add_metric([q], snap["oldest_wait_ms"] / 1000)
            for state in AGENT_STATES:
                members.add_metric([q, state], snap["agents"].get(state, 0))
            threshold.add_metric([q], qt.threshold_seconds)
            target.add_metric([q], qt.target)
        yield from (waiting, ringing, oldest, members, threshold, target)

    def _tallies(
        self, tallies: dict[str, Tally], *, today: bool
    ) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        def family(
            name: str, text: str, labels: list[str]
        ) -> CounterMetricFamily | GaugeMetricFamily:
            if today:
                return GaugeMetricFamily(
                    f"{name}_today",
                    f"{text}, since midnight in the center's time zone",
                    labels=labels,
                )
            return CounterMetricFamily(name, text, labels=labels)

        entered = family("cc_queue_calls_entered", "Calls that joined the queue", ["queue"])
        calls = family(
            "cc_queue_calls",
            "Calls that left the queue (offered), by outcome: answered, abandoned,"
            " abandoned_short, overflowed, timed_out, withdrawn",
            ["queue", "outcome"],
        )
        in_sl = family(
            "cc_queue_calls_answered_in_threshold",
            "Calls answered within the queue's service-level threshold",
            ["queue"],
        )
        # since start: cc_queue_wait_seconds_sum (the histogram's)
        waited = GaugeMetricFamily(
            "cc_queue_waited_seconds_today",
            "Total wait in the queue of the calls that left it since midnight, by outcome",
            labels=["queue", "outcome"],
        )
        handled = family(
            "cc_queue_calls_handled",
            "Answered calls of the queue that ended (handle time known)",
            ["queue"],
        )
        handle = family(
            "cc_queue_handle_seconds",
            "Handle time of the queue's calls by phase: talk (less hold), hold, wrap_up",
            ["queue", "phase"],
        )
        for q, t in sorted(tallies.items()):
            entered.add_metric([q], t.entered)
            in_sl.add_metric([q], t.answered_in_threshold)
            handled.add_metric([q], t.handled)
            for o in OUTCOMES:
                calls.add_metric([q, o], t.calls[o])
                waited.add_metric([q, o], t.wait_seconds[o])
            for p in PHASES:
                handle.add_metric([q, p], t.handle_seconds[p])
        yield from (entered, calls, in_sl, handled, handle)
        if today:
            yield waited

    def _wait_histogram(self) -> Iterable[HistogramMetricFamily]:
        hist = HistogramMetricFamily(
            "cc_queue_wait_seconds",
            "Time calls waited in the queue before they were answered or abandoned (short"
            " abandons apart); the buckets include every queue's service-level threshold",
            labels=["queue", "outcome"],
        )
        k = self.kpis
        for q in sorted(k.targets):
            for o in WAIT_OUTCOMES:
                counts = k.wait_hist.get((q, o), [0] * (len(k.buckets) + 1))
                cumulative, running = [], 0
                for le, n in zip((*k.buckets, float("inf")), counts, strict=True):
                    running += n
                    cumulative.append(("+Inf" if le == float("inf") else str(le), running))
                hist.add_metric([q, o], cumulative, sum_value=k.total[q].wait_seconds[o])
        yield hist

    def _agents(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        by_state = GaugeMetricFamily(
            "cc_agents",
            "Operators by state (logged_out: configured, not logged in)",
            labels=["state"],
        )
        by_reason = GaugeMetricFamily(
            "cc_agents_not_ready", "Operators Not ready now, by reason", labels=["reason"]
        )
        states: dict[str, int] = dict.fromkeys(("logged_out", *AGENT_STATES), 0)
        reasons: dict[str, int] = dict.fromkeys(self._reasons(), 0)
        for ext in self.acd.agents:
            now = self.acd.agent_state(ext)
            name = now[0] if now else "logged_out"
            states[name] = states.get(name, 0) + 1
            if now is not None and name == "not_ready":
                reason = self.acd.reason_name(now[1]) or ""
                reasons[reason] = reasons.get(reason, 0) + 1
        for state, n in states.items():
            by_state.add_metric([state], n)
        for r, n in sorted(reasons.items()):
            by_reason.add_metric([r], n)
        yield from (by_state, by_reason)
        for today in (False, True):
            seconds = self.kpis.state_seconds_now(today=today)
            if today:
                fam: GaugeMetricFamily | CounterMetricFamily = GaugeMetricFamily(
                    "cc_agent_state_seconds_today",
                    "Operator time per state and not-ready reason since midnight (all operators)",
                    labels=["state", "reason"],
                )
            else:
                fam = CounterMetricFamily(
                    "cc_agent_state_seconds",
                    "Operator time per state and not-ready reason (all operators);"
                    " occupancy = (busy + wrap_up) / (ready + offered + busy + wrap_up)",
                    labels=["state", "reason"],
                )
            keys = {(state, "") for state in AGENT_STATES if state != "not_ready"}
            keys |= {("not_ready", r) for r in self._reasons()}
            for state, r in sorted(keys | set(seconds)):
                fam.add_metric([state, r], seconds.get((state, r), 0.0))
            yield fam

    def _reasons(self) -> list[str]:
        known = [*self.acd.reasons, "login", "missed_offer", "supervisor", "device_lost"]
        return sorted(set(known))

    def _disk(self) -> Iterable[GaugeMetricFamily]:
        free = GaugeMetricFamily(
            "cc_recordings_disk_free_bytes", "Free space on the recordings' file system"
        )
        size = GaugeMetricFamily(
            "cc_recordings_disk_size_bytes", "Size of the recordings' file system"
        )
        try:
            usage = shutil.disk_usage(self.recordings_dir)
        except OSError:
            return
        free.add_metric([], usage.free)
        size.add_metric([], usage.total)
        yield from (free, size)
