"""CDRs survive a database outage: committed, or spooled to disk and replayed once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from ccorch.calls.cdr import Cdr, CdrSink
from ccorch.config import DatabaseConfig
from ccorch.db.embedded import EmbeddedPostgres
from ccorch.db.migrate import migrate
from ccorch.db.pool import open_pool
from tests.conftest import free_port


def _cdr(call_id: str) -> Cdr:
    t0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
    return Cdr(
        call_ref=7,
        sip_call_id=call_id,
        ani="+380441234567",
        dnis="100",
        origin="carrier",
        flow="abc-internet-ru",
        queue="tech",
        agent="7001",
        customer_id=None,
        outcome="caller-hangup",
        status=200,
        arrived_at=t0,
        ivr_ended_at=t0 + dt.timedelta(seconds=12),
        queued_at=t0 + dt.timedelta(seconds=12),
        offered_at=t0 + dt.timedelta(seconds=14),
        answered_at=t0 + dt.timedelta(seconds=17),
        ended_at=t0 + dt.timedelta(seconds=95),
        waited_ms=5000,
        talk_seconds=78.0,
        recording_path="var/recordings/2026/11/23/x.wav",
    )


async def _pool(url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=0, max_size=2, timeout=1.0, open=False)
    await pool.open()
    return pool


def test_an_outage_spools_the_record_and_the_next_start_writes_it_once(
    fresh_db: str, tmp_path: Path
) -> None:
    spool = tmp_path / "cdr-spool.jsonl"
    down_url = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1"

    async def go() -> None:
        await migrate(fresh_db)
        # The database is unreachable: commit() returns only once the record is on disk.
        down = await _pool(down_url)
        sink = CdrSink(down, spool)
        await sink.commit(_cdr("call-a@trunk"))
        await sink.commit(_cdr("call-b@trunk"))
        await down.close()
        assert (sink.written, sink.spooled) == (0, 2)
        lines = spool.read_text().splitlines()
        assert [json.loads(x)["sip_call_id"] for x in lines] == ["call-a@trunk", "call-b@trunk"]
        # A crash mid-append leaves a torn line: it is kept for a person, not lost or fatal.
        with spool.open("a") as f:
            f.write('{"call_ref": 9, "sip_ca')

        up = await _pool(fresh_db)
        sink = CdrSink(up, spool)
        assert await sink.replay() == 2
        assert spool.read_text() == '{"call_ref": 9, "sip_ca\n'
        # A record already in (the acknowledgement was lost, or a replay ran twice): no copy.
        await sink.commit(_cdr("call-a@trunk"))
        await up.close()

    asyncio.run(go())
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT sip_call_id, queue, agent, waited_ms, talk_seconds, answered_at - arrived_at"
            " FROM cdrs ORDER BY sip_call_id"
        ).fetchall()
    assert rows == [
        ("call-a@trunk", "tech", "7001", 5000, 78.0, dt.timedelta(seconds=17)),
        ("call-b@trunk", "tech", "7001", 5000, 78.0, dt.timedelta(seconds=17)),
    ]


def test_a_database_that_dies_under_the_node_costs_a_call_at_most_the_spool_budget(
    tmp_path: Path,
) -> None:
    """The node's own pool (default settings: 5 s to acquire a connection) on a server that
    then stops: the record is spooled once the 3 s budget is spent, not after three pool
    timeouts (~18 s, which held the caller's media and the operator that long)."""
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    spool = tmp_path / "cdr-spool.jsonl"

    async def go() -> float:
        await migrate(url)
        pool = await open_pool(url, DatabaseConfig())
        try:
            server.stop()  # the outage: the pool's connections and the server are gone
            sink = CdrSink(pool, spool)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await sink.commit(_cdr("call-c@trunk"))
            took = loop.time() - t0
            assert (sink.written, sink.spooled) == (0, 1)
            return took
        finally:
            await pool.close(timeout=1)

    took = asyncio.run(go())
    assert [json.loads(x)["sip_call_id"] for x in spool.read_text().splitlines()] == [
        "call-c@trunk"
    ]
    # the budget, plus the spool's fsync and the loop's slack on a loaded machine
    assert CdrSink.BUDGET_SECONDS - 0.5 <= took <= CdrSink.BUDGET_SECONDS + 1.0, took
