"""Knowledge base on a real PostgreSQL: stemmed search in Russian and English, trigram and
substring search in Chinese and Ukrainian, highlighted and escaped snippets, versions."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import psycopg
import pytest

from ccorch.api.validation import ValidationFailed
from ccorch.crm import kb, store
from ccorch.db.migrate import migrate

T0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
ARTICLES = [
    (
        "ru",
        "Тарифы на интернет",
        "Тариф «Домашний» стоит 200 гривен в месяц. Смена тарифа бесплатна.",
        ["тарифы"],
    ),
    (
        "ru",
        "Оплата услуг",
        "Оплатить можно картой, в терминале или в кассе. Платёж зачисляется сразу.",
        ["оплата"],
    ),
    (
        "en",
        "Paying your bill",
        "A payment by card is credited at once. <script>alert(1)</script> Payments by bank transfer take a day.",
        ["billing"],
    ),
    (
        "en",
        "Router setup",
        "Connect the router to the socket and wait for the green light.",
        ["router"],
    ),
    (
        "zh",
        "路由器设置",
        "将路由器连接到插座，等待绿灯亮起。如果没有网络，请重新启动路由器。",
        ["路由器"],
    ),
    (
        "uk",
        "Немає інтернету",
        "Перевірте кабель і перезавантажте роутер. Якщо не допомогло, зателефонуйте нам.",
        ["інтернет"],
    ),
]


def run(url: str, body: Any) -> Any:
    async def go() -> Any:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            uid = await store.create_user(
                conn, "editor", "Editor", "a long password", ["supervisor"], None
            )
            user = await store.user_by_id(conn, uid)
            assert user is not None
            for lang, title, text, tags in ARTICLES:
                await kb.save_article(
                    conn, {"language": lang, "title": title, "body": text, "tags": tags}, user, T0
                )
            result = await body(conn, user)
            await conn.commit()
            return result

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("query", "lang", "title", "marked"),
    [
        ("тарифы", "ru", "Тарифы на интернет", "Тариф"),  # the plural finds the singular
        ("оплатить картой", None, "Оплата услуг", "картой"),
        ("payments", "en", "Paying your bill", "payment"),
        ("router light", None, "Router setup", "router"),
        ("路由器", "zh", "路由器设置", "路由器"),
        ("绿灯", None, "路由器设置", "绿灯"),
        ("роутер", "uk", "Немає інтернету", "роутер"),
    ],
)
def test_search_ranks_and_highlights_in_four_languages(
    fresh_db: str, query: str, lang: str | None, title: str, marked: str
) -> None:
    async def body(conn: psycopg.AsyncConnection[Any], user: store.User) -> list[dict[str, Any]]:
        return await kb.search(conn, query, lang)

    hits = run(fresh_db, body)
    assert hits and hits[0]["title"] == title, hits
    assert "<mark>" in hits[0]["snippet"] and marked.lower() in hits[0]["snippet"].lower()


def test_snippets_are_escaped_and_versions_are_kept(fresh_db: str) -> None:
    async def body(conn: psycopg.AsyncConnection[Any], user: store.User) -> None:
        hits = await kb.search(conn, "transfer", "en")
        assert "<script>" not in hits[0]["snippet"] and "&lt;script&gt;" in hits[0]["snippet"]
        saved = await kb.save_article(
            conn,
            {
                "language": "en",
                "title": "Router setup",
                "body": "Press reset for ten seconds.",
                "tags": ["Router"],
            },
            user,
            T0 + dt.timedelta(days=1),
            4,
        )
        assert saved == {"id": 4, "version": 2}
        article = await kb.get_article(conn, 4)
        assert article is not None and article["body"] == "Press reset for ten seconds."
        assert [v["version"] for v in article["versions"]] == [2, 1]
        assert [h["id"] for h in await kb.search(conn, "reset", "en")] == [4]
        assert await kb.search(conn, "socket", "en") == []  # the old text no longer matches
        with pytest.raises(ValidationFailed) as e:
            await kb.save_article(conn, {"language": "fr", "title": "", "body": "x"}, user, T0)
        assert set(e.value.fields) == {"language", "title"}

    run(fresh_db, body)
