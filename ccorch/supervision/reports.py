"""Historical reports (seed 003: "any standard report", load, efficiency of operators), from
the records: CDRs (with the queue's outcome and hold time), the operators' state stretches
(with the call a wrap-up followed) and cases. Each report is a table of rows per interval
(15 min, hour, day, in the center's time zone) and its totals, with the formulas it used,
the same ones as on /metrics and the wallboard (docs/supervision.md).

- ``queues``: per interval and queue: offered, answered, abandoned (without and with short
  abandons), overflowed, withdrawn, service level, ASA, AHT as talk + hold + wrap-up,
  transfers;
- ``operators``: per interval and operator: logged-in time, time per state and not-ready
  reason, calls handled, talk, hold, wrap-up, AHT, occupancy, transfers;
- ``services``: per interval and dialed number (DNIS, the service): calls, ended in the
  IVR, queued, answered, abandoned, service level;
- ``cases``: cases created in the period by kind, topic, region, department and status,
  with how many are or were overdue;
- ``staffing``: per queue and hour of next week, the operators Erlang C says reach the
  queue's target, from the arrivals and handle times of the last weeks.

A row's interval is the local start of the slot the call queued (arrived, for services) in;
a call that crosses midnight counts in the slot it started in. Time in a state is cut at
slot edges. Figures with nothing to divide by are null.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ccorch.acd import erlang_c_forecast, staffing_erlang_c

INTERVALS = {
    "15m": dt.timedelta(minutes=15),
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
}
MAX_DAYS = 93  # a quarter at most in one report


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str = ""  # "", "s" (seconds), "%" (a ratio 0..1), "text"


@dataclass
class Report:
    name: str
    title: str
    params: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    formulas: list[str]
    chart: tuple[str, list[str]] | None = None  # (category column, value columns)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "columns": [c.__dict__ for c in self.columns],
            "rows": self.rows,
            "totals": self.totals,
            "formulas": self.formulas,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Period:
    """[start, end) as local days of the center, cut into ``step`` slots."""

    first: dt.date
    last: dt.date
    interval: str
    tz: ZoneInfo

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), self.tz)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), self.tz)

    @property
    def step(self) -> dt.timedelta:
        return INTERVALS[self.interval]

    def sql(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "step": self.step, "tz": self.tz.key}

    def describe(self) -> dict[str, Any]:
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "interval": self.interval,
            "time_zone": self.tz.key,
        }


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not den or num is None else num / den


def _avg(total: float | None, n: float | None) -> float | None:
    return None if not n or total is None else round(total / n, 3)


def _slot(value: Any) -> str:
    return value.isoformat(timespec="minutes") if isinstance(value, dt.datetime) else str(value)


# --- queues ------------------------------------------------------------------------------

QUEUES_SQL = """
WITH c AS (
    SELECT cd.*,
           date_bin(%(step)s, cd.queued_at AT TIME ZONE %(tz)s, TIMESTAMP '2000-01-01') AS slot,
           1000 * coalesce((%(thresholds)s::jsonb ->> cd.queue)::float8, 20) AS threshold_ms
      FROM cdrs cd
     WHERE cd.queued_at >= %(start)s AND cd.queued_at < %(end)s
       AND cd.queue IS NOT NULL AND cd.queue_outcome IS NOT NULL
       AND (%(queue)s::text IS NULL OR cd.queue = %(queue)s)
), wrap AS (
    -- the after-call work that followed each call: its operator's wrap-up stretch with the
    -- call's number, begun between the call's arrival and an hour after its end (a node's
    -- call numbers start again after a restart)
    SELECT c.id, sum(extract(epoch FROM w.ended_at - w.started_at)) AS seconds
      FROM c JOIN agent_state_time w
        ON w.call_ref = c.call_ref AND w.extension = c.agent AND w.state = 'wrap_up'
       AND w.started_at >= c.arrived_at AND w.started_at <= c.ended_at + interval '1 hour'
     WHERE c.queue_outcome = 'answered'
     GROUP BY 1
)
SELECT c.slot, c.queue,
       count(*) AS offered,
       count(*) FILTER (WHERE queue_outcome = 'answered') AS answered,
       count(*) FILTER (WHERE queue_outcome = 'abandoned' AND waited_ms >= %(short_ms)s)
           AS abandoned,
       count(*) FILTER (WHERE queue_outcome = 'abandoned' AND waited_ms < %(short_ms)s)
           AS abandoned_short,
       count(*) FILTER (WHERE queue_outcome IN ('overflowed', 'timed_out')) AS overflowed,
       count(*) FILTER (WHERE queue_outcome = 'withdrawn') AS withdrawn,
       count(*) FILTER (WHERE queue_outcome = 'answered' AND waited_ms <= threshold_ms)
           AS answered_in_threshold,
       coalesce(sum(waited_ms) FILTER (WHERE queue_outcome = 'answered'), 0) / 1000.0
           AS wait_answered,
       count(*) FILTER (WHERE queue_outcome = 'answered' AND answered_at IS NOT NULL)
           AS handled,
       coalesce(sum(greatest(talk_seconds - hold_seconds, 0))
                FILTER (WHERE queue_outcome = 'answered'), 0) AS talk,
       coalesce(sum(hold_seconds) FILTER (WHERE queue_outcome = 'answered'), 0) AS hold,
       coalesce(sum(wrap.seconds) FILTER (WHERE queue_outcome = 'answered'), 0) AS wrap_up,
       count(*) FILTER (WHERE outcome LIKE 'transfer%%') AS transfers
  FROM c
  LEFT JOIN wrap ON wrap.id = c.id
 GROUP BY 1, 2
 ORDER BY 1, 2
"""

QUEUE_COLUMNS = [
    Column("slot", "Interval", "text"),
    Column("queue", "Queue", "text"),
    Column("offered", "Offered"),
    Column("answered", "Answered"),
    Column("abandoned", "Abandoned"),
    Column("abandoned_short", "Short abandons"),
    Column("abandon_rate", "Abandon rate", "%"),
    Column("abandon_rate_with_short", "Abandon rate with short", "%"),
    Column("overflowed", "Overflowed"),
    Column("withdrawn", "Voicemail / callback"),
    Column("service_level", "Service level", "%"),
    Column("asa", "ASA", "s"),
    Column("aht", "AHT", "s"),
    Column("talk", "Talk (avg)", "s"),
    Column("hold", "Hold (avg)", "s"),
    Column("wrap_up", "Wrap-up (avg)", "s"),
    Column("transfers", "Transfers"),
]
QUEUE_FORMULAS = [
    "Offered = calls that left the queue: answered + abandoned + short abandons + overflowed"
    " (or timed out) + voicemail/callback; a call counts in the interval it queued in.",
    "Short abandon = hung up within {short} s of queuing.",
    "Service level = answered within the queue's threshold / (offered - short abandons).",
    "Abandon rate = abandoned / (offered - short abandons); with short = (abandoned + short"
    " abandons) / offered.",
    "ASA = wait of answered calls / answered.",
    "AHT = (talk + hold + wrap-up) / handled; talk = operator's answer to the end less hold;"
    " wrap-up = the after-call work that followed the call.",
]


def _queue_row(r: Mapping[str, Any]) -> dict[str, Any]:
    counted = r["offered"] - r["abandoned_short"]
    handled = r["handled"]
    return {
        "slot": _slot(r.get("slot")),
        "queue": r.get("queue"),
        "offered": r["offered"],
        "answered": r["answered"],
        "abandoned": r["abandoned"],
        "abandoned_short": r["abandoned_short"],
        "abandon_rate": _ratio(r["abandoned"], counted),
        "abandon_rate_with_short": _ratio(r["abandoned"] + r["abandoned_short"], r["offered"]),
        "overflowed": r["overflowed"],
        "withdrawn": r["withdrawn"],
        "service_level": _ratio(r["answered_in_threshold"], counted),
        "asa": _avg(float(r["wait_answered"]), r["answered"]),
        "aht": _avg(float(r["talk"]) + float(r["hold"]) + float(r["wrap_up"]), handled),
        "talk": _avg(float(r["talk"]), handled),
        "hold": _avg(float(r["hold"]), handled),
        "wrap_up": _avg(float(r["wrap_up"]), handled),
        "transfers": r["transfers"],
    }


def _sum_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    return {k: sum(float(r[k] or 0) for r in rows) for k in keys}


async def queues_report(
    conn: AsyncConnection[Any],
    period: Period,
    *,
    thresholds: Mapping[str, float],
    short_abandon_seconds: float,
    queue: str | None = None,
) -> Report:
    params = {
        **period.sql(),
        "thresholds": json.dumps(dict(thresholds)),
        "short_ms": short_abandon_seconds * 1000,
        "queue": queue,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUEUES_SQL, params)
        raw = await cur.fetchall()
    rows = [_queue_row(r) for r in raw]
    keys = [
        "offered", "answered", "abandoned", "abandoned_short", "overflowed", "withdrawn",
        "answered_in_threshold", "wait_answered", "handled", "talk", "hold", "wrap_up",
        "transfers",
    ]  # fmt: skip
    total = _queue_row({**_sum_rows(raw, keys), "slot": "", "queue": ""})
    total["slot"] = "Total"
    return Report(
        "queues",
        "Queues by interval",
        {**period.describe(), "queue": queue, "short_abandon_seconds": short_abandon_seconds},
        QUEUE_COLUMNS,
        rows,
        total,
        [f.format(short=short_abandon_seconds) for f in QUEUE_FORMULAS],
        chart=("slot", ["offered", "answered", "abandoned"]),
    )


# --- operators ---------------------------------------------------------------------------

OPERATORS_STATES_SQL = """
WITH s AS (
    SELECT extension, state, coalesce(reason, '') AS reason,
           greatest(started_at, %(start)s) AT TIME ZONE %(tz)s AS a,
           least(ended_at, %(end)s) AT TIME ZONE %(tz)s AS b
      FROM agent_state_time
     WHERE ended_at > %(start)s AND started_at < %(end)s
       AND (%(operator)s::text IS NULL OR extension = %(operator)s)
)
SELECT slot, extension, state, reason,
       sum(extract(epoch FROM least(b, slot + %(step)s) - greatest(a, slot))) AS seconds
  FROM s, LATERAL generate_series(date_bin(%(step)s, a, TIMESTAMP '2000-01-01'), b, %(step)s)
          AS slot
 WHERE least(b, slot + %(step)s) > greatest(a, slot)
 GROUP BY 1, 2, 3, 4
"""

OPERATORS_CALLS_SQL = """
SELECT date_bin(%(step)s, coalesce(answered_at, arrived_at) AT TIME ZONE %(tz)s,
                TIMESTAMP '2000-01-01') AS slot,
       agent AS extension,
       count(*) AS handled,
       coalesce(sum(greatest(talk_seconds - hold_seconds, 0)), 0) AS talk,
       coalesce(sum(hold_seconds), 0) AS hold,
       count(*) FILTER (WHERE outcome LIKE 'transfer%%') AS transfers
  FROM cdrs
 WHERE answered_at >= %(start)s AND answered_at < %(end)s AND agent IS NOT NULL
   AND (%(operator)s::text IS NULL OR agent = %(operator)s)
 GROUP BY 1, 2
"""

OPERATOR_COLUMNS = [
    Column("slot", "Interval", "text"),
    Column("operator", "Operator", "text"),
    Column("name", "Name", "text"),
    Column("logged_in", "Logged in", "s"),
    Column("ready", "Ready", "s"),
    Column("busy", "On calls", "s"),
    Column("wrap_up", "Wrap-up", "s"),
    Column("not_ready", "Not ready", "s"),
    Column("not_ready_reasons", "Not ready by reason", "text"),
    Column("handled", "Calls handled"),
    Column("aht", "AHT", "s"),
    Column("talk", "Talk (avg)", "s"),
    Column("hold", "Hold (avg)", "s"),
    Column("occupancy", "Occupancy", "%"),
    Column("transfers", "Transfers"),
]
OPERATOR_FORMULAS = [
    "Logged in = ready + ringing + on calls + wrap-up + not ready; time is cut at the"
    " interval's edges.",
    "Occupancy = (on calls + wrap-up) / (ready + ringing + on calls + wrap-up).",
    "AHT = (talk + hold + wrap-up) / calls handled (calls the operator answered in the interval).",
]


async def operators_report(
    conn: AsyncConnection[Any], period: Period, *, operator: str | None = None
) -> Report:
    params = {**period.sql(), "operator": operator}
    cells: dict[tuple[str, str], dict[str, Any]] = {}

    def cell(slot: Any, ext: str) -> dict[str, Any]:
        key = (_slot(slot), ext)
        if key not in cells:
            cells[key] = {
                "slot": key[0], "operator": ext, "ready": 0.0, "offered": 0.0, "busy": 0.0,
                "wrap_up": 0.0, "not_ready": 0.0, "reasons": {}, "handled": 0, "talk": 0.0,
                "hold": 0.0, "transfers": 0,
            }  # fmt: skip
        return cells[key]

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(OPERATORS_STATES_SQL, params)
        for r in await cur.fetchall():
            c = cell(r["slot"], r["extension"])
            c[r["state"]] += float(r["seconds"])
            if r["state"] == "not_ready":
                c["reasons"][r["reason"]] = c["reasons"].get(r["reason"], 0.0) + float(r["seconds"])
        await cur.execute(OPERATORS_CALLS_SQL, params)
        for r in await cur.fetchall():
            c = cell(r["slot"], r["extension"])
            for k in ("handled", "talk", "hold", "transfers"):
                c[k] += r[k]
        await cur.execute("SELECT extension, full_name FROM users WHERE extension IS NOT NULL")
        names = {r["extension"]: r["full_name"] for r in await cur.fetchall()}

    def row(c: Mapping[str, Any]) -> dict[str, Any]:
        working = c["ready"] + c["offered"] + c["busy"] + c["wrap_up"]
        return {
            "slot": c["slot"],
            "operator": c["operator"],
            "name": names.get(c["operator"], ""),
            "logged_in": round(working + c["not_ready"], 3),
            "ready": round(c["ready"] + c["offered"], 3),
            "busy": round(c["busy"], 3),
            "wrap_up": round(c["wrap_up"], 3),
            "not_ready": round(c["not_ready"], 3),
            "not_ready_reasons": {k: round(v, 3) for k, v in sorted(c["reasons"].items())},
            "handled": c["handled"],
            "aht": _avg(float(c["talk"]) + float(c["hold"]) + c["wrap_up"], c["handled"]),
            "talk": _avg(float(c["talk"]), c["handled"]),
            "hold": _avg(float(c["hold"]), c["handled"]),
            "occupancy": _ratio(c["busy"] + c["wrap_up"], working),
            "transfers": c["transfers"],
        }

    ordered = [cells[k] for k in sorted(cells)]
    total_cell: dict[str, Any] = {"slot": "Total", "operator": "", "reasons": {}}
    for k in ("ready", "offered", "busy", "wrap_up", "not_ready", "handled", "talk", "hold",
              "transfers"):  # fmt: skip
        total_cell[k] = sum(c[k] for c in ordered)
    for c in ordered:
        for reason, v in c["reasons"].items():
            total_cell["reasons"][reason] = total_cell["reasons"].get(reason, 0.0) + v
    return Report(
        "operators",
        "Operators by interval",
        {**period.describe(), "operator": operator},
        OPERATOR_COLUMNS,
        [row(c) for c in ordered],
        row(total_cell),
        OPERATOR_FORMULAS,
        chart=("operator", ["busy", "wrap_up", "ready", "not_ready"]),
    )


# --- services (DNIS) ---------------------------------------------------------------------

SERVICES_SQL = """
SELECT date_bin(%(step)s, arrived_at AT TIME ZONE %(tz)s, TIMESTAMP '2000-01-01') AS slot,
       dnis,
       count(*) AS calls,
       count(*) FILTER (WHERE queue IS NULL AND flow IS NOT NULL AND agent IS NULL)
           AS in_ivr_only,
       count(*) FILTER (WHERE queue_outcome IS NOT NULL) AS queued,
       count(*) FILTER (WHERE queue_outcome = 'answered') AS answered,
       count(*) FILTER (WHERE queue_outcome = 'abandoned' AND waited_ms >= %(short_ms)s)
           AS abandoned,
       count(*) FILTER (WHERE queue_outcome = 'abandoned' AND waited_ms < %(short_ms)s)
           AS abandoned_short,
       count(*) FILTER (WHERE queue_outcome = 'answered'
                        AND waited_ms <= 1000 * coalesce((%(thresholds)s::jsonb ->> queue)::float8, 20))
           AS answered_in_threshold
  FROM cdrs
 WHERE arrived_at >= %(start)s AND arrived_at < %(end)s AND direction = 'in'
 GROUP BY 1, 2
 ORDER BY 1, 2
"""

SERVICE_COLUMNS = [
    Column("slot", "Interval", "text"),
    Column("dnis", "Dialed number", "text"),
    Column("calls", "Calls"),
    Column("in_ivr_only", "Served by the IVR"),
    Column("queued", "Offered to queues"),
    Column("answered", "Answered"),
    Column("abandoned", "Abandoned"),
    Column("abandoned_short", "Short abandons"),
    Column("service_level", "Service level", "%"),
]


SERVICE_COUNTS = ("calls", "in_ivr_only", "queued", "answered", "abandoned", "abandoned_short")


def _service_row(r: Mapping[str, Any]) -> dict[str, Any]:
    counted = r["queued"] - r["abandoned_short"]
    return {
        "slot": _slot(r.get("slot")),
        "dnis": r.get("dnis"),
        **{k: r[k] for k in SERVICE_COUNTS},
        "service_level": _ratio(r["answered_in_threshold"], counted),
    }


async def services_report(
    conn: AsyncConnection[Any],
    period: Period,
    *,
    thresholds: Mapping[str, float],
    short_abandon_seconds: float,
) -> Report:
    params = {
        **period.sql(),
        "thresholds": json.dumps(dict(thresholds)),
        "short_ms": short_abandon_seconds * 1000,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SERVICES_SQL, params)
        raw = await cur.fetchall()
    keys = ["calls", "in_ivr_only", "queued", "answered", "abandoned", "abandoned_short",
            "answered_in_threshold"]  # fmt: skip
    total = _service_row({**_sum_rows(raw, keys), "slot": "Total", "dnis": ""})
    return Report(
        "services",
        "Services (dialed numbers) by interval",
        {**period.describe(), "short_abandon_seconds": short_abandon_seconds},
        SERVICE_COLUMNS,
        [_service_row(r) for r in raw],
        total,
        [
            "Calls = every incoming call to the number; served by the IVR = ended in the"
            " flow without a queue or an operator.",
            "Service level = answered within the queue's threshold / (offered to queues -"
            " short abandons).",
        ],
        chart=("slot", ["calls", "answered"]),
    )


# --- cases -------------------------------------------------------------------------------

CASES_SQL = """
SELECT k.kind, coalesce(t.name, '') AS topic, coalesce(cu.region, '') AS region,
       coalesce(o.name, '') AS department, k.status,
       count(*) AS cases,
       count(*) FILTER (WHERE k.resolved_at IS NOT NULL) AS resolved,
       count(*) FILTER (WHERE k.due_at IS NOT NULL AND coalesce(k.resolved_at, %(now)s) > k.due_at)
           AS overdue,
       count(*) FILTER (WHERE k.resolved_at IS NULL AND k.due_at < %(now)s) AS overdue_open
  FROM cases k
  LEFT JOIN topics t ON t.id = k.topic_id
  LEFT JOIN customers cu ON cu.id = k.customer_id
  LEFT JOIN org_units o ON o.id = k.department_id
 WHERE k.created_at >= %(start)s AND k.created_at < %(end)s
   AND (%(confidential)s OR NOT k.confidential)
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 1, 2, 3, 4, 5
"""

CASE_COLUMNS = [
    Column("kind", "Type", "text"),
    Column("topic", "Topic", "text"),
    Column("region", "Region", "text"),
    Column("department", "Department", "text"),
    Column("status", "Status", "text"),
    Column("cases", "Cases"),
    Column("resolved", "Resolved"),
    Column("overdue", "Overdue (ever)"),
    Column("overdue_open", "Overdue and open"),
]


async def cases_report(
    conn: AsyncConnection[Any], period: Period, *, now: dt.datetime, confidential: bool
) -> Report:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(CASES_SQL, {**period.sql(), "now": now, "confidential": confidential})
        rows = [dict(r) for r in await cur.fetchall()]
    totals: dict[str, Any] = {"kind": "Total", "topic": "", "region": "", "department": "",
                              "status": ""}  # fmt: skip
    for k in ("cases", "resolved", "overdue", "overdue_open"):
        totals[k] = sum(r[k] for r in rows)
    return Report(
        "cases",
        "Cases by type, topic, region, department and status",
        {**period.describe(), "complaints_included": confidential},
        CASE_COLUMNS,
        rows,
        totals,
        [
            "Cases created in the period; status as it is now.",
            "Overdue (ever) = a deadline passed before it was resolved (or now, if open).",
        ]
        + ([] if confidential else ["Complaints are left out (the complaints role sees them)."]),
        chart=("kind", ["cases", "overdue"]),
    )


# --- staffing ----------------------------------------------------------------------------

ARRIVALS_SQL = """
SELECT cd.queue,
       extract(isodow FROM cd.queued_at AT TIME ZONE %(tz)s)::int AS weekday,
       extract(hour FROM cd.queued_at AT TIME ZONE %(tz)s)::int AS hour,
       count(*) AS calls,
       count(*) FILTER (WHERE cd.queue_outcome = 'answered') AS handled,
       coalesce(sum(cd.talk_seconds) FILTER (WHERE cd.queue_outcome = 'answered'), 0)
         + coalesce(sum(w.seconds) FILTER (WHERE cd.queue_outcome = 'answered'), 0)
           AS handle_seconds
  FROM cdrs cd
  LEFT JOIN LATERAL (
        SELECT sum(extract(epoch FROM w.ended_at - w.started_at)) AS seconds
          FROM agent_state_time w
         WHERE w.call_ref = cd.call_ref AND w.extension = cd.agent AND w.state = 'wrap_up'
           AND w.started_at >= cd.arrived_at
           AND w.started_at <= cd.ended_at + interval '1 hour') w ON true
 WHERE cd.queued_at >= %(start)s AND cd.queued_at < %(end)s AND cd.queue IS NOT NULL
   AND cd.queue_outcome IS NOT NULL
 GROUP BY 1, 2, 3
"""


async def staffing_report(
    conn: AsyncConnection[Any],
    *,
    today: dt.date,
    tz: ZoneInfo,
    weeks: int,
    targets: Mapping[str, tuple[float, float]],  # queue -> (threshold seconds, target)
    default_aht: Mapping[str, float],
) -> Report:
    """Next week (from the Monday after ``today``), per queue and hour: the calls expected
    (the average of the last ``weeks`` weeks at that weekday and hour), the AHT seen, and the
    operators Erlang C says reach the target."""
    end = dt.datetime.combine(today - dt.timedelta(days=today.weekday()), dt.time(), tz)
    start = end - dt.timedelta(weeks=weeks)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(ARRIVALS_SQL, {"start": start, "end": end, "tz": tz.key})
        raw = await cur.fetchall()
    by_queue_aht: dict[str, tuple[float, int]] = {}
    for r in raw:
        s, n = by_queue_aht.get(r["queue"], (0.0, 0))
        by_queue_aht[r["queue"]] = (s + float(r["handle_seconds"]), n + r["handled"])
    monday = end.date() + dt.timedelta(weeks=1) if end.date() <= today else end.date()
    rows = []
    for r in sorted(raw, key=lambda r: (r["queue"], r["weekday"], r["hour"])):
        queue = r["queue"]
        threshold, target = targets.get(queue, (20.0, 0.8))
        s, n = by_queue_aht[queue]
        aht = s / n if n else default_aht.get(queue, 180.0)
        per_hour = r["calls"] / weeks
        traffic = per_hour * aht / 3600
        agents = (
            staffing_erlang_c(traffic, aht, service_level=target, within_seconds=threshold)
            if traffic > 0
            else 0
        )
        level = (
            erlang_c_forecast(agents, traffic, aht, threshold)["service_level"] if agents else None
        )
        day = monday + dt.timedelta(days=r["weekday"] - 1)
        rows.append(
            {
                "slot": f"{day.isoformat()}T{r['hour']:02d}:00",
                "queue": queue,
                "calls_expected": round(per_hour, 2),
                "aht": round(aht, 1),
                "traffic_erlangs": round(traffic, 3),
                "operators_needed": agents,
                "service_level_expected": None if level is None else round(level, 4),
                "target": target,
                "threshold": threshold,
            }
        )
    return Report(
        "staffing",
        "Operators needed next week (Erlang C)",
        {"week_of": monday.isoformat(), "history_weeks": weeks, "time_zone": tz.key},
        [
            Column("slot", "Hour", "text"),
            Column("queue", "Queue", "text"),
            Column("calls_expected", "Calls expected"),
            Column("aht", "AHT", "s"),
            Column("traffic_erlangs", "Traffic (Erlangs)"),
            Column("operators_needed", "Operators needed"),
            Column("service_level_expected", "Service level expected", "%"),
            Column("target", "Target", "%"),
            Column("threshold", "Threshold", "s"),
        ],
        rows,
        {"slot": "Total", "calls_expected": round(sum(r["calls_expected"] for r in rows), 2)},
        [
            f"Calls expected = calls that queued at that weekday and hour, averaged over the"
            f" last {weeks} weeks.",
            "AHT = (talk + wrap-up) / answered calls of the queue over those weeks.",
            "Traffic = calls expected per hour x AHT / 3600; operators needed = the fewest"
            " with which Erlang C reaches the queue's service level (answered within the"
            " threshold) target.",
            "Hours without calls in the history need nobody and are not listed.",
        ],
        chart=("slot", ["operators_needed"]),
    )


__all__ = [
    "INTERVALS",
    "MAX_DAYS",
    "Column",
    "Period",
    "Report",
    "cases_report",
    "operators_report",
    "queues_report",
    "services_report",
    "staffing_report",
]
