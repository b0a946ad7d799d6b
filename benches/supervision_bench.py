"""Supervision's costs (issue 18):

1. ``/metrics`` with 1,000 operators, 100 queues and 500 calls up: the time to build the
   exposition (every collector of the node's registry but the SIP service's, which is fed
   a snapshot of the same size) and its size; goal under 50 ms.
2. Historical reports for a month of a 200-operator center: about 500,000 CDRs and their
   operators' state stretches (ready, busy, wrap-up per call, breaks) in a real PostgreSQL;
   the time of each report; goal under 5 s for the interval (queues) report.

    scripts/setup.sh release
    .venv/bin/python benches/supervision_bench.py [--cdrs 500000] [--repeat 5]

Uses ``DATABASE_URL`` if set (a database is created and dropped on it), else an embedded
PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from prometheus_client import generate_latest

from ccorch.acd import AgentChanged, CallLeft
from ccorch.acd.service import AcdService, AgentConfig, QueueConfig
from ccorch.db.embedded import EmbeddedPostgres
from ccorch.db.migrate import migrate
from ccorch.supervision import reports
from ccorch.supervision.kpi_metrics import KpiCollector, fed_by
from ccorch.supervision.metrics import Metrics, SipCollector

KYIV = ZoneInfo("Europe/Kyiv")


class Caller:
    def __init__(self, n: int) -> None:
        self.id = n

    def offer_to_agent(self, extension: str, queue: str) -> bool:
        return True

    def revoke_offer(self, extension: str) -> None:
        pass

    def left_queue(self, outcome: str, waited_ms: int) -> None:
        pass


async def _metrics_center() -> tuple[Metrics, int]:
    queues = [QueueConfig(f"q{i:03d}", f"s{i}") for i in range(100)]
    agents = [
        AgentConfig(str(10000 + i), {f"s{i % 100}": 5, f"s{(i + 1) % 100}": 3},
                    (f"q{i % 100:03d}", f"q{(i + 1) % 100:03d}"))
        for i in range(1000)
    ]  # fmt: skip
    acd = AcdService(queues, agents)
    acd.start()
    kpis = fed_by(acd, short_abandon_seconds=5, tz=KYIV)
    rnd = random.Random(7)
    for a in agents[:800]:  # 800 logged in, 200 of them on a break
        acd.login(a.extension, a.queues)
    for a in agents[600:800]:
        acd.set_not_ready(a.extension, acd.reasons["lunch"])
    for n in range(500):  # 500 calls: most get an operator at once, the rest wait
        acd.enqueue(Caller(n), f"q{rnd.randrange(100):03d}")
    for n in range(20_000):  # a day's history in the tallies and histograms
        q = rnd.randrange(100)
        outcome = rnd.choice(("answered",) * 8 + ("abandoned", "withdrawn"))
        kpis.on_acd(CallLeft(n, q, outcome, None, rnd.randrange(60_000)))  # type: ignore[arg-type]
        kpis.on_acd(AgentChanged(10000 + rnd.randrange(1000), "busy", n))
    metrics = Metrics.create("bench")
    metrics.registry.register(KpiCollector(kpis, acd, Path(tempfile.gettempdir())))
    counters = {f"in_request_{m}": 1000 for m in ("INVITE", "ACK", "BYE", "OPTIONS", "REGISTER")}
    counters |= {f"out_response_{c}xx": 1000 for c in range(1, 7)}
    snapshot = {
        "counters": counters,
        "trunks_up": {f"trunk{i}": True for i in range(10)},
        "calls_active": 500,
        "dialogs": 1000,
    }
    metrics.registry.register(SipCollector(lambda: snapshot))
    for i in range(30):  # the HTTP routes' series
        metrics.http_requests.labels(route=f"/api/r{i}", method="GET", status="200").inc()
        metrics.http_request_seconds.labels(route=f"/api/r{i}").observe(0.01)
    return metrics, len(acd.calls)


def bench_metrics(repeat: int) -> None:
    metrics, calls = asyncio.run(_metrics_center())
    times = []
    body = b""
    for _ in range(repeat * 20):
        t = time.perf_counter()
        body = generate_latest(metrics.registry)
        times.append(time.perf_counter() - t)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(
        f"/metrics: 1,000 operators, 100 queues, {calls} calls up: "
        f"{len(body) / 1024:.0f} KiB, {series} series; build p50 "
        f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
        f"({len(times)} scrapes)"
    )


# --- reports ------------------------------------------------------------------------------


def _month(cdrs: int) -> tuple[io.StringIO, io.StringIO]:
    """A month (30 days) of a 200-operator center, 8:00-20:00: CDRs and state stretches."""
    rnd = random.Random(11)
    start = dt.datetime(2026, 11, 1, tzinfo=KYIV)
    per_day = cdrs // 30
    queues = [f"q{i}" for i in range(10)]
    c_out, s_out = io.StringIO(), io.StringIO()
    ref = 0
    for day in range(30):
        base = start + dt.timedelta(days=day, hours=8)
        for _ in range(per_day):
            ref += 1
            queued = base + dt.timedelta(seconds=rnd.uniform(0, 12 * 3600))
            waited = rnd.expovariate(1 / 25)
            agent = str(7000 + rnd.randrange(200))
            r = rnd.random()
            outcome = "answered" if r < 0.88 else "abandoned" if r < 0.97 else "withdrawn"
            talk = rnd.uniform(60, 400) if outcome == "answered" else 0.0
            hold = rnd.uniform(0, 30) if outcome == "answered" and rnd.random() < 0.2 else 0.0
            answered = queued + dt.timedelta(seconds=waited)
            ended = answered + dt.timedelta(seconds=talk)
            c_out.write(
                "\t".join(
                    [
                        str(ref), f"c{ref}", "0671234567", "100", "carrier", "abc",
                        rnd.choice(queues), agent if outcome == "answered" else r"\N",
                        "agent-hangup", "200", (queued - dt.timedelta(seconds=30)).isoformat(),
                        queued.isoformat(),
                        answered.isoformat() if outcome == "answered" else r"\N",
                        ended.isoformat(), str(int(waited * 1000)), f"{talk:.1f}",
                        f"{hold:.1f}", outcome,
                    ]
                )
                + "\n"
            )  # fmt: skip
            if outcome == "answered":
                wrap = ended + dt.timedelta(seconds=rnd.uniform(5, 40))
                s_out.write(
                    f"{agent}\tbusy\t\\N\t{answered.isoformat()}\t{ended.isoformat()}\t{ref}\n"
                )
                s_out.write(
                    f"{agent}\twrap_up\t\\N\t{ended.isoformat()}\t{wrap.isoformat()}\t{ref}\n"
                )
                s_out.write(
                    f"{agent}\tready\t\\N\t{wrap.isoformat()}\t{(wrap + dt.timedelta(seconds=rnd.uniform(1, 60))).isoformat()}\t\\N\n"
                )
        for op in range(200):  # a lunch each
            lunch = base + dt.timedelta(hours=4, minutes=rnd.randrange(60))
            s_out.write(
                f"{7000 + op}\tnot_ready\tlunch\t{lunch.isoformat()}\t{(lunch + dt.timedelta(minutes=45)).isoformat()}\t\\N\n"
            )
    c_out.seek(0)
    s_out.seek(0)
    return c_out, s_out


async def bench_reports(url: str, cdrs: int, repeat: int) -> None:
    await migrate(url)
    c_data, s_data = _month(cdrs)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY cdrs (call_ref, sip_call_id, ani, dnis, origin, flow, queue, agent,"
                " outcome, status, arrived_at, queued_at, answered_at, ended_at, waited_ms,"
                " talk_seconds, hold_seconds, queue_outcome) FROM STDIN"
            ) as copy:
                await copy.write(c_data.getvalue())
            async with cur.copy(
                "COPY agent_state_time (extension, state, reason, started_at, ended_at,"
                " call_ref) FROM STDIN"
            ) as copy:
                await copy.write(s_data.getvalue())
        await conn.execute("ANALYZE cdrs")
        await conn.execute("ANALYZE agent_state_time")
        n_cdrs = (await (await conn.execute("SELECT count(*) FROM cdrs")).fetchone() or [0])[0]
        n_st = (
            await (await conn.execute("SELECT count(*) FROM agent_state_time")).fetchone() or [0]
        )[0]
        print(
            f"loaded {n_cdrs:,} CDRs and {n_st:,} state stretches in {time.perf_counter() - t:.1f} s"
        )
        thresholds = {f"q{i}": 20.0 for i in range(10)}
        cases: list[tuple[str, Any]] = [
            ("queues by day", lambda p: reports.queues_report(
                conn, p("day"), thresholds=thresholds, short_abandon_seconds=5)),
            ("queues by hour", lambda p: reports.queues_report(
                conn, p("hour"), thresholds=thresholds, short_abandon_seconds=5)),
            ("queues by 15 min", lambda p: reports.queues_report(
                conn, p("15m"), thresholds=thresholds, short_abandon_seconds=5)),
            ("operators by day", lambda p: reports.operators_report(conn, p("day"))),
            ("operators by hour", lambda p: reports.operators_report(conn, p("hour"))),
            ("services by hour", lambda p: reports.services_report(
                conn, p("hour"), thresholds=thresholds, short_abandon_seconds=5)),
            ("staffing (4 weeks)", lambda p: reports.staffing_report(
                conn, today=dt.date(2026, 12, 2), tz=KYIV, weeks=4,
                targets={q: (20.0, 0.8) for q in thresholds}, default_aht={})),
        ]  # fmt: skip

        def period(interval: str) -> reports.Period:
            return reports.Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), interval, KYIV)

        for name, make in cases:
            times, rows = [], 0
            for _ in range(repeat):
                t = time.perf_counter()
                got = await make(period)
                times.append(time.perf_counter() - t)
                rows = len(got.rows)
            print(
                f"{name:22s} {rows:6d} rows  median {statistics.median(times):.2f} s"
                f"  min {min(times):.2f} s  max {max(times):.2f} s  ({repeat} runs)"
            )
        from ccorch.supervision.report_files import to_pdf, to_xlsx

        r = await reports.queues_report(
            conn, period("day"), thresholds=thresholds, short_abandon_seconds=5
        )
        for fmt, render in (("xlsx", to_xlsx), ("pdf", to_pdf)):
            t = time.perf_counter()
            body = render(r)
            print(
                f"queues by day as {fmt}: {time.perf_counter() - t:.2f} s, {len(body) / 1024:.0f} KiB"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cdrs", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=("metrics", "reports"))
    args = ap.parse_args()
    if args.only != "reports":
        bench_metrics(args.repeat)
    if args.only == "metrics":
        return
    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"ccorch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(external, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = external.rsplit("/", 1)[0] + "/" + name
        try:
            asyncio.run(bench_reports(url, args.cdrs, args.repeat))
        finally:
            with psycopg.connect(external, autocommit=True) as c:
                c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        return
    with tempfile.TemporaryDirectory() as d:
        server = EmbeddedPostgres(Path(d) / "pg")
        url = server.start()
        try:
            asyncio.run(bench_reports(url, args.cdrs, args.repeat))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
