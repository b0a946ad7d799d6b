"""Surveys and guided conversation scripts as question graphs.

A survey is ``{"start": key, "questions": {key: question}}``; a question has ``text``, a
``kind`` ("choice", "text" or "number") and either ``options`` (each with a ``value``, a
``label`` and the ``next`` question key, or none to finish) or a single ``next``. A graph
is checked when saved: every ``next`` must exist, every question must be reachable from the
start, and there must be no cycle (a script must end). Answers are stored per response,
tied to the interaction and the customer.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from pydantic import Field

from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.crm.store import User, audit, can_see_customer
from ccorch.errors import RequestRefused


class NewSurvey(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    start: Annotated[str, Field(min_length=1, max_length=64)]
    questions: dict[str, Any] = Field(
        description="key -> {text, kind, options[{value,label,next}] | next}"
    )


class StartResponse(Body):
    interaction_id: Id | None = None
    customer_id: Id | None = None
    campaign_attempt_id: Id | None = None  # a campaign call's script: its attempt


class Answer(Body):
    answer: Annotated[str, Field(min_length=1, max_length=2000)]


class SurveyError(RequestRefused):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)


def check_graph(start: str, questions: Any) -> dict[str, Any]:
    """The graph normalized, or ValidationFailed naming each bad question."""
    if not isinstance(questions, dict) or not questions:
        raise ValidationFailed({"questions": "a non-empty object of key -> question"})
    errors: dict[str, str] = {}
    graph: dict[str, Any] = {}
    for key, q in questions.items():
        where = f"questions.{key}"
        if not isinstance(q, dict) or not isinstance(q.get("text"), str) or not q["text"].strip():
            errors[where] = "needs a text"
            continue
        kind = q.get("kind", "choice" if "options" in q else "text")
        if kind not in ("choice", "text", "number"):
            errors[where] = "kind is one of choice, text, number"
            continue
        if kind == "choice":
            opts = q.get("options")
            if not isinstance(opts, list) or not opts:
                errors[where] = "a choice needs options"
                continue
            clean = []
            for i, o in enumerate(opts):
                if not isinstance(o, dict) or not isinstance(o.get("value"), str) or not o["value"]:
                    errors[f"{where}.options.{i}"] = "needs a value"
                    continue
                nxt = o.get("next")
                if nxt is not None and not isinstance(nxt, str):
                    errors[f"{where}.options.{i}"] = "next is a question key or null"
                    continue
                clean.append(
                    {"value": o["value"], "label": str(o.get("label", o["value"])), "next": nxt}
                )
            if len({o["value"] for o in clean}) != len(clean):
                errors[where] = "option values repeat"
            graph[key] = {"text": q["text"], "kind": kind, "options": clean}
        else:
            nxt = q.get("next")
            if nxt is not None and not isinstance(nxt, str):
                errors[where] = "next is a question key or null"
                continue
            graph[key] = {"text": q["text"], "kind": kind, "next": nxt}
    if start not in questions:
        errors["start"] = f"no question {start!r}"
    for key, q in graph.items():
        targets = [o["next"] for o in q["options"]] if q["kind"] == "choice" else [q["next"]]
        for t in targets:
            if t is not None and t not in questions:
                errors[f"questions.{key}"] = f"next question {t!r} does not exist"
    if errors:
        raise ValidationFailed(errors)
    # Reachability and cycles, by depth-first search from the start.
    state: dict[str, int] = {}

    def visit(k: str, path: list[str]) -> None:
        if state.get(k) == 1:
            raise ValidationFailed({f"questions.{k}": "a cycle: " + " -> ".join([*path, k])})
        if state.get(k) == 2:
            return
        state[k] = 1
        q = graph[k]
        for t in [o["next"] for o in q["options"]] if q["kind"] == "choice" else [q["next"]]:
            if t is not None:
                visit(t, [*path, k])
        state[k] = 2

    visit(start, [])
    unreachable = sorted(set(graph) - set(state))
    if unreachable:
        raise ValidationFailed(
            {f"questions.{k}": "not reachable from the start" for k in unreachable}
        )
    return {"start": start, "questions": graph}


def next_key(graph: dict[str, Any], key: str, answer: str) -> str | None:
    """The question after ``answer`` to ``key`` (None: finished); refuses a bad answer."""
    q = graph["questions"][key]
    if q["kind"] == "choice":
        for o in q["options"]:
            if o["value"] == answer:
                nxt: str | None = o["next"]
                return nxt
        raise ValidationFailed({"answer": "one of " + ", ".join(o["value"] for o in q["options"])})
    if q["kind"] == "number":
        try:
            float(answer)
        except ValueError:
            raise ValidationFailed({"answer": "a number"}) from None
    nxt_text: str | None = q["next"]
    return nxt_text


def _question(graph: dict[str, Any], key: str | None) -> dict[str, Any] | None:
    if key is None:
        return None
    q = graph["questions"][key]
    out = {"key": key, "text": q["text"], "kind": q["kind"]}
    if q["kind"] == "choice":
        out["options"] = [{"value": o["value"], "label": o["label"]} for o in q["options"]]
    return out


async def create_survey(
    conn: AsyncConnection[Any], body: Any, user: User | None, now: dt.datetime
) -> int:
    data = parse(NewSurvey, body)
    graph = check_graph(data["start"], data["questions"])
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO surveys (name, graph, created_at, created_by) VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
            (data["name"], Jsonb(graph), now, user.id if user else None),
        )
        row = await cur.fetchone()
        if row is None:
            raise ValidationFailed({"name": "a survey with this name exists"})
        await audit(
            conn,
            user.id if user else None,
            "create",
            "survey",
            row[0],
            None,
            {"name": data["name"]},
        )
    return int(row[0])


async def _graph(conn: AsyncConnection[Any], survey_id: int) -> dict[str, Any]:
    cur = await conn.execute("SELECT graph FROM surveys WHERE id = %s", (survey_id,))
    row = await cur.fetchone()
    if row is None:
        raise SurveyError(404, f"no survey {survey_id}")
    graph: dict[str, Any] = row[0]
    return graph


async def start_response(
    conn: AsyncConnection[Any], survey_id: int, body: Any, user: User, now: dt.datetime
) -> dict[str, Any]:
    data = parse(StartResponse, body if body is not None else {})
    graph = await _graph(conn, survey_id)
    # Each reference is checked as the user may see it: a customer of a group hidden from
    # the user, or a contact of such a customer, is "no such" one.
    for key, query in (
        ("interaction_id", "SELECT customer_id FROM interactions WHERE id = %s"),
        ("customer_id", "SELECT id FROM customers WHERE id = %s"),
    ):
        if data.get(key) is not None:
            cur = await conn.execute(query, (data[key],))
            found = await cur.fetchone()
            if found is None or (
                found[0] is not None and not await can_see_customer(conn, user, found[0])
            ):
                raise ValidationFailed({key: f"no such {key.removesuffix('_id')}"})
    cur = await conn.execute(
        """INSERT INTO survey_responses (survey_id, interaction_id, customer_id, agent_id,
                                          current_key, started_at, campaign_attempt_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            survey_id,
            data.get("interaction_id"),
            data.get("customer_id"),
            user.id,
            graph["start"],
            now,
            data.get("campaign_attempt_id"),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return {"response_id": row[0], "question": _question(graph, graph["start"])}


async def answer(
    conn: AsyncConnection[Any], response_id: int, body: Any, now: dt.datetime, user: User
) -> dict[str, Any]:
    """The next answer of a response: only by who started it (or a supervisor)."""
    data = parse(Answer, body)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT survey_id, current_key, agent_id FROM survey_responses WHERE id = %s"
            " FOR UPDATE",
            (response_id,),
        )
        row = await cur.fetchone()
        if row is None or (row[2] != user.id and not user.roles & {"supervisor", "admin"}):
            raise SurveyError(404, f"no survey response {response_id}")
        survey_id, key, _ = row
        if key is None:
            raise SurveyError(409, "this survey response is complete")
        graph = await _graph(conn, survey_id)
        nxt = next_key(graph, key, data["answer"])
        await conn.execute(
            """INSERT INTO survey_answers (response_id, seq, question_key, answer, answered_at)
               SELECT %s, coalesce(max(seq), 0) + 1, %s, %s, %s FROM survey_answers WHERE response_id = %s""",
            (response_id, key, data["answer"], now, response_id),
        )
        await conn.execute(
            "UPDATE survey_responses SET current_key = %s, completed_at = CASE WHEN %s::text IS NULL THEN %s::timestamptz END WHERE id = %s",
            (nxt, nxt, now, response_id),
        )
    return {"response_id": response_id, "question": _question(graph, nxt), "completed": nxt is None}


async def get_response(conn: AsyncConnection[Any], response_id: int, user: User) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT survey_id, interaction_id, customer_id, current_key, started_at, completed_at FROM survey_responses WHERE id = %s",
        (response_id,),
    )
    r = await cur.fetchone()
    if r is None or (r[2] is not None and not await can_see_customer(conn, user, r[2])):
        raise SurveyError(404, f"no survey response {response_id}")
    cur = await conn.execute(
        "SELECT question_key, answer, answered_at FROM survey_answers WHERE response_id = %s ORDER BY seq",
        (response_id,),
    )
    answers = [
        {"question": a[0], "answer": a[1], "at": a[2].isoformat()} for a in await cur.fetchall()
    ]
    return {
        "response_id": response_id,
        "survey_id": r[0],
        "interaction_id": r[1],
        "customer_id": r[2],
        "current_question": r[3],
        "started_at": r[4].isoformat(),
        "completed_at": r[5].isoformat() if r[5] else None,
        "answers": answers,
    }


DEMO_SURVEY = {
    "name": "ABC Internet satisfaction",
    "start": "satisfied",
    "questions": {
        "satisfied": {
            "text": "Удовлетворены ли Вы сервисом предоставления услуг Интернета?",
            "options": [
                {"value": "yes", "label": "Да", "next": "future_services"},
                {"value": "no", "label": "Нет", "next": "what_is_wrong"},
            ],
        },
        "future_services": {
            "text": "Какими сервисами Вы бы хотели пользоваться в будущем?",
            "kind": "text",
            "next": "rating",
        },
        "what_is_wrong": {
            "text": "Что именно Вас не удовлетворяет в нашем сервисе?",
            "kind": "text",
            "next": "rating",
        },
        "rating": {"text": "Оцените наш сервис от 1 до 5", "kind": "number", "next": None},
    },
}


async def of_customer(
    conn: AsyncConnection[Any], customer_id: int, limit: int = 20
) -> list[dict[str, Any]]:
    """The customer's survey responses, newest first: the survey, when, how many answers,
    and the interaction (call) it was taken on."""
    cur = await conn.execute(
        """SELECT r.id, s.name, r.interaction_id, r.started_at, r.completed_at,
                  (SELECT count(*) FROM survey_answers a WHERE a.response_id = r.id)
           FROM survey_responses r JOIN surveys s ON s.id = r.survey_id
           WHERE r.customer_id = %s ORDER BY r.started_at DESC, r.id DESC LIMIT %s""",
        (customer_id, limit),
    )
    return [
        {"id": r[0], "survey": r[1], "interaction_id": r[2], "started_at": r[3].isoformat(),
         "completed_at": r[4].isoformat() if r[4] else None, "answers": int(r[5])}
        for r in await cur.fetchall()
    ]  # fmt: skip
