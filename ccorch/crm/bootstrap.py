"""Reference data and the demo tenant, loaded after migrations (idempotent).

* The number-prefix table from ``data/phone_prefixes.csv`` (Ukrainian, Russian, Chinese
  area and mobile codes) is upserted on every start, so editing the CSV takes effect.
* The demo tenant of the "ABC Internet" IVR: customer Ivan Petrenko with contract 1001,
  50.00 UAH and PIN 1234 (stored hashed), two more customers for identification and
  search, operators ``op7001``-``op7004`` (extensions 7001-7004, passwords ``agent7001``...,
  the same as their demo phones; the VIP Olena Kovalenko's manager is 7001), the supervisor
  ``sup7009`` (extension 7009, password ``agent7009``), and an ``admin``
  user. The admin's password is ``crm.admin_password``
  (``CCORCH_CRM_ADMIN_PASSWORD``) when set; otherwise a random one is generated and written once to ``var/admin-password``
  (mode 0600), never to the log.
* The utility line's demo (seed 003): customers Maria Sydorenko (account 500101, a
  one-rate meter, at an address with an emergency outage on) and Petro Koval (500102, a
  day/night meter, a planned outage in two days), connection request 100234 at the works
  stage. Its times are relative to when the demo was loaded.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from ccorch.crm import kb, scenarios, store, surveys
from ccorch.crm.secrets import hash_secret

log = logging.getLogger(__name__)

PREFIXES_CSV = Path(__file__).parent / "data" / "phone_prefixes.csv"


async def load_prefixes(conn: AsyncConnection[Any], path: Path = PREFIXES_CSV) -> int:
    with path.open(encoding="utf-8") as f:
        rows = [(r["prefix"], r["country"], r["region"], r["kind"]) for r in csv.DictReader(f)]
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO phone_prefixes (prefix, country, region, kind) VALUES (%s, %s, %s, %s)
               ON CONFLICT (prefix) DO UPDATE SET country = excluded.country, region = excluded.region, kind = excluded.kind""",
            rows,
        )
    return len(rows)


DEMO_CUSTOMERS: list[dict[str, Any]] = [
    {
        "name": "Ivan Petrenko",
        "phones": ["+380 67 123 45 67", "044 555 12 34"],
        "addresses": ["Kyiv, Khreshchatyk St 1, apt 10"],
        "segment": "standard",
        "birthday": "1985-06-15",
        "account": ("1001", "50.00", "UAH", "1234"),
    },
    {
        "name": "Olena Kovalenko",
        "phones": ["+380 50 765 43 21"],
        "addresses": ["Lviv, Svobody Ave 5"],
        "segment": "VIP",
        "account": ("1002", "1250.75", "UAH", "4321"),
    },
    {
        "name": "Alexey Smirnov",
        "phones": ["+7 495 123 45 67"],
        "addresses": ["Moscow, Tverskaya St 7"],
        "segment": "standard",
        "account": ("2001", "0.00", "RUB", None),
    },
    {
        "name": "王伟",
        "phones": ["+86 10 6552 9988"],
        "addresses": ["北京市朝阳区建国路 88 号"],
        "segment": "standard",
        "account": None,
    },
]


# Seed 004's bottled-water company: what its operators sell on the phone.
DEMO_PRODUCTS = [
    ("W19", "Spring water 19 L", "bottle", "120.00", 500),
    ("W6x15", "Still water 1.5 L, pack of 6", "pack", "95.00", 300),
    ("M6x15", "Mineral water 1.5 L, pack of 6", "pack", "110.00", 200),
    ("COOLER", "Water cooler rental, a month", "month", "250.00", 40),
    ("CUPS", "Paper cups, 100", "pack", "45.00", 1000),
]

# The knowledge base the demo's operators search while they talk (seeds 003, 004).
DEMO_ARTICLES = [
    {
        "language": "en",
        "title": "No internet: first checks",
        "body": "1. Ask the customer to restart the router (unplug for 30 seconds).\n"
        "2. Check the balance: a negative balance suspends the service.\n"
        "3. If the link light is off, create a dispatch case for a technician visit.",
        "tags": ["internet", "router", "outage"],
    },
    {
        "language": "en",
        "title": "Tariffs and how to change them",
        "body": "Home 100 (100 Mbit/s) and Home 1000 (1 Gbit/s). A change of tariff applies"
        " from the first day of the next month; no fee.",
        "tags": ["tariff", "billing"],
    },
    {
        "language": "ru",
        "title": "Нет интернета: первые шаги",
        "body": "1. Попросите клиента перезагрузить роутер (выключить на 30 секунд).\n"
        "2. Проверьте баланс: при отрицательном балансе услуга приостанавливается.\n"
        "3. Если индикатор линии не горит, создайте обращение на выезд техника.",
        "tags": ["интернет", "роутер"],
    },
    {
        "language": "zh",
        "title": "桶装水配送时间",
        "body": "每天四个配送时段：09-12、12-15、15-18、18-21。当天 12 点前下单可次日送达。",
        "tags": ["配送", "订水"],
    },
]

# Case and service topics (parent, name), and the guided service of one of them (seed 000).
DEMO_TOPICS = [
    (None, "Internet"),
    ("Internet", "No internet"),
    ("Internet", "Tariff change"),
    (None, "Billing"),
    (None, "Water delivery"),
    (None, "Electricity"),
    ("Electricity", "Outages"),
    ("Electricity", "Meter readings"),
    ("Electricity", "Complaints"),
]
# The utility's mailbox rules (issue 22): a new e-mail thread is classified by the first
# rule whose pattern is in its subject or text (the operator classifies the rest).
DEMO_EMAIL_RULES = [
    ("subject", r"complain|жалоб|投诉", "Complaints", "escalation"),
    ("any", r"outage|no power|blackout|отключ|нет света|停电", "Outages", "instant"),
    ("any", r"meter|reading|показани|сч[её]тчик|读数|电表", "Meter readings", "instant"),
]
DEMO_SCENARIO = """\
scenario: no-internet
title: {en: "No internet", ru: "Нет интернета", zh: "无法上网"}
topic: No internet
needs_customer: true
registration: default
needs_authorization: true
match:
  ivr: [tech]          # callers who chose "technical support" in the IVR
form:
  - name: since
    label: {en: "Since when", ru: "С какого времени", zh: "从何时开始"}
    type: text
    required: true
  - name: router_restarted
    label: {en: "Router restarted", ru: "Роутер перезагружен", zh: "已重启路由器"}
    type: boolean
    required: true
  - name: contract
    label: {en: "Contract", ru: "Договор", zh: "合同号"}
    default: "{account.contract_no}"
"""

# Seed 003's electricity distributor, the second demo line: tariffs, its customers with an
# account, a service point and a meter each (readings from a month back), an outage on now
# and one planned, and a connection request under way. Times are relative to the load.
DEMO_TARIFFS = [
    ("household", "Household, one rate", 1, 30),
    ("household-2z", "Household, day and night", 2, 40),
]
DEMO_UTILITY_CUSTOMERS: list[dict[str, Any]] = [
    {
        "name": "Maria Sydorenko",
        "phones": ["+380 44 222 33 44"],
        "addresses": ["Kyiv, Sadova St 12, apt 5"],
        "email": "maria.sydorenko@example.com",
        "segment": "standard",
        "account": "500101",
        "point": ("Kyiv", "Sadova St", "12", "5", "household"),
        "meter": "MT-880011",
        "readings": [(12100, None, 61), (12345, None, 31)],  # kWh, kWh, days ago
    },
    {
        "name": "Petro Koval",
        "phones": ["+380 67 333 44 55"],
        "addresses": ["Kyiv, Lisova St 3"],
        "segment": "standard",
        "account": "500102",
        "point": ("Kyiv", "Lisova St", "3", None, "household-2z"),
        "meter": "MT-2Z-4417",
        "readings": [(4100, 1750, 62), (4200, 1800, 32)],
    },
]
DEMO_CONNECTION_REQUEST = ("100234", "Maria Sydorenko", "Kyiv region, Hlevakha, Lisova St 40",
                           "15.0", ["registered", "documents_sent", "contract_signed", "works"])  # fmt: skip

DEMO_OPERATORS = [
    ("7001", "Taras Melnyk"),
    ("7002", "Iryna Bondar"),
    ("7003", "Oksana Shevchenko"),
    ("7004", "Dmytro Kravets"),
]
DEMO_SUPERVISOR = ("7009", "Natalia Hrytsenko")


async def load_demo(conn: AsyncConnection[Any], var_dir: Path, admin_password: str = "") -> bool:
    """Load the demo tenant into an empty CRM; returns False when customers already exist."""
    cur = await conn.execute("SELECT count(*) FROM customers")
    row = await cur.fetchone()
    if row and row[0] > 0:
        return False
    for c in DEMO_CUSTOMERS:
        body = {k: v for k, v in c.items() if k != "account"}
        cid = await store.create_customer(conn, body, required=(), country="380", actor=None)
        if c["account"]:
            contract, balance, currency, pin = c["account"]
            pin_hash = await asyncio.to_thread(hash_secret, pin) if pin else None
            await conn.execute(
                """INSERT INTO accounts (customer_id, contract_no, balance, currency, pin_hash, last_payment_at, last_payment_amount)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (
                    cid,
                    contract,
                    balance,
                    currency,
                    pin_hash,
                    dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                    "100.00",
                ),
            )
    await load_utility_demo(conn, dt.datetime.now(dt.UTC))
    # The demo's operators (their phones are the demo SIP accounts 7001-7004); the VIP
    # customer's manager is 7001, so her calls ring 7001 first.
    for ext, full_name in DEMO_OPERATORS:
        uid = await store.create_user(
            conn, f"op{ext}", full_name, f"agent{ext}", ["operator"], None
        )
        await conn.execute("UPDATE users SET extension = %s WHERE id = %s", (ext, uid))
    # The shift's supervisor (seed 004's 班长座席): listens, whispers and barges from 7009.
    uid = await store.create_user(
        conn, f"sup{DEMO_SUPERVISOR[0]}", DEMO_SUPERVISOR[1], "agent7009", ["supervisor"], None
    )
    await conn.execute("UPDATE users SET extension = %s WHERE id = %s", (DEMO_SUPERVISOR[0], uid))
    await conn.execute(
        """UPDATE customers SET manager_id = (SELECT id FROM users WHERE extension = '7001')
           WHERE name = 'Olena Kovalenko'"""
    )
    await surveys.create_survey(conn, surveys.DEMO_SURVEY, None, dt.datetime.now(dt.UTC))
    for sku, name, unit, price, stock in DEMO_PRODUCTS:
        await conn.execute(
            "INSERT INTO products (sku, name, unit, price, currency, stock)"
            " VALUES (%s, %s, %s, %s, 'UAH', %s) ON CONFLICT (sku) DO NOTHING",
            (sku, name, unit, price, stock),
        )
    cur = await conn.execute("SELECT 1 FROM users WHERE login = 'admin'")
    if await cur.fetchone() is None:
        password = admin_password
        if not password:
            password = secrets.token_urlsafe(12)
            path = await asyncio.to_thread(_write_secret_file, var_dir / "admin-password", password)
            log.warning("demo admin created; its password is in a file", extra={"file": str(path)})
        admin_id = await store.create_user(
            conn, "admin", "Administrator", password, ["admin", "supervisor"], None
        )
        admin = store.User(admin_id, "admin", "Administrator", frozenset({"admin", "supervisor"}))
        for article in DEMO_ARTICLES:
            await kb.save_article(conn, article, admin, dt.datetime.now(dt.UTC))
        ids: dict[str, int] = {}
        for parent, name in DEMO_TOPICS:
            cur = await conn.execute(
                "INSERT INTO topics (parent_id, name) VALUES (%s, %s) RETURNING id",
                (ids.get(parent or ""), name),
            )
            row = await cur.fetchone()
            assert row is not None
            ids[name] = int(row[0])
        for position, (field, pattern, topic, kind) in enumerate(DEMO_EMAIL_RULES):
            await conn.execute(
                "INSERT INTO email_rules (position, field, pattern, topic_id, kind)"
                " VALUES (%s, %s, %s, %s, %s)",
                (position, field, pattern, ids[topic], kind),
            )
        await scenarios.save(conn, "no-internet", DEMO_SCENARIO, {"default"}, admin)
    await conn.commit()
    log.info("demo tenant loaded", extra={"customers": len(DEMO_CUSTOMERS)})
    return True


async def load_utility_demo(conn: AsyncConnection[Any], now: dt.datetime) -> None:
    """The utility line's demo data (seed 003), inside ``load_demo``'s transaction."""
    for code, name, zones, daily in DEMO_TARIFFS:
        await conn.execute(
            "INSERT INTO tariffs (code, name, zones, max_daily_kwh) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (code) DO NOTHING",
            (code, name, zones, daily),
        )
    ids: dict[str, int] = {}
    for c in DEMO_UTILITY_CUSTOMERS:
        body = {k: c[k] for k in ("name", "phones", "addresses", "segment", "email") if k in c}
        cid = await store.create_customer(conn, body, required=(), country="380", actor=None)
        ids[c["name"]] = cid
        cur = await conn.execute(
            "INSERT INTO accounts (customer_id, contract_no, balance, currency)"
            " VALUES (%s, %s, 0, 'UAH') RETURNING id",
            (cid, c["account"]),
        )
        row = await cur.fetchone()
        assert row is not None
        locality, street, house, apartment, tariff = c["point"]
        cur = await conn.execute(
            """INSERT INTO service_points (account_id, locality, street, house, apartment, tariff)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
            (row[0], locality, street, house, apartment, tariff),
        )
        row = await cur.fetchone()
        assert row is not None
        cur = await conn.execute(
            "INSERT INTO meters (service_point_id, serial, installed_on) VALUES (%s, %s, %s)"
            " RETURNING id",
            (row[0], c["meter"], (now - dt.timedelta(days=400)).date()),
        )
        row = await cur.fetchone()
        assert row is not None
        for day, night, ago in c["readings"]:
            await conn.execute(
                """INSERT INTO meter_readings (meter_id, day_kwh, night_kwh, taken_at, channel)
                   VALUES (%s, %s, %s, %s, 'initial')""",
                (row[0], day, night, now - dt.timedelta(days=ago)),
            )
    hour = now.replace(minute=0, second=0, microsecond=0)
    await conn.execute(
        """INSERT INTO outages (ref, kind, locality, street, house_from, house_to, starts_at,
                                expected_end, reason)
           VALUES ('demo-em-1', 'emergency', 'Kyiv', 'Sadova St', 1, 20, %s, %s,
                   'Cable damaged by excavation works'),
                  ('demo-pl-1', 'planned', 'Kyiv', 'Lisova St', NULL, NULL, %s, %s,
                   'Transformer substation maintenance')""",
        (hour - dt.timedelta(hours=1), hour + dt.timedelta(hours=6),
         hour + dt.timedelta(days=2, hours=9 - hour.hour),
         hour + dt.timedelta(days=2, hours=17 - hour.hour)),
    )  # fmt: skip
    number, owner, address, power, stages = DEMO_CONNECTION_REQUEST
    submitted = now - dt.timedelta(days=45)
    cur = await conn.execute(
        """INSERT INTO connection_requests (number, customer_id, address, power_kw, stage,
                                            submitted_at, due_on)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (number, ids[owner], address, power, stages[-1], submitted,
         (submitted + dt.timedelta(days=120)).date()),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    for i, stage in enumerate(stages):
        await conn.execute(
            "INSERT INTO connection_request_stages (request_id, stage, at) VALUES (%s, %s, %s)",
            (row[0], stage, submitted + dt.timedelta(days=10 * i)),
        )


def _write_secret_file(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return path
