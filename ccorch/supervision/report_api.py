"""Historical reports over HTTP [supervisor, complaints, admin]:

- ``GET /api/reports/{name}?from=YYYY-MM-DD&to=YYYY-MM-DD&interval=15m|hour|day`` with
  ``queue`` (queues), ``operator`` (operators), ``weeks`` (staffing: history, default 4) and
  ``format=json|csv|xlsx|pdf`` (default json). Names: ``queues``, ``operators``,
  ``services``, ``cases``, ``staffing``. Days are the center's (``supervision.time_zone``);
  ``to`` is included. Files are rendered off the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sanic import Request
from sanic.response import HTTPResponse, json, raw

from ccorch.api.routes import Param, Route
from ccorch.api.validation import ValidationFailed
from ccorch.errors import RequestRefused
from ccorch.supervision import reports
from ccorch.supervision.report_files import FORMATS

NAMES = ("queues", "operators", "services", "cases", "staffing")


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    first: dt.date | None = Field(default=None, alias="from")
    last: dt.date | None = Field(default=None, alias="to")
    interval: Literal["15m", "hour", "day"] = "day"
    queue: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    operator: Annotated[str, Field(pattern=r"^[0-9]{1,16}$")] | None = None
    weeks: Annotated[int, Field(ge=1, le=26)] = 4
    format: Literal["json", "csv", "xlsx", "pdf"] = "json"


def _query(args: dict[str, list[str]], today: dt.date) -> tuple[ReportQuery, dt.date, dt.date]:
    try:
        q = ReportQuery.model_validate({k: v[-1] for k, v in args.items()})
    except ValidationError as e:
        raise ValidationFailed(
            {".".join(str(p) for p in err["loc"]) or "query": err["msg"] for err in e.errors()}
        ) from None
    first = q.first or today
    last = q.last or first
    if last < first:
        raise ValidationFailed({"to": "on or after from"})
    if (last - first).days + 1 > reports.MAX_DAYS:
        raise ValidationFailed({"to": f"at most {reports.MAX_DAYS} days after from"})
    return q, first, last


async def get_report(request: Request, name: str) -> HTTPResponse:
    if name not in NAMES:
        raise RequestRefused(404, f"no report {name!r}: one of {', '.join(NAMES)}")
    app = request.app
    config = app.ctx.config.supervision
    tz = ZoneInfo(config.time_zone)
    today = app.ctx.clock().astimezone(tz).date()
    q, first, last = _query(request.args, today)
    period = reports.Period(first, last, q.interval, tz)
    acd = app.ctx.acd
    queues = acd.queues if acd is not None else {}
    thresholds = {n: c.service_level_seconds for n, c in queues.items()}
    roles = request.ctx.user.roles
    async with app.ctx.pool.connection() as conn:
        report: reports.Report
        if name == "queues":
            report = await reports.queues_report(
                conn,
                period,
                thresholds=thresholds,
                short_abandon_seconds=config.short_abandon_seconds,
                queue=q.queue,
            )
        elif name == "operators":
            report = await reports.operators_report(conn, period, operator=q.operator)
        elif name == "services":
            report = await reports.services_report(
                conn,
                period,
                thresholds=thresholds,
                short_abandon_seconds=config.short_abandon_seconds,
            )
        elif name == "cases":
            report = await reports.cases_report(
                conn,
                period,
                now=app.ctx.clock(),
                confidential=bool(roles & {"complaints", "admin"}),
            )
        else:
            report = await reports.staffing_report(
                conn,
                today=today,
                tz=tz,
                weeks=q.weeks,
                targets={
                    n: (c.service_level_seconds, c.service_level_target) for n, c in queues.items()
                },
                default_aht={n: c.expected_handle_seconds for n, c in queues.items()},
            )
    if q.format == "json":
        return json(report.to_json())
    mime, ext, render = FORMATS[q.format]
    body = await asyncio.to_thread(render, report)
    filename = f"ccorch-{name}-{first.isoformat()}-{last.isoformat()}.{ext}"
    return raw(
        body,
        content_type=mime,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


ROUTES = (
    Route(
        "GET",
        "/api/reports/<name:str>",
        "A historical report (queues, operators, services, cases, staffing) as a table (JSON),"
        " CSV, XLSX with a chart, or PDF with a chart; formulas included",
        ("supervisor", "complaints", "admin"),
        get_report,
        params=(
            Param("from", "query", dt.date),
            Param("to", "query", dt.date),
            Param("interval", "query", Literal["15m", "hour", "day"]),
            Param("queue", "query", Annotated[str, Field(max_length=64)]),
            Param("operator", "query", Annotated[str, Field(pattern=r"^[0-9]{1,16}$")]),
            Param("weeks", "query", Annotated[int, Field(ge=1, le=26)]),
            Param("format", "query", Literal["json", "csv", "xlsx", "pdf"]),
        ),
        responses={404: "no such report", 422: "a bad parameter"},
    ),
)

__all__ = ["NAMES", "ROUTES"]
