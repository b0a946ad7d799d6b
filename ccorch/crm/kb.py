"""Knowledge base: articles with categories, tags and versions; ranked search with
highlighted snippets in Russian and English (stemmed full text) and in Chinese or
Ukrainian (trigram and substring matching, since PostgreSQL has no configuration for them).
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated, Any

from psycopg import AsyncConnection
from pydantic import Field

from ccorch.api.validation import Body, Id, OneOf, ValidationFailed, parse
from ccorch.crm.store import User, audit

LANGUAGES = ("ru", "en", "uk", "zh")
STEMMED = {"ru": "russian", "en": "english"}


class Article(Body):
    language: Annotated[str, OneOf(LANGUAGES)]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    body: Annotated[str, Field(min_length=1, max_length=200_000)]
    tags: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=50)]], Field(max_length=30)]
        | None
    ) = None
    category_id: Id | None = None


async def save_article(
    conn: AsyncConnection[Any],
    body: Any,
    user: User,
    now: dt.datetime,
    article_id: int | None = None,
) -> dict[str, Any]:
    """Create an article, or store a new version of one (the old stays readable)."""
    data = parse(Article, body)
    if data.get("category_id") is not None:
        cur = await conn.execute(
            "SELECT 1 FROM kb_categories WHERE id = %s", (data["category_id"],)
        )
        if await cur.fetchone() is None:
            raise ValidationFailed({"category_id": "no such category"})
    tags = sorted({t.strip().lower() for t in data.get("tags", [])})
    async with conn.transaction():
        if article_id is None:
            cur = await conn.execute(
                """INSERT INTO kb_articles (category_id, language, title, body, tags, updated_at, updated_by)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, version""",
                (
                    data.get("category_id"),
                    data["language"],
                    data["title"],
                    data["body"],
                    tags,
                    now,
                    user.id,
                ),
            )
        else:
            cur = await conn.execute(
                """UPDATE kb_articles SET category_id = %s, language = %s, title = %s, body = %s, tags = %s,
                          version = version + 1, updated_at = %s, updated_by = %s
                   WHERE id = %s RETURNING id, version""",
                (
                    data.get("category_id"),
                    data["language"],
                    data["title"],
                    data["body"],
                    tags,
                    now,
                    user.id,
                    article_id,
                ),
            )
        row = await cur.fetchone()
        if row is None:
            raise ValidationFailed({"id": f"no article {article_id}"})
        await conn.execute(
            """INSERT INTO kb_article_versions (article_id, version, title, body, tags, edited_at, edited_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (row[0], row[1], data["title"], data["body"], tags, now, user.id),
        )
        await audit(
            conn,
            user.id,
            "create" if article_id is None else "update",
            "kb_article",
            row[0],
            None,
            {"version": row[1], "title": data["title"]},
        )
    return {"id": row[0], "version": row[1]}


async def get_article(conn: AsyncConnection[Any], article_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT id, category_id, language, title, body, tags, version, updated_at FROM kb_articles WHERE id = %s",
        (article_id,),
    )
    r = await cur.fetchone()
    if r is None:
        return None
    cur = await conn.execute(
        "SELECT version, title, edited_at, edited_by FROM kb_article_versions WHERE article_id = %s ORDER BY version DESC",
        (article_id,),
    )
    versions = [
        {"version": v[0], "title": v[1], "edited_at": v[2].isoformat(), "edited_by": v[3]}
        for v in await cur.fetchall()
    ]
    return {
        "id": r[0],
        "category_id": r[1],
        "language": r[2],
        "title": r[3],
        "body": r[4],
        "tags": r[5],
        "version": r[6],
        "updated_at": r[7].isoformat(),
        "versions": versions,
    }


def _snippet(body: str, needle: str, width: int = 60) -> str:
    """A highlighted window around the first occurrence (for unstemmed scripts)."""
    i = body.lower().find(needle.lower())
    if i < 0:
        return html.escape(body[: 2 * width])
    start, end = max(0, i - width), min(len(body), i + len(needle) + width)
    return (
        ("…" if start else "")
        + html.escape(body[start:i])
        + "<mark>"
        + html.escape(body[i : i + len(needle)])
        + "</mark>"
        + html.escape(body[i + len(needle) : end])
        + ("…" if end < len(body) else "")
    )


async def search(
    conn: AsyncConnection[Any], q: str, language: str | None, limit: int = 10
) -> list[dict[str, Any]]:
    """Ranked articles for ``q``: stemmed full text for Russian and English (so "тарифы"
    finds "тариф", "payments" finds "payment"), trigram and substring matching for the rest;
    each hit with a snippet where the match is wrapped in <mark>."""
    text = " ".join(q.split())
    if not text:
        return []
    langs = [language] if language else list(LANGUAGES)
    hits: dict[int, dict[str, Any]] = {}
    for lang in (x for x in langs if x in STEMMED):
        cfg = STEMMED[lang]
        cur = await conn.execute(
            f"""SELECT id, language, title, ts_rank_cd(search, query) AS rank,
                       ts_headline('{cfg}', replace(replace(replace(body, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                                   query, 'StartSel=<mark>,StopSel=</mark>,MaxWords=30,MinWords=10,MaxFragments=2')
                FROM kb_articles, websearch_to_tsquery('{cfg}', %s) AS query
                WHERE language = %s AND search @@ query ORDER BY rank DESC LIMIT %s""",
            (text, lang, limit),
        )
        for r in await cur.fetchall():
            hits[r[0]] = {
                "id": r[0],
                "language": r[1],
                "title": r[2],
                "score": float(r[3]) + 1.0,
                "snippet": r[4],
            }
    others = [x for x in langs if x not in STEMMED]
    if others and len(text) >= 2:
        like = (
            "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        cur = await conn.execute(
            """SELECT id, language, title, body,
                      greatest(similarity(lower(title), %s), word_similarity(%s, lower(body)),
                               CASE WHEN lower(title) LIKE %s THEN 0.9 WHEN lower(body) LIKE %s THEN 0.7 ELSE 0 END) AS score
               FROM kb_articles
               WHERE language = ANY(%s) AND (lower(title) LIKE %s OR lower(body) LIKE %s OR %s <%% lower(body))
               ORDER BY score DESC LIMIT %s""",
            (text.lower(), text.lower(), like, like, others, like, like, text.lower(), limit),
        )
        for r in await cur.fetchall():
            if r[0] not in hits:
                hits[r[0]] = {
                    "id": r[0],
                    "language": r[1],
                    "title": r[2],
                    "score": float(r[4]),
                    "snippet": _snippet(r[3], text),
                }
    return sorted(hits.values(), key=lambda h: (-h["score"], h["id"]))[:limit]
