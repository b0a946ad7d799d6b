"""The CRM on a real PostgreSQL: the seed scenarios as tests (identify by ANI, register
with a service's required fields, authorize by PIN with lockout on a controllable clock),
search in three scripts, regions from number prefixes, and the append-only audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ccorch.api.validation import ValidationFailed
from ccorch.crm import bootstrap, store
from ccorch.db.migrate import migrate
from ccorch.phones import PhoneError, normalize


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("+380 67 123-45-67", "380", "380671234567"),
        ("067 123 45 67", "380", "380671234567"),
        ("(044) 555-12-34", "380", "380445551234"),
        ("00380445551234", "380", "380445551234"),
        ("380671234567", "380", "380671234567"),
        ("671234567", "380", "380671234567"),
        ("8 (495) 123-45-67", "7", "74951234567"),
        ("+7 495 123 45 67", "380", "74951234567"),
        ("010 6552 9988", "86", "861065529988"),
        ("+86 138 0013 8000", "380", "8613800138000"),
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, country: str, e164: str) -> None:
    assert normalize(raw, country) == e164


@pytest.mark.parametrize("raw", ["", "abc", "+0 44 123", "12", "+1234567890123456", "٠٦٧١٢٣٤٥٦٧"])
def test_bad_phone_numbers_say_why(raw: str) -> None:
    with pytest.raises(PhoneError):
        normalize(raw)


def run_db(url: str, body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await bootstrap.load_prefixes(conn)
            await bootstrap.load_demo(conn, Path("/nonexistent-unused"), "correct horse battery")
            result = await body(conn)
            await conn.commit()
            return result

    return asyncio.run(go())


@pytest.fixture
def demo_db(fresh_db: str) -> str:
    return fresh_db


def test_caller_is_identified_by_ani_exactly_then_by_last_digits(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        exact = await store.identify_by_ani(conn, "+380671234567", "380")
        assert [(m.name, m.how) for m in exact] == [("Ivan Petrenko", "ani")]
        national = await store.identify_by_ani(conn, "0671234567", "380")
        assert [m.name for m in national] == ["Ivan Petrenko"]
        # A trunk that sends only the local part: the last seven digits still find him.
        tail = await store.identify_by_ani(conn, "5551234", "380")
        assert [(m.name, m.how) for m in tail] == [("Ivan Petrenko", "ani_last_digits")]
        assert await store.identify_by_ani(conn, "+380 99 000 00 00", "380") == []
        assert await store.identify_by_ani(conn, "anonymous", "380") == []
        by_contract = await store.identify_by_contract(conn, "1001")
        assert [m.name for m in by_contract] == ["Ivan Petrenko"]
        # Two customers sharing a number: both come back, for the operator to choose.
        cid = await store.create_customer(
            conn,
            {"name": "Maria Petrenko", "phones": ["044 555 12 34"]},
            required=(),
            country="380",
            actor=None,
        )
        both = await store.identify_by_ani(conn, "+380445551234", "380")
        assert sorted(m.customer_id for m in both)[-1] == cid and len(both) == 2

    run_db(demo_db, body)


def test_a_new_calls_lookup_finds_the_same_customers_in_one_round_trip_when_unknown(
    demo_db: str,
) -> None:
    """The call path's look-up (blacklist, region, exact and last-digits match in one
    statement) agrees with the identification by ANI, and an unknown caller, or one known
    only by the last digits, costs one statement."""
    from ccorch.crm.screen import look_up_caller

    class Counting:
        def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
            self.conn, self.statements = conn, 0

        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return await self.conn.execute(*args, **kwargs)

        def cursor(self, *args: Any, **kwargs: Any) -> Any:  # (the card's queries)
            return self.conn.cursor(*args, **kwargs)

    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        today = dt.date(2026, 12, 8)
        for ani in ("+380671234567", "5551234", "+380990000000", "anonymous"):
            counting = Counting(conn)
            caller = await look_up_caller(counting, ani, "380", today)  # type: ignore[arg-type]
            expected = await store.identify_by_ani(conn, ani, "380")
            assert [(m.customer_id, m.how, m.score) for m in caller.matches] == [
                (m.customer_id, m.how, m.score) for m in expected
            ], ani
            if len(expected) == 1:  # Ivan, exactly or by the last seven digits: his card
                assert caller.screen["customer"]["id"] == expected[0].customer_id
            else:
                assert counting.statements == 1, (ani, counting.statements)

    run_db(demo_db, body)


def test_preferred_operators_are_the_manager_then_the_last_one_who_served(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        async def customer(name: str) -> int:
            cur = await conn.execute("SELECT id FROM customers WHERE name = %s", (name,))
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        async def served(cid: int, agent: str, days_ago: int, call_id: str) -> None:
            await conn.execute(
                """INSERT INTO cdrs (call_ref, sip_call_id, ani, dnis, origin, agent, customer_id,
                                     outcome, status, arrived_at, answered_at, ended_at)
                   VALUES (1, %s, '', '100', 'carrier', %s, %s, 'agent-hangup', 200,
                           now() - make_interval(days => %s), now() - make_interval(days => %s),
                           now() - make_interval(days => %s))""",
                (call_id, agent, cid, days_ago, days_ago, days_ago),
            )

        olena, ivan = await customer("Olena Kovalenko"), await customer("Ivan Petrenko")
        # The demo's VIP has a manager (op7001); Ivan has none and never called.
        assert await store.preferred_extensions(conn, olena) == ["7001"]
        assert await store.preferred_extensions(conn, ivan) == []
        # The last operator who served them comes next: the newest answered call, 30 days.
        await served(ivan, "7003", 40, "a")
        assert await store.preferred_extensions(conn, ivan) == []
        await served(ivan, "7002", 3, "b")
        await served(ivan, "7004", 1, "c")
        assert await store.preferred_extensions(conn, ivan) == ["7004"]
        await served(olena, "7001", 1, "d")  # the manager herself: named once
        assert await store.preferred_extensions(conn, olena) == ["7001"]
        await served(olena, "7003", 0, "e")
        assert await store.preferred_extensions(conn, olena) == ["7001", "7003"]
        # A manager who left (inactive) is not waited for.
        await conn.execute("UPDATE users SET active = false WHERE extension = '7001'")
        assert await store.preferred_extensions(conn, olena) == ["7003"]

    run_db(demo_db, body)


def test_region_comes_from_the_number_prefix(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
        cur = await conn.execute("SELECT name, region FROM customers ORDER BY id")
        return {r[0]: r[1] for r in await cur.fetchall()}

    regions = run_db(demo_db, body)
    assert regions == {
        "Ivan Petrenko": "Kyiv",  # his phones sorted: 38044… (Kyiv) comes before 38067…
        "Olena Kovalenko": "Vodafone Ukraine (mobile)",
        "Alexey Smirnov": "Moscow",
        "王伟": "Beijing",
        "Maria Sydorenko": "Kyiv",  # the utility line's (seed 003)
        "Petro Koval": "Kyivstar (mobile)",
    }


def test_registration_names_each_missing_or_invalid_field(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        internet = ("name", "phones", "addresses")
        with pytest.raises(ValidationFailed) as e:
            await store.create_customer(
                conn, {"name": "Nina"}, required=internet, country="380", actor=None
            )
        assert e.value.fields == {"phones": "required", "addresses": "required"}
        with pytest.raises(ValidationFailed) as e:
            await store.create_customer(
                conn,
                {
                    "name": " ",
                    "phones": ["call me"],
                    "email": "nope",
                    "birthday": "1990-02-30",
                    "colour": "red",
                },
                required=internet,
                country="380",
                actor=None,
            )
        assert set(e.value.fields) == {"name", "phones", "email", "birthday", "colour", "addresses"}
        assert (e.value.fields["name"], e.value.fields["colour"]) == ("required", "unknown field")
        assert "digits" in e.value.fields["phones"]
        cid = await store.create_customer(
            conn,
            {
                "name": "Nina Bondar",
                "phones": ["+380 93 111 22 33"],
                "addresses": ["Odesa, Derybasivska 3"],
            },
            required=internet,
            country="380",
            actor=None,
        )
        card = await store.customer_card(conn, cid, dt.date(2026, 11, 22))
        assert card is not None
        assert card["phones"] == [{"e164": "380931112233", "label": "main"}]
        assert card["region"] == "lifecell (mobile)"
        cur = await conn.execute(
            "SELECT action, entity, after->>'name' FROM audit_log"
            " WHERE entity = 'customer' AND entity_id = %s",
            (str(cid),),
        )
        assert await cur.fetchall() == [("create", "customer", "Nina Bondar")]

    run_db(demo_db, body)


def test_pin_authorization_locks_after_three_failures_until_the_clock_passes(demo_db: str) -> None:
    t0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)

    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        ok = await store.authorize_pin(conn, "1001", "1234", t0)
        assert (ok.outcome, ok.balance, ok.currency) == ("ok", Decimal("50.00"), "UAH")
        outcomes = [await store.authorize_pin(conn, "1001", "0000", t0) for _ in range(3)]
        assert [(r.outcome, r.attempts_left) for r in outcomes] == [
            ("wrong_pin", 2),
            ("wrong_pin", 1),
            ("locked", 0),
        ]
        # Locked: even the right PIN is refused, until 30 minutes have passed.
        assert (
            await store.authorize_pin(conn, "1001", "1234", t0 + dt.timedelta(minutes=29))
        ).outcome == "locked"
        after = await store.authorize_pin(conn, "1001", "1234", t0 + dt.timedelta(minutes=31))
        assert after.outcome == "ok"
        # A success resets the count; a wrong PIN after the lock starts a fresh count.
        assert (
            await store.authorize_pin(conn, "1001", "9", t0 + dt.timedelta(minutes=32))
        ).attempts_left == 2
        assert (await store.authorize_pin(conn, "9999", "1234", t0)).outcome == "unknown_contract"
        assert (await store.authorize_pin(conn, "2001", "1234", t0)).outcome == "no_pin"
        cur = await conn.execute("SELECT pin_hash FROM accounts WHERE contract_no = '1001'")
        row = await cur.fetchone()
        assert row is not None and "1234" not in row[0] and row[0].startswith("scrypt$")
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE action = 'lockout'")
        assert (await cur.fetchone()) == (1,)

    run_db(demo_db, body)


@pytest.mark.parametrize(
    ("query", "expected", "how"),
    [
        ("Petrenko", "Ivan Petrenko", "name"),
        ("petrenco", "Ivan Petrenko", "name"),  # a typo
        ("Khreshchatyk", "Ivan Petrenko", "address"),
        ("1001", "Ivan Petrenko", "contract"),
        ("765 43 21", "Olena Kovalenko", "phone"),
        ("Smirnov", "Alexey Smirnov", "name"),
        ("王伟", "王伟", "name"),
        ("建国路", "王伟", "address"),
    ],
)
def test_search_finds_by_name_phone_contract_address_in_three_scripts(
    demo_db: str, query: str, expected: str, how: str
) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> list[store.Match]:
        return await store.search(conn, query)

    matches = run_db(demo_db, body)
    assert matches, f"nothing found for {query!r}"
    assert (matches[0].name, matches[0].how) == (expected, how)


def test_search_with_nothing_matching_is_empty(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> list[store.Match]:
        return await store.search(conn, "Zzyzx Qwerty")

    assert run_db(demo_db, body) == []


def test_audit_log_cannot_be_edited_or_deleted(demo_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        for sql in (
            "UPDATE audit_log SET action = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():
                    await conn.execute(sql)

    run_db(demo_db, body)


def test_authorization_by_questions_from_the_customers_own_data(demo_db: str) -> None:
    t0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)

    async def body(conn: psycopg.AsyncConnection[Any]) -> None:
        questions = await store.security_questions(conn, "1001")
        assert [q["id"] for q in questions or []] == ["last_payment_amount", "address_street"]
        assert await store.security_questions(conn, "0000") is None
        ok = await store.authorize_by_answers(
            conn, "1001", {"last_payment_amount": "100,00", "address_street": "khreshchatyk"}, t0
        )
        assert (ok.outcome, ok.balance) == ("ok", Decimal("50.00"))
        # One wrong answer fails the whole check; three failures lock the contract.
        half = {"last_payment_amount": "100", "address_street": "Lviv"}
        outcomes = [
            (await store.authorize_by_answers(conn, "1001", half, t0)).outcome for _ in range(3)
        ]
        assert outcomes == ["wrong_pin", "wrong_pin", "locked"]
        right = {"last_payment_amount": "100", "address_street": "Khreshchatyk St"}
        assert (await store.authorize_by_answers(conn, "1001", right, t0)).outcome == "locked"
        assert (
            await store.authorize_by_answers(conn, "1001", right, t0 + dt.timedelta(hours=1))
        ).outcome == "ok"
        assert (
            await store.authorize_by_answers(
                conn, "1001", {"address_street": "Kh"}, t0 + dt.timedelta(hours=1)
            )
        ).outcome == "wrong_pin"

    run_db(demo_db, body)
