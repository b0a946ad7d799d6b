"""Contact-center KPIs as the node sees them happen: what each queue was offered and how
each call left it, how long callers waited, how long calls were handled (talk, hold,
wrap-up), and how long operators spent in each state. Sans-IO: fed the ACD's events and
the calls' records, read by the Prometheus collector (``ccorch.supervision.metrics``).

Two tallies are kept: since the node started (Prometheus counters: rates over any window)
and since midnight in the center's time zone (gauges: "today" on the wallboard and in the
recording rules, which cannot find midnight by themselves). At start the day's tally is
loaded from the day's CDRs and state stretches (:func:`load_today`), so a restart at noon
does not forget the morning.

Definitions (the recording rules in ``dashboards/`` and the reports use the same):
- a call is *offered* to a queue when it leaves it: answered, abandoned, abandoned_short
  (the caller hung up within ``short_abandon_seconds``), overflowed, timed_out or withdrawn
  (it chose voicemail or a callback); calls still waiting are not offered yet;
- *service level* = answered within the queue's threshold / (offered - abandoned_short);
- *handle time* = talk (operator answered to end, less hold) + hold + wrap-up.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ccorch.acd import AgentChanged, CallLeft

OUTCOMES = ("answered", "abandoned", "abandoned_short", "overflowed", "timed_out", "withdrawn")
PHASES = ("talk", "hold", "wrap_up")
AGENT_STATES = ("ready", "not_ready", "offered", "busy", "wrap_up")
WINDOW_SECONDS = 900.0  # "the last 15 minutes" of the wallboard
# Seconds; each queue's service-level threshold is added, so "answered within T" is a bucket.
WAIT_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)


@dataclass
class Tally:
    """One queue's figures over a stretch of time (since start, or one day)."""

    entered: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # outcome -> calls
    answered_in_threshold: int = 0
    wait_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    handled: int = 0  # answered calls that ended (their talk and hold are known)
    handle_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass(frozen=True)
class QueueTarget:
    """A queue's service-level goal: ``target`` of calls answered within ``threshold``."""

    threshold_seconds: float = 20.0
    target: float = 0.8


@dataclass
class _Stretch:
    state: str
    reason: str
    since: float  # monotonic seconds


class QueueKpis:
    def __init__(
        self,
        queues: Mapping[str, QueueTarget],
        *,
        short_abandon_seconds: float,
        tz: ZoneInfo,
        mono: Callable[[], float],
        wall: Callable[[], dt.datetime],
        reason_name: Callable[[int | None], str | None],
        queue_name: Callable[[int], str],
    ) -> None:
        self.targets = dict(queues)
        self.short_abandon_seconds = short_abandon_seconds
        self.tz = tz
        self.mono = mono
        self.wall = wall
        self.reason_name = reason_name
        self.queue_name = queue_name
        self.buckets = tuple(
            sorted({*WAIT_BUCKETS, *(q.threshold_seconds for q in self.targets.values())})
        )
        self.total = {q: Tally() for q in self.targets}
        self.today = {q: Tally() for q in self.targets}
        self.day = self._local_day()
        # (queue, outcome) -> calls per wait bucket (not cumulative), the last one +Inf
        self.wait_hist: dict[tuple[str, str], list[int]] = {}
        # operators' time per state: (state, reason) -> closed seconds; reason "" but for
        # not_ready. Open stretches are added when read.
        self.state_seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.today_state_seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.open: dict[str, _Stretch] = {}
        self.agent_queue: dict[str, str] = {}  # the queue of an operator's last ACD call
        # calls that left a queue in the last WINDOW_SECONDS: (monotonic, outcome, waited)
        self.recent: dict[str, deque[tuple[float, str, float]]] = {q: deque() for q in queues}

    def _local_day(self) -> dt.date:
        return self.wall().astimezone(self.tz).date()

    def _roll(self) -> None:
        """A new day in the center's time zone: today's figures start again from zero."""
        day = self._local_day()
        if day == self.day:
            return
        self.day = day
        self.today = {q: Tally() for q in self.targets}
        self.today_state_seconds = defaultdict(float)
        # open stretches count towards the new day from midnight
        midnight = dt.datetime.combine(day, dt.time(), self.tz)
        since_midnight = max(0.0, (self.wall() - midnight).total_seconds())
        now = self.mono()
        for s in self.open.values():
            s_today = now - s.since
            if s_today > since_midnight:
                self._close(s, s_today - since_midnight, today=False)
                s.since = now - since_midnight

    def _tallies(self, queue: str) -> tuple[Tally, Tally] | None:
        self._roll()
        if queue not in self.total:
            return None
        return self.total[queue], self.today[queue]

    # --- what feeds it ---

    def entered(self, queue: str) -> None:
        """A call joined ``queue`` (the ACD took it)."""
        for t in self._tallies(queue) or ():
            t.entered += 1

    def on_acd(self, ev: Any) -> None:
        """An ``AcdService`` listener: calls leaving queues, operators changing state."""
        if isinstance(ev, CallLeft):
            self._left(self.queue_name(ev.queue), ev.outcome, ev.waited_ms / 1000, ev.detail)
        elif isinstance(ev, AgentChanged):
            self._agent(str(ev.agent), ev.state, ev.detail)

    def _left(self, queue: str, outcome: str, waited: float, detail: int | None) -> None:
        tallies = self._tallies(queue)
        if tallies is None:
            return
        if outcome == "abandoned" and waited < self.short_abandon_seconds:
            outcome = "abandoned_short"
        in_threshold = outcome == "answered" and waited <= self.targets[queue].threshold_seconds
        for t in tallies:
            t.calls[outcome] += 1
            t.wait_seconds[outcome] += waited
            t.answered_in_threshold += in_threshold
        recent = self.recent[queue]
        recent.append((self.mono(), outcome, waited))
        self._prune(recent)
        hist = self.wait_hist.setdefault((queue, outcome), [0] * (len(self.buckets) + 1))
        hist[bisect.bisect_left(self.buckets, waited)] += 1
        if outcome == "answered" and detail is not None:
            self.agent_queue[str(detail)] = queue

    def _agent(self, agent: str, state: str, detail: int | None) -> None:
        self._roll()
        reason = (self.reason_name(detail) or "") if state == "not_ready" else ""
        was = self.open.get(agent)
        if was is not None and (was.state, was.reason) == (state, reason):
            return  # the same state with a new detail (a wrap-up extended)
        now = self.mono()
        if was is not None:
            self._close(was, now - was.since, today=True)
            if was.state == "wrap_up" and agent in self.agent_queue:
                for t in self._tallies(self.agent_queue[agent]) or ():
                    t.handle_seconds["wrap_up"] += now - was.since
        if state == "logged_out" or state not in AGENT_STATES:
            self.open.pop(agent, None)
        else:
            self.open[agent] = _Stretch(state, reason, now)

    def _close(self, s: _Stretch, seconds: float, *, today: bool) -> None:
        self.state_seconds[(s.state, s.reason)] += seconds
        if today:
            self.today_state_seconds[(s.state, s.reason)] += seconds

    def call_recorded(
        self, queue: str | None, queue_outcome: str | None, talk: float, hold: float
    ) -> None:
        """A call's record: one answered from ``queue`` adds its talk and hold time."""
        if queue is None or queue_outcome != "answered":
            return
        for t in self._tallies(queue) or ():
            t.handled += 1
            t.handle_seconds["talk"] += max(0.0, talk - hold)
            t.handle_seconds["hold"] += hold

    # --- what is read ---

    def _prune(self, recent: deque[tuple[float, str, float]]) -> None:
        start = self.mono() - WINDOW_SECONDS
        while recent and recent[0][0] < start:
            recent.popleft()

    def figures(self, queue: str) -> dict[str, float | int | None]:
        """The wallboard's figures of a queue: today's and the last 15 minutes' (None when
        nothing was offered to divide by), by the definitions above."""
        tallies = self._tallies(queue)
        if tallies is None:
            return {}
        today = tallies[1]
        target = self.targets[queue]
        recent = self.recent[queue]
        self._prune(recent)
        window = Tally()
        for _, outcome, waited in recent:
            window.calls[outcome] += 1
            window.wait_seconds[outcome] += waited
            window.answered_in_threshold += (
                outcome == "answered" and waited <= target.threshold_seconds
            )
        out: dict[str, float | int | None] = {
            "service_level_threshold_seconds": target.threshold_seconds,
            "service_level_target": target.target,
        }
        for name, t in (("today", today), ("15m", window)):
            offered = sum(t.calls.values())
            counted = offered - t.calls["abandoned_short"]
            answered = t.calls["answered"]
            out[f"offered_{name}"] = offered
            out[f"answered_{name}"] = answered
            out[f"abandoned_{name}"] = t.calls["abandoned"]
            out[f"service_level_{name}"] = t.answered_in_threshold / counted if counted else None
            out[f"abandon_rate_{name}"] = t.calls["abandoned"] / counted if counted else None
            out[f"asa_seconds_{name}"] = t.wait_seconds["answered"] / answered if answered else None
        handled = today.handled
        out["aht_seconds_today"] = sum(today.handle_seconds.values()) / handled if handled else None
        return out

    def state_seconds_now(self, *, today: bool = False) -> defaultdict[tuple[str, str], float]:
        """Seconds per (state, reason), the open stretches up to now included."""
        self._roll()
        got = defaultdict(float, self.today_state_seconds if today else self.state_seconds)
        now = self.mono()
        for s in self.open.values():
            got[(s.state, s.reason)] += now - s.since
        return got

    def load_today(self, day: dt.date, rows: Iterable[Mapping[str, Any]]) -> None:
        """The day's figures from its records (a start after midnight): ``rows`` of
        :data:`TODAY_SQL`; ignored unless ``day`` is still today."""
        self._roll()
        if day != self.day:
            return
        for r in rows:
            kind = r["kind"]
            if kind == "state":
                self.today_state_seconds[(r["key"], r["reason"] or "")] += r["seconds"]
                continue
            t = self.today.get(r["queue"])
            if t is None:
                continue
            if kind == "outcome":
                t.calls[r["key"]] += r["calls"]
                t.wait_seconds[r["key"]] += r["seconds"]
                t.answered_in_threshold += r["in_threshold"]
                t.entered += r["calls"]
            elif kind == "handled":
                t.handled += r["calls"]
                t.handle_seconds["talk"] += r["seconds"]
                t.handle_seconds["hold"] += r["hold"]


# The day's figures from the database for :meth:`QueueKpis.load_today`:
# %(start)s the local midnight, %(short)s the short-abandon seconds, %(thresholds)s a JSON
# object queue -> threshold seconds. Outcomes and waits from the CDRs' queue_outcome; time
# per state from agent_state_time. Not restored: wrap-up per queue (the stretches do not
# say which queue's call they followed) and calls still waiting at the restart.
TODAY_SQL = """
SELECT 'outcome' AS kind, queue,
       CASE WHEN queue_outcome = 'abandoned' AND waited_ms < %(short)s * 1000
            THEN 'abandoned_short' ELSE queue_outcome END AS key,
       NULL::text AS reason,
       count(*)::int AS calls,
       coalesce(sum(waited_ms), 0)::float8 / 1000 AS seconds,
       count(*) FILTER (WHERE queue_outcome = 'answered'
                        AND waited_ms <= 1000 * (%(thresholds)s::jsonb ->> queue)::float8
                       )::int AS in_threshold,
       0::float8 AS hold
  FROM cdrs
 WHERE queued_at >= %(start)s AND queue IS NOT NULL AND queue_outcome IS NOT NULL
 GROUP BY 2, 3
UNION ALL
SELECT 'handled', queue, NULL, NULL, count(*)::int,
       coalesce(sum(greatest(talk_seconds - hold_seconds, 0)), 0)::float8, 0,
       coalesce(sum(hold_seconds), 0)::float8
  FROM cdrs
 WHERE queued_at >= %(start)s AND queue_outcome = 'answered'
 GROUP BY 2
UNION ALL
SELECT 'state', NULL, state, reason, count(*)::int,
       sum(extract(epoch FROM ended_at - greatest(started_at, %(start)s)))::float8, 0, 0
  FROM agent_state_time
 WHERE ended_at > %(start)s
 GROUP BY 3, 4
"""


__all__ = ["AGENT_STATES", "OUTCOMES", "PHASES", "TODAY_SQL", "QueueKpis", "QueueTarget", "Tally"]
