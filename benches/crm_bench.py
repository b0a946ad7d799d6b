"""CRM at scale: 1,000,000 customers with 1,300,000 phone numbers, then caller
identification by ANI and the fuzzy search form, timed one by one (p50/p99).

    scripts/setup.sh release
    .venv/bin/python benches/crm_bench.py [--customers 1000000] [--lookups 2000] [--articles 10000] [--only-kb]

Uses ``DATABASE_URL`` if set (a database is created and dropped on it), else an embedded
PostgreSQL in a temporary folder. Each figure is measured side by side with the bare
indexed SELECT it rests on, so the ratio shows what ccorch's layer adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from ccorch.crm import bootstrap, kb, store
from ccorch.db.embedded import EmbeddedPostgres
from ccorch.db.migrate import migrate

FIRST = [
    "Ivan",
    "Olena",
    "Petro",
    "Maria",
    "Oleksandr",
    "Iryna",
    "Dmytro",
    "Nataliia",
    "Serhii",
    "Tetiana",
    "Andrii",
    "Oksana",
    "Yurii",
    "Halyna",
    "Mykola",
    "Alexey",
    "Sergey",
    "Anna",
    "Wei",
    "Li",
    "Fang",
    "Jing",
]
LAST = [
    "Petrenko",
    "Kovalenko",
    "Bondarenko",
    "Tkachenko",
    "Kravchenko",
    "Shevchenko",
    "Boyko",
    "Melnyk",
    "Polishchuk",
    "Lysenko",
    "Marchenko",
    "Rudenko",
    "Savchenko",
    "Smirnov",
    "Ivanov",
    "Kuznetsov",
    "Popov",
    "Sokolov",
    "Wang",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Zhou",
    "Moroz",
    "Pavlenko",
]


def generate(url: str, customers: int) -> dict[str, float]:
    t: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute(
            """INSERT INTO customers (kind, name, segment, region)
               SELECT 'person',
                      (%(first)s::text[])[1 + (i * 7919) %% array_length(%(first)s::text[], 1)] || ' ' ||
                      (%(last)s::text[])[1 + (i * 104729) %% array_length(%(last)s::text[], 1)] || ' ' || i,
                      CASE WHEN i %% 50 = 0 THEN 'VIP' ELSE 'standard' END, 'Kyiv'
               FROM generate_series(1::bigint, %(n)s) AS i""",
            {"first": FIRST, "last": LAST, "n": customers},
        )
        t["insert_customers_s"] = time.perf_counter() - start
        start = time.perf_counter()
        # 1.3 numbers per customer: every customer a mobile, 30% also a landline.
        conn.execute(
            """INSERT INTO customer_phones (customer_id, e164, label)
               SELECT id, '38067' || lpad((id * 7 % 10000000)::text, 7, '0'), 'mobile' FROM customers
               UNION ALL
               SELECT id, '38044' || lpad((id * 13 % 10000000)::text, 7, '0'), 'home' FROM customers WHERE id % 10 < 3"""
        )
        t["insert_phones_s"] = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute(
            """INSERT INTO customer_addresses (customer_id, text)
               SELECT id, 'Kyiv, street ' || (id % 5000) || ', apt ' || (id % 300) FROM customers"""
        )
        t["insert_addresses_s"] = time.perf_counter() - start
        conn.execute("ANALYZE")
        t["phones"] = float(conn.execute("SELECT count(*) FROM customer_phones").fetchone()[0])  # type: ignore[index]
    return t


RU = [
    "тариф",
    "оплата",
    "интернет",
    "роутер",
    "подключение",
    "скорость",
    "договор",
    "баланс",
    "абонент",
    "услуга",
    "кабель",
    "настройка",
    "модем",
    "сеть",
]
EN = [
    "tariff",
    "payment",
    "internet",
    "router",
    "connection",
    "speed",
    "contract",
    "balance",
    "subscriber",
    "service",
    "cable",
    "setup",
    "modem",
    "network",
]
ZH = [
    "资费",
    "付款",
    "互联网",
    "路由器",
    "连接",
    "速度",
    "合同",
    "余额",
    "用户",
    "服务",
    "电缆",
    "设置",
    "调制解调器",
    "网络",
]


def generate_articles(url: str, n: int) -> float:
    """``n`` articles split between Russian, English and Chinese, 80 words each."""
    rnd = random.Random(11)
    rows = []
    for i in range(n):
        lang, words = [("ru", RU), ("en", EN), ("zh", ZH)][i % 3]
        body = (" " if lang != "zh" else "").join(rnd.choice(words) for _ in range(80))
        title = (" " if lang != "zh" else "").join(rnd.choice(words) for _ in range(4)) + f" {i}"
        rows.append((lang, title, body))
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO kb_articles (language, title, body, updated_at) VALUES (%s, %s, %s, now())",
            rows,
        )
        conn.execute("ANALYZE kb_articles")
    return time.perf_counter() - start


async def measure_kb(url: str, queries: int) -> dict[str, Any]:
    rnd = random.Random(5)
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for lang, words in (("ru", RU), ("en", EN), ("zh", ZH)):
            qs = [
                f"{rnd.choice(words)} {rnd.choice(words)}" if lang != "zh" else rnd.choice(words)
                for _ in range(queries)
            ]
            times = []
            for q in qs:
                t0 = time.perf_counter()
                await kb.search(conn, q, lang, 10)
                times.append(time.perf_counter() - t0)
            out[f"kb_search_{lang}"] = quantiles(times)
    return out


def quantiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 3),
        "p99_ms": round(xs[int(len(xs) * 0.99) - 1] * 1000, 3),
        "max_ms": round(xs[-1] * 1000, 3),
    }


async def measure(url: str, customers: int, lookups: int) -> dict[str, Any]:
    rnd = random.Random(7)
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        ids = [rnd.randint(1, customers) for _ in range(lookups)]
        numbers = [f"+38067{(i * 7) % 10_000_000:07d}" for i in ids]
        # Warm the caches the same way for both sides.
        for n in numbers[:200]:
            await store.identify_by_ani(conn, n, "380")

        async def timed(fn: Any, args: list[Any]) -> list[float]:
            times = []
            for a in args:
                t0 = time.perf_counter()
                await fn(a)
                times.append(time.perf_counter() - t0)
            return times

        async def bare_ani(n: str) -> None:
            cur = await conn.execute(
                "SELECT customer_id FROM customer_phones WHERE e164 = %s", (n.lstrip("+"),)
            )
            await cur.fetchall()

        out["ani_exact_ccorch"] = quantiles(
            await timed(lambda n: store.identify_by_ani(conn, n, "380"), numbers)
        )
        out["ani_exact_bare_select"] = quantiles(await timed(bare_ani, numbers))
        tails = [n[-7:] for n in numbers[:500]]
        out["ani_last_digits_ccorch"] = quantiles(
            await timed(lambda n: store.identify_by_ani(conn, n, "380"), tails)
        )
        names = [f"{rnd.choice(LAST)}" for _ in range(200)] + [
            f"{rnd.choice(FIRST)} {rnd.choice(LAST)[:-1]}x"
            for _ in range(100)  # with a typo
        ]
        out["search_name_ccorch"] = quantiles(
            await timed(lambda q: store.search(conn, q, 20), names)
        )

        async def bare_name(q: str) -> None:
            cur = await conn.execute(
                "SELECT id FROM customers WHERE %s <%% lower(name) ORDER BY word_similarity(%s, lower(name)) DESC LIMIT 20",
                (q.lower(), q.lower()),
            )
            await cur.fetchall()

        out["search_name_bare_trgm"] = quantiles(await timed(bare_name, names))
    for key in ("ani_exact", "search_name"):
        ours = out[f"{key}_ccorch"]["p99_ms"]
        bare = out[f"{key}_bare_select" if key == "ani_exact" else f"{key}_bare_trgm"]["p99_ms"]
        out[f"{key}_p99_ratio_vs_bare"] = round(ours / bare, 2) if bare else None
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=2000)
    p.add_argument("--articles", type=int, default=10_000)
    p.add_argument(
        "--only-kb", action="store_true", help="skip the customers, time the knowledge base"
    )
    a = p.parse_args()
    external = os.environ.get("DATABASE_URL")
    server = None
    if external:
        name = f"ccorch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(external, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = external.rsplit("/", 1)[0] + "/" + name
    else:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp()) / "pg")
        url = server.start()
    try:
        asyncio.run(migrate(url))

        async def prefixes() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await bootstrap.load_prefixes(conn)

        asyncio.run(prefixes())
        result: dict[str, Any] = {}
        if not a.only_kb:
            result = {"customers": a.customers, **generate(url, a.customers)}
            result |= asyncio.run(measure(url, a.customers, a.lookups))
        result["articles"] = a.articles
        result["insert_articles_s"] = generate_articles(url, a.articles)
        result |= asyncio.run(measure_kb(url, 300))
        print(json.dumps(result, indent=1))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
