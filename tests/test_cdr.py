"""CDRs survive a database outage: committed, or spooled to disk and replayed once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from ccorch.calls.cdr import Cdr, CdrSink
from ccorch.db.migrate import migrate
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
        sink.RETRIES = (0.05,)
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
