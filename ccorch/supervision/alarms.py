"""Alarms for the supervisor's console (seed 004: 告警): what is wrong now, and a log of
when each alarm was raised and cleared.

Conditions, checked every ``CHECK_SECONDS`` by :func:`watch` from readings of the node:
- ``trunk_down`` (subject: the trunk): it stopped answering OPTIONS;
- ``no_operator`` (the queue): calls wait and no operator is logged in to the queue;
- ``service_level`` (the queue): the last 15 minutes' service level is under the queue's
  target, with at least ``MIN_OFFERED`` calls offered (two calls are no trend);
- ``unauthorized`` (""): over ``REFUSED_PER_5_MIN`` refused authentications or operations
  (SIP digests, API 401/403) in 5 minutes;
- ``disk`` (""): under ``DISK_FREE_RATIO`` free on the recordings' disk;
- ``cases_overdue`` (""): open cases past their deadline (counted by the overdue check).
The event stream itself being down is what the console shows when its socket drops (it
cannot hear an alarm about it), and Prometheus's ``CcorchNodeDown`` from outside.

:class:`AlarmBoard` is the sans-IO part: given the set of conditions true now, it says which
alarms were raised and which cleared. The watch stores each in ``alarms`` and publishes
``alarm.raised`` / ``alarm.cleared`` to supervisors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.routes import Route

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
MIN_OFFERED = 5
REFUSED_PER_5_MIN = 20
DISK_FREE_RATIO = 0.10
KINDS = ("trunk_down", "no_operator", "service_level", "unauthorized", "disk", "cases_overdue")

Key = tuple[str, str]  # (kind, subject)


@dataclass
class Alarm:
    kind: str
    subject: str
    detail: dict[str, Any]
    raised_at: dt.datetime
    cleared_at: dt.datetime | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "raised_at": self.raised_at.isoformat(),
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
        }


@dataclass
class AlarmBoard:
    """The alarms active now; :meth:`update` with the conditions true now."""

    active: dict[Key, Alarm] = field(default_factory=dict)

    def update(
        self, now: dt.datetime, conditions: Mapping[Key, dict[str, Any]]
    ) -> tuple[list[Alarm], list[Alarm]]:
        """(raised, cleared) by this reading. An active alarm's detail follows the reading."""
        raised = []
        for key, detail in conditions.items():
            alarm = self.active.get(key)
            if alarm is None:
                alarm = self.active[key] = Alarm(key[0], key[1], detail, now)
                raised.append(alarm)
            else:
                alarm.detail = detail
        cleared = []
        for key in [k for k in self.active if k not in conditions]:
            alarm = self.active.pop(key)
            alarm.cleared_at = now
            cleared.append(alarm)
        return raised, cleared


@dataclass
class Readings:
    """What the conditions are judged from, read from the node at one moment."""

    trunks_up: Mapping[str, bool | None]
    queues: Mapping[str, Mapping[str, Any]]  # queue -> its snapshot (figures included)
    refused_total: int  # SIP digests failed + API 401/403, since start
    disk_free: int | None  # bytes on the recordings' disk (None: unknown)
    disk_size: int | None
    cases_overdue: int | None


@dataclass
class Conditions:
    """Judges readings; keeps the refusals of the last 5 minutes to count a burst."""

    refusals: deque[tuple[float, int]] = field(default_factory=deque)

    def judge(self, r: Readings, mono: float) -> dict[Key, dict[str, Any]]:
        out: dict[Key, dict[str, Any]] = {}
        for trunk, up in r.trunks_up.items():
            if up is False:
                out[("trunk_down", trunk)] = {}
        for q, snap in r.queues.items():
            logged_in = sum(snap.get("agents", {}).values())
            if snap.get("waiting", 0) > 0 and logged_in == 0:
                out[("no_operator", q)] = {"waiting": snap["waiting"]}
            level, target = snap.get("service_level_15m"), snap.get("service_level_target")
            offered = snap.get("offered_15m") or 0
            if (
                level is not None
                and target is not None
                and offered >= MIN_OFFERED
                and level < target
            ):
                out[("service_level", q)] = {
                    "service_level": round(level, 4),
                    "target": target,
                    "offered": offered,
                }
        self.refusals.append((mono, r.refused_total))
        while self.refusals and self.refusals[0][0] < mono - 300:
            self.refusals.popleft()
        burst = r.refused_total - self.refusals[0][1]
        if burst > REFUSED_PER_5_MIN:
            out[("unauthorized", "")] = {"refused_in_5_minutes": burst}
        if r.disk_free is not None and r.disk_size:
            free = r.disk_free / r.disk_size
            if free < DISK_FREE_RATIO:
                out[("disk", "")] = {"free_ratio": round(free, 4), "free_bytes": r.disk_free}
        if r.cases_overdue:
            out[("cases_overdue", "")] = {"cases": r.cases_overdue}
        return out


# --- the node's side --------------------------------------------------------------------


def read(app: Any) -> Readings:
    service, acd = app.ctx.sip, app.ctx.acd
    refused = int(service.stats.get("auth_failures", 0)) if service is not None else 0
    for metric in app.ctx.metrics.http_requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("status") in ("401", "403"):
                refused += int(sample.value)
    free: int | None = None
    size: int | None = None
    try:
        usage = shutil.disk_usage(app.ctx.recordings_dir)
        free, size = usage.free, usage.total
    except OSError:
        pass  # not there yet: no disk alarm
    return Readings(
        trunks_up={t.name: t.up for t in service.trunks} if service is not None else {},
        queues={q: acd.queue_snapshot(q) for q in acd.queue_ids} if acd is not None else {},
        refused_total=refused,
        disk_free=free,
        disk_size=size,
        cases_overdue=getattr(app.ctx, "cases_overdue", None),
    )


async def _store(app: Any, raised: list[Alarm], cleared: list[Alarm]) -> None:
    async with app.ctx.pool.connection() as conn, conn.transaction():
        for a in raised:
            cur = await conn.execute(
                "INSERT INTO alarms (kind, subject, detail, raised_at) VALUES (%s, %s, %s, %s)"
                " RETURNING id",
                (a.kind, a.subject, Jsonb(a.detail), a.raised_at),
            )
            row = await cur.fetchone()
            a.id = int(row[0]) if row else None
        for a in cleared:
            await conn.execute(
                "UPDATE alarms SET cleared_at = %s, detail = %s WHERE id = %s",
                (a.cleared_at, Jsonb(a.detail), a.id),
            )


async def watch(
    app: Any,
    board: AlarmBoard,
    clock: Callable[[], dt.datetime],
    mono: Callable[[], float],
    every: float = CHECK_SECONDS,
) -> None:
    """Forever: judge the node's readings, store and publish what was raised or cleared."""
    async with app.ctx.pool.connection() as conn:  # a previous run's open alarms end now
        await conn.execute("UPDATE alarms SET cleared_at = %s WHERE cleared_at IS NULL", (clock(),))
    conditions = Conditions()
    while True:
        try:
            raised, cleared = board.update(clock(), conditions.judge(read(app), mono()))
            if raised or cleared:
                await _store(app, raised, cleared)
            for kind, alarms in (("alarm.raised", raised), ("alarm.cleared", cleared)):
                for a in alarms:
                    app.ctx.events.publish(kind, a.to_json())
                    (log.warning if kind == "alarm.raised" else log.info)(
                        kind, extra={"alarm": a.kind, "subject": a.subject, **a.detail}
                    )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the database away: the board keeps its state, next time
            log.warning("alarm check failed", extra={"error": str(e)})
        await asyncio.sleep(every)


# --- the API ----------------------------------------------------------------------------


async def list_alarms(request: Request) -> HTTPResponse:
    """The alarms active now and the log (newest first, the last 200)."""
    board: AlarmBoard | None = getattr(request.app.ctx, "alarms", None)
    active = [a.to_json() for a in board.active.values()] if board is not None else []
    async with request.app.ctx.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, kind, subject, detail, raised_at, cleared_at FROM alarms"
            " ORDER BY raised_at DESC, id DESC LIMIT 200"
        )
        rows = await cur.fetchall()
    log_rows = [
        {
            **r,
            "raised_at": r["raised_at"].isoformat(),
            "cleared_at": r["cleared_at"].isoformat() if r["cleared_at"] else None,
        }
        for r in rows
    ]
    return json({"active": sorted(active, key=lambda a: a["raised_at"]), "log": log_rows})


ROUTES = (
    Route(
        "GET",
        "/api/alarms",
        "Alarms active now (trunk down, no operator, service level, refused operations,"
        " recordings' disk, overdue cases) and the log of when each was raised and cleared",
        ("supervisor", "admin"),
        list_alarms,
    ),
)

__all__ = ["KINDS", "ROUTES", "Alarm", "AlarmBoard", "Conditions", "Readings", "watch"]
