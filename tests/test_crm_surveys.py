"""Surveys and scripts: graphs are checked when saved (dangling next, cycles, unreachable
questions named), answers follow the branches, responses are stored per interaction."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import psycopg
import pytest

from ccorch.api.validation import ValidationFailed
from ccorch.crm import cases, store, surveys
from ccorch.db.migrate import migrate

T0 = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("questions", "start", "field", "reason"),
    [
        (
            {"a": {"text": "A?", "options": [{"value": "x", "next": "b"}]}},
            "a",
            "questions.a",
            "does not exist",
        ),
        (
            {
                "a": {"text": "A?", "kind": "text", "next": "b"},
                "b": {"text": "B?", "kind": "text", "next": "a"},
            },
            "a",
            "questions.a",
            "cycle",
        ),
        (
            {"a": {"text": "A?", "kind": "text"}, "b": {"text": "B?", "kind": "text"}},
            "a",
            "questions.b",
            "not reachable",
        ),
        ({"a": {"text": "A?", "kind": "text"}}, "z", "start", "no question"),
        ({"a": {"text": "", "kind": "text"}}, "a", "questions.a", "needs a text"),
        ({"a": {"text": "A?", "options": []}}, "a", "questions.a", "needs options"),
    ],
)
def test_bad_graphs_are_refused_naming_the_question(
    questions: dict[str, Any], start: str, field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as e:
        surveys.check_graph(start, questions)
    assert field in e.value.fields and reason in e.value.fields[field], e.value.fields


def test_the_demo_survey_branches_and_stores_answers_per_interaction(fresh_db: str) -> None:
    async def go() -> None:
        await migrate(fresh_db)
        async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
            uid = await store.create_user(
                conn, "agent", "Agent", "a long password", ["operator"], None
            )
            agent = await store.user_by_id(conn, uid)
            assert agent is not None
            cid = await store.create_customer(
                conn,
                {"name": "Ivan", "phones": ["+380671234567"]},
                required=(),
                country="380",
                actor=None,
            )
            sid = await surveys.create_survey(conn, surveys.DEMO_SURVEY, agent, T0)
            for satisfied, follow_up in (("yes", "future_services"), ("no", "what_is_wrong")):
                iid = await cases.add_interaction(
                    conn,
                    {
                        "customer_id": cid,
                        "channel": "call",
                        "direction": "out",
                        "started_at": T0.isoformat(),
                    },
                    agent,
                )
                r = await surveys.start_response(
                    conn, sid, {"interaction_id": iid, "customer_id": cid}, agent, T0
                )
                assert r["question"]["key"] == "satisfied" and [
                    o["label"] for o in r["question"]["options"]
                ] == ["Да", "Нет"]
                rid = r["response_id"]
                with pytest.raises(ValidationFailed):
                    await surveys.answer(conn, rid, {"answer": "maybe"}, T0, agent)
                # only the operator who started it answers it
                stranger = store.User(agent.id + 1000, "stranger", "S", frozenset({"operator"}))
                with pytest.raises(surveys.SurveyError) as refused:
                    await surveys.answer(conn, rid, {"answer": satisfied}, T0, stranger)
                assert refused.value.status == 404
                step = await surveys.answer(conn, rid, {"answer": satisfied}, T0, agent)
                assert step["question"]["key"] == follow_up
                step = await surveys.answer(conn, rid, {"answer": "faster speeds"}, T0, agent)
                assert step["question"]["key"] == "rating"
                with pytest.raises(ValidationFailed, match="number"):
                    await surveys.answer(conn, rid, {"answer": "great"}, T0, agent)
                step = await surveys.answer(conn, rid, {"answer": "4"}, T0, agent)
                assert step == {"response_id": rid, "question": None, "completed": True}
                with pytest.raises(surveys.SurveyError) as e:
                    await surveys.answer(conn, rid, {"answer": "5"}, T0, agent)
                assert e.value.status == 409
                stored = await surveys.get_response(conn, rid, agent)
                assert stored["interaction_id"] == iid and stored["completed_at"] is not None
                assert [(a["question"], a["answer"]) for a in stored["answers"]] == [
                    ("satisfied", satisfied),
                    (follow_up, "faster speeds"),
                    ("rating", "4"),
                ]
            await conn.commit()

    asyncio.run(go())
