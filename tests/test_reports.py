"""Historical reports against hand-made records with known answers (issue 18): calls that
cross midnight, transfers, voicemail/callback (withdrawn), short abandons, an overflow, a
node's call numbers reused after a restart; time per state cut at the day's edge; cases;
Erlang C staffing. And the files: CSV with a BOM, XLSX with a native chart, PDF with a
chart and Chinese text in a CJK font."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from ccorch.acd import erlang_c_forecast, staffing_erlang_c
from ccorch.db.migrate import migrate
from ccorch.supervision import reports
from ccorch.supervision.report_files import to_csv, to_pdf, to_xlsx

KYIV = ZoneInfo("Europe/Kyiv")
DAY = dt.date(2026, 3, 2)  # a Monday
THRESHOLDS = {"tech": 20.0, "sales": 30.0}


def at(day: int, h: int, m: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, h, m, s, tzinfo=KYIV)


CDR_COLUMNS = (
    "call_ref, sip_call_id, ani, dnis, origin, flow, queue, agent, outcome, status, arrived_at,"
    " queued_at, answered_at, ended_at, waited_ms, talk_seconds, hold_seconds, queue_outcome"
)


def cdr(
    ref: int,
    queue: str | None,
    queued: dt.datetime,
    waited: float,
    outcome: str | None,
    *,
    agent: str | None = None,
    talk: float = 0.0,
    hold: float = 0.0,
    ended: dt.datetime | None = None,
    how: str = "caller-hangup",
    dnis: str = "100",
) -> tuple[Any, ...]:
    answered = queued + dt.timedelta(seconds=waited) if outcome == "answered" else None
    end = ended or (answered or queued + dt.timedelta(seconds=waited)) + dt.timedelta(seconds=talk)
    arrived = queued - dt.timedelta(seconds=20)  # the IVR before the queue
    return (
        ref, f"call-{ref}-{queued.isoformat()}", "0671234567", dnis, "carrier", "flow", queue,
        agent, how, 200, arrived, queued if queue else None, answered, end,
        int(waited * 1000) if queue else None, talk, hold, outcome,
    )  # fmt: skip


CDRS = [
    # 1. tech, answered in 10 s (within 20), 100 s talk of which 20 s hold; 15 s wrap-up
    cdr(1, "tech", at(2, 9, 5), 10, "answered", agent="7001", talk=100, hold=20),
    # 2. tech, answered in 25 s (over 20), 60 s, then transferred by the operator
    cdr(2, "tech", at(2, 9, 20), 25, "answered", agent="7002", talk=60, how="transferred"),
    cdr(3, "tech", at(2, 9, 40), 40, "abandoned"),
    cdr(4, "tech", at(2, 9, 50), 3, "abandoned"),  # a short abandon (under 5 s)
    cdr(5, "tech", at(2, 10, 10), 50, "withdrawn"),  # left a voicemail
    # 6. tech, queued at 23:59:50, answered at 23:59:55, ended 00:02:00 the next day
    cdr(6, "tech", at(2, 23, 59, 50), 5, "answered", agent="7001", talk=125),
    cdr(7, "sales", at(2, 9, 10), 30, "answered", agent="7002", talk=50),  # on the threshold
    cdr(8, "tech", at(2, 11), 60, "overflowed"),
    # 9. the next day, after a restart: call number 1 again, the same operator
    cdr(1, "tech", at(3, 10), 2, "answered", agent="7001", talk=40),
    # 10. a caller the IVR served alone (the balance), on number 101
    cdr(10, None, at(2, 12), 0, None, how="ivr-flow", dnis="101"),
]

# (extension, state, reason, start, end, call_ref)
STRETCHES = [
    ("7001", "ready", None, at(2, 9), at(2, 9, 5, 10), None),
    ("7001", "busy", None, at(2, 9, 5, 10), at(2, 9, 6, 50), 1),
    ("7001", "wrap_up", None, at(2, 9, 6, 50), at(2, 9, 7, 5), 1),
    ("7001", "not_ready", "lunch", at(2, 12), at(2, 13), None),
    ("7001", "ready", None, at(2, 23), at(2, 23, 59, 55), None),
    ("7001", "busy", None, at(2, 23, 59, 55), at(3, 0, 2), 6),
    ("7001", "wrap_up", None, at(3, 0, 2), at(3, 0, 2, 8), 6),
    ("7002", "wrap_up", None, at(2, 9, 21, 25), at(2, 9, 21, 30), 2),
    ("7002", "wrap_up", None, at(2, 9, 11, 20), at(2, 9, 11, 30), 7),
    ("7001", "busy", None, at(3, 10, 0, 2), at(3, 10, 0, 42), 1),
    ("7001", "wrap_up", None, at(3, 10, 0, 42), at(3, 10, 0, 49), 1),
]


def run(url: str, body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await body(conn)

    return asyncio.run(go())


async def _load(conn: psycopg.AsyncConnection[Any]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({', '.join(['%s'] * 18)})", CDRS
        )
        await cur.executemany(
            "INSERT INTO agent_state_time (extension, state, reason, started_at, ended_at,"
            " call_ref) VALUES (%s, %s, %s, %s, %s, %s)",
            STRETCHES,
        )


def period(first: int, last: int, interval: str = "day") -> reports.Period:
    return reports.Period(dt.date(2026, 3, first), dt.date(2026, 3, last), interval, KYIV)


def test_the_queue_report_gives_the_known_answers(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> reports.Report:
        await _load(conn)
        return await reports.queues_report(
            conn, period(2, 3), thresholds=THRESHOLDS, short_abandon_seconds=5
        )

    r = run(fresh_db, body)
    rows = {(x["slot"], x["queue"]): x for x in r.rows}
    assert set(rows) == {
        ("2026-03-02T00:00", "tech"),
        ("2026-03-02T00:00", "sales"),
        ("2026-03-03T00:00", "tech"),
    }
    tech = rows[("2026-03-02T00:00", "tech")]
    # the call crossing midnight counts on the day it queued
    assert {k: tech[k] for k in ("offered", "answered", "abandoned", "abandoned_short",
                                 "overflowed", "withdrawn", "transfers")} == {
        "offered": 7, "answered": 3, "abandoned": 1, "abandoned_short": 1, "overflowed": 1,
        "withdrawn": 1, "transfers": 1,
    }  # fmt: skip
    assert tech["service_level"] == pytest.approx(2 / 6)  # calls 1 and 6 within 20 s
    assert tech["abandon_rate"] == pytest.approx(1 / 6)
    assert tech["abandon_rate_with_short"] == pytest.approx(2 / 7)
    assert tech["asa"] == pytest.approx((10 + 25 + 5) / 3, abs=1e-3)
    # talk 80 + 60 + 125, hold 20, wrap-up 15 + 5 + 8 (the 8 s after midnight follow call 6;
    # call number 1's 7 s the next day belong to the next day's call 1)
    assert tech["talk"] == pytest.approx(265 / 3, abs=1e-3)
    assert tech["hold"] == pytest.approx(20 / 3, abs=1e-3)
    assert tech["wrap_up"] == pytest.approx(28 / 3, abs=1e-3)
    assert tech["aht"] == pytest.approx(313 / 3, abs=1e-3)
    sales = rows[("2026-03-02T00:00", "sales")]
    assert (sales["service_level"], sales["asa"], sales["aht"]) == (1.0, 30.0, 60.0)
    next_day = rows[("2026-03-03T00:00", "tech")]
    assert (next_day["offered"], next_day["aht"], next_day["wrap_up"]) == (1, 47.0, 7.0)
    assert r.totals["offered"] == 9 and r.totals["answered"] == 5
    assert r.totals["service_level"] == pytest.approx(4 / 8)
    assert any("Service level" in f for f in r.formulas)

    # by hour, one queue: the midnight call is in the 23:00 slot
    hourly = run(
        fresh_db,
        lambda conn: reports.queues_report(
            conn,
            period(2, 2, "hour"),
            thresholds=THRESHOLDS,
            short_abandon_seconds=5,
            queue="tech",
        ),
    )
    slots = {x["slot"]: x["offered"] for x in hourly.rows}
    assert slots == {"2026-03-02T09:00": 4, "2026-03-02T10:00": 1, "2026-03-02T11:00": 1,
                     "2026-03-02T23:00": 1}  # fmt: skip


def test_the_operator_report_cuts_time_at_the_days_edge(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> reports.Report:
        await _load(conn)
        await conn.execute(
            "INSERT INTO users (login, full_name, password_hash, extension) VALUES"
            " ('t7001', 'Taras Melnyk', 'x', '7001')"
        )
        return await reports.operators_report(conn, period(2, 3), operator="7001")

    r = run(fresh_db, body)
    rows = {x["slot"]: x for x in r.rows}
    day1, day2 = rows["2026-03-02T00:00"], rows["2026-03-03T00:00"]
    assert day1["name"] == "Taras Melnyk"
    assert (day1["ready"], day1["busy"], day1["wrap_up"], day1["not_ready"]) == (
        3905.0,
        105.0,  # 100 s, and the 5 s before midnight of the call that crossed it
        15.0,
        3600.0,
    )
    assert day1["not_ready_reasons"] == {"lunch": 3600.0}
    assert day1["logged_in"] == 7625.0
    assert day1["occupancy"] == pytest.approx(120 / 4025)
    assert (day1["handled"], day1["talk"], day1["hold"]) == (2, 102.5, 10.0)
    assert day1["aht"] == pytest.approx((205 + 20 + 15) / 2)
    assert (day2["busy"], day2["wrap_up"], day2["handled"]) == (160.0, 15.0, 1)
    assert r.totals["busy"] == 265.0


def test_the_services_report_counts_per_dialed_number(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> reports.Report:
        await _load(conn)
        return await reports.services_report(
            conn, period(2, 2), thresholds=THRESHOLDS, short_abandon_seconds=5
        )

    r = run(fresh_db, body)
    rows = {x["dnis"]: x for x in r.rows}
    assert (rows["101"]["calls"], rows["101"]["in_ivr_only"], rows["101"]["queued"]) == (1, 1, 0)
    assert (rows["100"]["calls"], rows["100"]["queued"], rows["100"]["answered"]) == (8, 8, 4)
    assert rows["100"]["service_level"] == pytest.approx(3 / 7)


def test_the_cases_report_groups_and_hides_complaints_without_the_role(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> tuple[reports.Report, reports.Report]:
        await conn.execute(
            """INSERT INTO customers (kind, name, region) VALUES ('person', 'A', 'Kyiv');
               INSERT INTO topics (name) VALUES ('No internet');
               INSERT INTO org_units (name) VALUES ('Field service');"""
        )
        rows = [
            ("instant", "resolved", False, at(2, 9), at(2, 12), at(2, 11)),  # late
            ("dispatch", "open", False, at(2, 10), None, at(2, 11)),  # overdue, open
            ("dispatch", "open", False, at(2, 10), None, at(4, 11)),  # not due yet
            ("escalation", "open", True, at(2, 10), None, None),  # a complaint
        ]
        for kind, status, secret, created, resolved, due in rows:
            await conn.execute(
                """INSERT INTO cases (customer_id, topic_id, department_id, kind, status,
                                      subject, confidential, created_at, resolved_at, due_at)
                   VALUES (1, 1, 1, %s, %s, 's', %s, %s, %s, %s)""",
                (kind, status, secret, created, resolved, due),
            )
        now = at(3, 9)
        return (
            await reports.cases_report(conn, period(2, 2), now=now, confidential=False),
            await reports.cases_report(conn, period(2, 2), now=now, confidential=True),
        )

    hidden, shown = run(fresh_db, body)
    assert hidden.totals["cases"] == 3 and shown.totals["cases"] == 4
    by = {(x["kind"], x["status"]): x for x in hidden.rows}
    assert by[("dispatch", "open")]["cases"] == 2
    assert by[("dispatch", "open")]["overdue_open"] == 1
    assert by[("instant", "resolved")]["overdue"] == 1
    assert by[("instant", "resolved")]["region"] == "Kyiv"
    assert by[("instant", "resolved")]["topic"] == "No internet"
    assert hidden.totals["overdue"] == 2


def test_staffing_needs_erlang_c_from_the_last_weeks(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> reports.Report:
        rows = []
        ref = 100
        for week in range(1, 5):  # 40 calls at 10:00 on each of the last four Mondays
            monday = dt.datetime(2026, 3, 9, 10, tzinfo=KYIV) - dt.timedelta(weeks=week)
            for i in range(40):
                ref += 1
                rows.append(
                    cdr(
                        ref,
                        "tech",
                        monday + dt.timedelta(seconds=60 * i),
                        5,
                        "answered",
                        agent="7001",
                        talk=180,
                    )
                )
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({', '.join(['%s'] * 18)})", rows
            )
        return await reports.staffing_report(
            conn,
            today=dt.date(2026, 3, 11),  # a Wednesday: next week starts on the 16th
            tz=KYIV,
            weeks=4,
            targets={"tech": (20.0, 0.8)},
            default_aht={},
        )

    r = run(fresh_db, body)
    assert len(r.rows) == 1
    row = r.rows[0]
    needed = staffing_erlang_c(2.0, 180.0, service_level=0.8, within_seconds=20)
    assert row["slot"] == "2026-03-16T10:00" and row["queue"] == "tech"
    assert (row["calls_expected"], row["aht"], row["traffic_erlangs"]) == (40.0, 180.0, 2.0)
    assert row["operators_needed"] == needed and needed >= 3
    assert erlang_c_forecast(needed - 1, 2.0, 180.0, 20.0)["service_level"] < 0.8
    assert row["service_level_expected"] >= 0.8


def test_report_files_carry_the_table_a_chart_and_the_formulas(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> reports.Report:
        await _load(conn)
        await conn.execute("UPDATE cdrs SET queue = 'техподдержка' WHERE queue = 'sales'")
        await conn.execute("UPDATE cdrs SET queue = '技术支持' WHERE queue = 'tech'")
        return await reports.queues_report(
            conn, period(2, 3), thresholds={}, short_abandon_seconds=5
        )

    r = run(fresh_db, body)
    text = to_csv(r)
    assert text.startswith("\ufeff".encode())
    decoded = text.decode("utf-8-sig")
    assert "техподдержка" in decoded and "技术支持" in decoded and "Service level" in decoded
    book = zipfile.ZipFile(io.BytesIO(to_xlsx(r)))
    names = book.namelist()
    assert "xl/charts/chart1.xml" in names, names  # a native chart, not a picture
    assert b"Formulas" in book.read("xl/workbook.xml")
    pdf = to_pdf(r)
    assert pdf.startswith(b"%PDF")
    inside = _pdf_objects(pdf)
    assert b"WenQuanYi" in inside  # the Chinese queue name set in the CJK font
    assert re.search(rb"/Subtype\s*/Image", inside)  # the chart


def _pdf_objects(pdf: bytes) -> bytes:
    """The PDF with its compressed streams inflated (fonts and images are named in them)."""
    out = [pdf]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(m.group(1)))
        except zlib.error:
            continue
    return b"".join(out)
