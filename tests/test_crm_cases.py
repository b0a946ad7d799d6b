"""Cases and contacts on a real PostgreSQL with a controllable clock: the seed scenario
(escalation → supervisor approval → department resolves → callback task → overdue alarm),
business-hours deadlines over holidays, confidential complaints, history paging."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ccorch.crm import bootstrap, cases, store
from ccorch.crm.cases import KYIV, BusinessHours, CaseError
from ccorch.db.migrate import migrate

HOURS = BusinessHours()


def kyiv(y: int, m: int, d: int, h: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, minute, tzinfo=KYIV)


@pytest.mark.parametrize(
    ("start", "hours", "holidays", "due"),
    [
        (
            kyiv(2026, 11, 20, 17),
            2,
            [],
            kyiv(2026, 11, 23, 10),
        ),  # Friday 17:00 + 2 h -> Monday 10:00
        (
            kyiv(2026, 11, 21, 12),
            1,
            [],
            kyiv(2026, 11, 23, 10),
        ),  # Saturday counts from Monday 09:00
        (kyiv(2026, 11, 23, 7), 9, [], kyiv(2026, 11, 23, 18)),  # before opening: the whole day
        (kyiv(2026, 11, 23, 9), 48, [], kyiv(2026, 11, 30, 12)),  # 48 h = 5 days and 3 hours
        (
            kyiv(2026, 12, 31, 17),
            2,
            [dt.date(2027, 1, 1)],
            kyiv(2027, 1, 4, 10),
        ),  # New Year's Day off
    ],
)
def test_deadlines_count_business_hours_only(
    start: dt.datetime, hours: float, holidays: list[dt.date], due: dt.datetime
) -> None:
    assert HOURS.add(start, hours, holidays) == due


def run(url: str, body: Callable[..., Awaitable[Any]]) -> Any:
    async def go() -> Any:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await bootstrap.load_prefixes(conn)
            await bootstrap.load_demo(conn, Path("/unused"), "an admin password")
            users = {}
            for role in ("operator", "supervisor", "complaints"):
                uid = await store.create_user(
                    conn, role, role.title(), "a long password", [role], None
                )
                users[role] = await store.user_by_id(conn, uid)
            cur = await conn.execute(
                "INSERT INTO org_units (name) VALUES ('Network department') RETURNING id"
            )
            dept = (await cur.fetchone())[0]  # type: ignore[index]
            cur = await conn.execute(  # the demo's own topic
                "SELECT id FROM topics WHERE name = 'Internet' AND parent_id IS NULL"
            )
            internet = (await cur.fetchone())[0]  # type: ignore[index]
            cur = await conn.execute(
                "INSERT INTO topics (parent_id, name) VALUES (%s, 'No connection') RETURNING id",
                (internet,),
            )
            no_link = (await cur.fetchone())[0]  # type: ignore[index]
            await conn.execute(
                "INSERT INTO sla_rules (kind, topic_id, hours) VALUES ('escalation', NULL, 72), ('escalation', %s, 48), ('instant', NULL, 1)",
                (no_link,),
            )
            await conn.execute(
                "INSERT INTO holidays (day, name) VALUES ('2026-12-25', 'Christmas')"
            )
            await conn.commit()
            result = await body(conn, users, {"dept": dept, "no_link": no_link})
            await conn.commit()
            return result

    return asyncio.run(go())


def test_escalation_with_approval_resolution_callback_and_overdue_alarm(fresh_db: str) -> None:
    t0 = kyiv(2026, 11, 23, 10)  # a Monday

    async def body(
        conn: psycopg.AsyncConnection[Any], users: dict[str, store.User], ids: dict[str, int]
    ) -> None:
        ivan = (await store.identify_by_ani(conn, "+380671234567", "380"))[0].customer_id
        op, sup = users["operator"], users["supervisor"]
        new = {
            "customer_id": ivan,
            "topic_id": ids["no_link"],
            "kind": "escalation",
            "subject": "No internet since morning",
            "department_id": ids["dept"],
            "callback_required": True,
        }
        case = await cases.create_case(conn, new, op, t0, HOURS)
        # The topic's 48 business hours, from Monday 10:00: the next Monday 13:00.
        assert case["due_at"] == kyiv(2026, 11, 30, 13).astimezone(dt.UTC).isoformat()
        cid = case["id"]
        await cases.transition(conn, cid, {"to": "pending_approval"}, op, t0)
        with pytest.raises(CaseError) as e:
            await cases.transition(conn, cid, {"to": "approved"}, op, t0)
        assert e.value.status == 403
        with pytest.raises(CaseError) as e:
            await cases.transition(conn, cid, {"to": "closed"}, sup, t0)
        assert e.value.status == 409 and "allowed: approved, rejected" in str(e.value)
        await cases.transition(
            conn, cid, {"to": "approved", "comment": "send a technician"}, sup, t0
        )
        await cases.transition(conn, cid, {"to": "in_progress"}, op, t0 + dt.timedelta(hours=1))
        # A second case that nobody resolves in time.
        late = await cases.create_case(
            conn, dict(new, subject="Slow speed", callback_required=False), op, t0, HOURS
        )
        # Before the deadline nothing is overdue; the department resolves the first case.
        assert await cases.raise_overdue_alarms(conn, kyiv(2026, 11, 30, 12)) == []
        done = await cases.transition(
            conn, cid, {"to": "resolved", "comment": "cable replaced"}, op, kyiv(2026, 11, 27, 15)
        )
        assert done["callback_task_id"] is not None
        # The clock passes the deadline: one alarm, for the unresolved case, raised once.
        alarms = await cases.raise_overdue_alarms(conn, kyiv(2026, 11, 30, 13, 1))
        assert [a["case_id"] for a in alarms] == [late["id"]]
        assert await cases.raise_overdue_alarms(conn, kyiv(2026, 11, 30, 14)) == []
        report = await cases.overdue_report(conn, kyiv(2026, 11, 30, 15), sup)
        assert [(r["case_id"], r["overdue_hours"]) for r in report] == [(late["id"], 2.0)]
        full = await cases.get_case(conn, cid, op)
        assert [(t["from"], t["to"]) for t in full["transitions"]] == [
            (None, "open"),
            ("open", "pending_approval"),
            ("pending_approval", "approved"),
            ("approved", "in_progress"),
            ("in_progress", "resolved"),
        ]
        assert (
            full["transitions"][2]["user_id"] == sup.id
            and full["transitions"][2]["comment"] == "send a technician"
        )
        assert [t["kind"] for t in full["tasks"]] == ["callback"]
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'case' AND action = 'overdue'"
        )
        assert await cur.fetchone() == (1,)

    run(fresh_db, body)


def test_complaints_are_confidential(fresh_db: str) -> None:
    t0 = kyiv(2026, 11, 23, 10)

    async def body(
        conn: psycopg.AsyncConnection[Any], users: dict[str, store.User], ids: dict[str, int]
    ) -> None:
        complaint = await cases.create_case(
            conn,
            {"kind": "instant", "subject": "Rude operator", "confidential": True},
            users["operator"],
            t0,
            HOURS,
        )
        with pytest.raises(CaseError) as e:
            await cases.get_case(conn, complaint["id"], users["operator"])
        assert e.value.status == 404
        with pytest.raises(CaseError):
            await cases.get_case(conn, complaint["id"], users["supervisor"])
        seen = await cases.get_case(conn, complaint["id"], users["complaints"])
        assert seen["subject"] == "Rude operator"
        # Due in one business hour (the instant rule); the overdue report hides it from others.
        late = kyiv(2026, 11, 23, 12)
        assert await cases.overdue_report(conn, late, users["supervisor"]) == []
        assert len(await cases.overdue_report(conn, late, users["complaints"])) == 1

    run(fresh_db, body)


def test_history_lists_contacts_of_every_channel_newest_first_in_pages(fresh_db: str) -> None:
    async def body(
        conn: psycopg.AsyncConnection[Any], users: dict[str, store.User], ids: dict[str, int]
    ) -> None:
        ivan = (await store.identify_by_contract(conn, "1001"))[0].customer_id
        channels = ["call", "sms", "email", "chat", "voicemail", "call", "call"]
        # Logged out of order: the history must still come back by start time.
        for i in (3, 0, 6, 1, 5, 2, 4):
            await cases.add_interaction(
                conn,
                {
                    "customer_id": ivan,
                    "channel": channels[i],
                    "direction": "in",
                    "started_at": f"2026-11-2{i}T10:00:00+02:00",
                    "notes": f"contact {i}",
                },
                users["operator"],
            )
        page1 = await cases.history(conn, ivan, 3, None)
        page2 = await cases.history(conn, ivan, 3, page1["next_before"])
        page3 = await cases.history(conn, ivan, 3, page2["next_before"])
        notes = [x["notes"] for p in (page1, page2, page3) for x in p["items"]]
        assert notes == [f"contact {i}" for i in range(6, -1, -1)]
        assert page3["next_before"] is None
        with pytest.raises(Exception, match="started_at"):
            await cases.add_interaction(
                conn,
                {
                    "customer_id": ivan,
                    "channel": "call",
                    "direction": "in",
                    "started_at": "yesterday",
                },
                users["operator"],
            )

    run(fresh_db, body)
