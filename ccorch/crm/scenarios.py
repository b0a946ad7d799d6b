"""The guided service scenario (seed 000): what the operator's desktop walks through on a
call, per topic: classification, identification, registration when the scenario needs a
known customer, authorization when it needs one, then the topic's service forms (fields
with validation and defaults from the card), actions that call an outside web service
with a timeout and show its answer, and hosted applications opened from URL templates,
then back to classification for the next topic.

Scenarios are data: one YAML document each, uploaded by an admin over the API, checked
with line and reason (a refused upload leaves the running version), kept in versions.
Every step the operator takes is recorded (``service_steps``) and joins the call's
interaction when its record is written.

Templates (``default``, ``url``): ``{customer.id}``, ``{customer.name}``,
``{customer.region}``, ``{account.contract_no}``, ``{account.balance}``, ``{call.id}``,
``{call.ani}``, ``{call.dnis}``, ``{user.extension}``, ``{user.login}`` and, in an
action's URL, ``{form.<field>}``; a value put into a URL is percent-encoded.
"""

from __future__ import annotations

import json as jsonlib
import re
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import actor_of, error, json_body, pool
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Id, ValidationFailed, parse
from ccorch.calls.api import CallRef, call_for
from ccorch.crm.store import User, audit, can_see_customer
from ccorch.errors import RequestRefused
from ccorch.yaml_lines import YamlProblems, compose, line_of

READERS = ("operator", "supervisor", "admin")
EDITORS = ("admin",)
NAME = r"[a-z0-9][a-z0-9_-]{0,63}"
FIELD = r"[a-z][a-z0-9_]{0,39}"
ROOTS = {
    "customer": {"id", "name", "region", "segment"},
    "account": {"contract_no", "balance", "currency"},
    "call": {"id", "ani", "dnis"},
    "user": {"extension", "login"},
}
PLACEHOLDER = re.compile(r"\{([a-z]+)\.([a-z0-9_]+)\}")
ANSWER_LIMIT = 4000  # characters of a web service's answer kept and shown


class ScenarioError(RequestRefused):
    """A scenario document that cannot be used: ``problems`` are (line, reason)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        super().__init__(422, "; ".join(f"line {n}: {r}" for n, r in problems))


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# A text for people: one string, or one per language.
Label = str | dict[Literal["ru", "en", "zh"], str]


def _templates(text: str, form_fields: set[str] | None) -> str:
    for root, key in PLACEHOLDER.findall(text):
        if root == "form":
            if form_fields is None:
                raise ValueError(f"{{form.{key}}} only in an action's url")
            if key not in form_fields:
                raise ValueError(f"{{form.{key}}}: no such field in the form")
        elif root not in ROOTS or key not in ROOTS[root]:
            known = ", ".join(f"{r}.{k}" for r, ks in ROOTS.items() for k in sorted(ks))
            raise ValueError(f"{{{root}.{key}}} is unknown; known: {known}, form.<field>")
    return text


class FormField(_Doc):
    name: Annotated[str, Field(pattern=f"^{FIELD}$")]
    label: Label
    type: Literal["text", "number", "date", "choice", "boolean"] = "text"
    required: bool = False
    default: str | None = None
    choices: list[str] | None = None
    pattern: str | None = None
    max_length: Annotated[int, Field(ge=1, le=10_000)] = 500

    @field_validator("default")
    @classmethod
    def _default(cls, v: str | None) -> str | None:
        return _templates(v, None) if v is not None else v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v


class Action(_Doc):
    name: Annotated[str, Field(pattern=f"^{FIELD}$")]
    label: Label
    method: Literal["GET", "POST"] = "GET"
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 5.0
    show: list[str] | None = None  # the answer's keys to show (default: all)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(PLACEHOLDER.sub("x", v))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http or https URL")
        if "{" in parts.netloc:
            raise ValueError("the host is fixed: placeholders only in the path and query")
        return v


class HostedApp(_Doc):
    label: Label
    url: Annotated[str, Field(min_length=8, max_length=2000)]

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        _templates(v, None)
        parts = urlsplit(PLACEHOLDER.sub("x", v))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http or https URL")
        return v


class Match(_Doc):
    dnis: list[str] = []
    ivr: list[str] = []  # IVR nodes: a call whose path went through one is this topic


class Scenario(_Doc):
    scenario: Annotated[str, Field(pattern=f"^{NAME}$")]
    title: Label
    topic: Annotated[str, Field(min_length=1, max_length=200)]
    needs_customer: bool = True
    registration: str = "default"  # the service whose required fields registration asks
    needs_authorization: bool = False
    pin_flow: str | None = None  # the IVR flow that asks the caller's PIN (and returns)
    match: Match = Match()
    form: list[FormField] = []
    actions: list[Action] = []
    apps: list[HostedApp] = []


def check(text: str, name: str, topics: dict[str, int], services: set[str]) -> dict[str, Any]:
    """The scenario of ``text`` as JSON, with its topic's id; raises ScenarioError naming
    the line and reason of every problem."""
    try:
        doc = compose(text, name)
    except YamlProblems as e:
        raise ScenarioError([(n, r) for _, n, r in e.problems]) from None
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as e:
        refused = []
        for err in e.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            reason = str(err["msg"]).removeprefix("Value error, ")
            refused.append((line_of(doc, err["loc"]), f"{where}: {reason}"))
        raise ScenarioError(refused) from None
    problems: list[tuple[int, str]] = []
    lines = getattr(doc, "lines", {})
    if scenario.scenario != name:
        problems.append((lines.get("scenario", 1), f"scenario: the name is {name!r}"))
    if scenario.topic not in topics:
        problems.append((lines.get("topic", 1), f"topic: no topic named {scenario.topic!r}"))
    if scenario.registration not in services:
        known = ", ".join(sorted(services))
        problems.append((lines.get("registration", 1), f"registration: one of {known}"))
    fields = {f.name for f in scenario.form}
    for i, f in enumerate(scenario.form):
        if f.type == "choice" and not f.choices:
            problems.append((line_of(doc, ("form", i)), f"form.{i}: a choice needs choices"))
    if len(fields) != len(scenario.form):
        problems.append((lines.get("form", 1), "form: each field name once"))
    for i, a in enumerate(scenario.actions):
        try:
            _templates(a.url, fields)
        except ValueError as e:
            problems.append((line_of(doc, ("actions", i, "url")), f"actions.{i}.url: {e}"))
    if len({a.name for a in scenario.actions}) != len(scenario.actions):
        problems.append((lines.get("actions", 1), "actions: each name once"))
    if problems:
        raise ScenarioError(sorted(problems))
    out = scenario.model_dump()
    out["topic_id"] = topics[scenario.topic]
    return out


# --- storage ---------------------------------------------------------------------------------


async def _topics(conn: AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute("SELECT name, id FROM topics ORDER BY id")
    return {str(n): int(i) for n, i in await cur.fetchall()}


async def save(
    conn: AsyncConnection[Any], name: str, text: str, services: set[str], user: User
) -> dict[str, Any]:
    """Check and store a new version; the running one stays when the text is refused."""
    parsed = check(text, name, await _topics(conn), services)
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO service_scenarios (name, topic_id, source, version, updated_by)
               VALUES (%s, %s, %s, 1, %s)
               ON CONFLICT (name) DO UPDATE SET topic_id = excluded.topic_id,
                   source = excluded.source, version = service_scenarios.version + 1,
                   updated_at = now(), updated_by = excluded.updated_by
               RETURNING version""",
            (name, parsed["topic_id"], text, user.id),
        )
        row = await cur.fetchone()
        assert row is not None
        version = int(row[0])
        await conn.execute(
            "INSERT INTO service_scenario_versions (name, version, source, saved_by)"
            " VALUES (%s, %s, %s, %s)",
            (name, version, text, user.id),
        )
        await audit(conn, user.id, "save", "scenario", name, None, {"version": version})
    return {"name": name, "version": version, "scenario": parsed}


async def all_scenarios(
    conn: AsyncConnection[Any], services: dict[str, tuple[str, ...]], name: str | None = None
) -> list[dict[str, Any]]:
    """Every scenario (or the one named) as the desktop uses it: parsed, with the
    registration's required fields; one refused since (its topic renamed) is left out, and
    shown to admins by GET /api/scenarios/<name>."""
    cur = await conn.execute(
        "SELECT name, source, version FROM service_scenarios"
        " WHERE %(name)s::text IS NULL OR name = %(name)s ORDER BY name",
        {"name": name},
    )
    topics = await _topics(conn)
    out = []
    for found, source, version in await cur.fetchall():
        try:
            parsed = check(source, found, topics, set(services))
        except ScenarioError:
            continue
        parsed["registration_fields"] = list(services.get(parsed["registration"], ()))
        out.append({"name": found, "version": version, **parsed})
    return out


class ServiceStep(Body):
    step: Literal[
        "classification", "identification", "registration", "authorization", "form", "app",
        "done",
    ]  # fmt: skip
    call_id: Id | None = None
    customer_id: Id | None = None
    scenario: Annotated[str, Field(max_length=64)] | None = None
    topic_id: Id | None = None
    data: dict[str, Any] | None = None


class ActionRun(Body):
    call_id: Id | None = None
    customer_id: Id | None = None
    form: dict[str, str | int | float | bool] | None = None


async def record_step(
    conn: AsyncConnection[Any],
    user: User,
    step: str,
    *,
    call: CallRef | None = None,
    customer_id: int | None = None,
    scenario: str | None = None,
    topic_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """One step; on a call whose record is written already, it joins its interaction at
    once (else when the record is written: ``ccorch.calls.cdr.write``)."""
    text = jsonlib.dumps(data or {}, ensure_ascii=False, default=str)
    if len(text) > 20_000:
        raise RequestRefused(413, "a step's data is 20,000 characters at most")
    sip_call_id = call.sip_call_id if call is not None else None
    arrived_at = call.arrived_at if call is not None else None
    cur = await conn.execute(
        """INSERT INTO service_steps (call_ref, sip_call_id, call_arrived_at, customer_id,
                                      user_id, step, scenario, topic_id, data, interaction_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
                   (SELECT i.id FROM interactions i JOIN cdrs c ON c.id = i.cdr_id
                    WHERE c.sip_call_id = %s AND c.arrived_at = %s LIMIT 1))
           RETURNING id""",
        (
            call.id if call is not None else None,
            sip_call_id,
            arrived_at,
            customer_id,
            user.id,
            step,
            scenario,
            topic_id,
            Jsonb(jsonlib.loads(text)),
            sip_call_id,
            arrived_at,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def steps_of_interaction(conn: AsyncConnection[Any], interaction_id: int) -> list[Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT s.id, s.step, s.scenario, s.topic_id, s.customer_id, s.data, s.at,
                  u.login AS user
           FROM service_steps s LEFT JOIN users u ON u.id = s.user_id
           WHERE s.interaction_id = %s ORDER BY s.at, s.id""",
        (interaction_id,),
    )
    return [{**r, "at": r["at"].isoformat()} for r in await cur.fetchall()]


# --- templates -------------------------------------------------------------------------------


async def _values(
    conn: AsyncConnection[Any], user: User, customer_id: int | None, call: CallRef | None
) -> dict[str, str]:
    values = {"user.login": user.login}
    cur = await conn.execute("SELECT extension FROM users WHERE id = %s", (user.id,))
    row = await cur.fetchone()
    values["user.extension"] = str(row[0] or "") if row else ""
    if call is not None:
        values |= {"call.id": str(call.id), "call.ani": call.ani, "call.dnis": call.dnis}
    if customer_id is not None:
        cur = await conn.execute(
            "SELECT name, region, segment FROM customers WHERE id = %s", (customer_id,)
        )
        row = await cur.fetchone()
        if row is not None:
            values |= {"customer.id": str(customer_id), "customer.name": row[0],
                       "customer.region": row[1] or "", "customer.segment": row[2]}  # fmt: skip
        cur = await conn.execute(
            "SELECT contract_no, balance, currency FROM accounts WHERE customer_id = %s"
            " ORDER BY contract_no LIMIT 1",
            (customer_id,),
        )
        row = await cur.fetchone()
        if row is not None:
            values |= {"account.contract_no": row[0], "account.balance": str(row[1]),
                       "account.currency": row[2]}  # fmt: skip
    return values


def fill(template: str, values: dict[str, str], *, url: bool) -> str:
    """The template with its placeholders filled (percent-encoded in a URL); an unknown
    value is left empty."""

    def one(m: re.Match[str]) -> str:
        v = values.get(f"{m.group(1)}.{m.group(2)}", "")
        return quote(v, safe="") if url else v

    return PLACEHOLDER.sub(one, template)


# --- the API ---------------------------------------------------------------------------------


def _services(request: Request) -> dict[str, tuple[str, ...]]:
    return dict(request.app.ctx.config.crm.required_fields)


async def _call(request: Request, call_id: int | None) -> CallRef | None:
    """The call the operator works on (its own, in progress or just ended), or None."""
    if call_id is None:
        return None
    if getattr(request.app.ctx, "calls", None) is None:
        raise RequestRefused(404, f"no call {call_id}")
    return call_for(request.app, await actor_of(request), call_id)


async def _customer_ok(conn: AsyncConnection[Any], user: User, customer_id: int | None) -> None:
    if customer_id is not None and not await can_see_customer(conn, user, customer_id):
        raise RequestRefused(404, f"no customer {customer_id}")


async def list_all(request: Request) -> HTTPResponse:
    async with pool(request).connection() as conn:
        return json({"items": await all_scenarios(conn, _services(request))})


async def get_one(request: Request, name: str) -> HTTPResponse:
    async with pool(request).connection() as conn:
        cur = await conn.execute(
            "SELECT source, version, updated_at FROM service_scenarios WHERE name = %s", (name,)
        )
        row = await cur.fetchone()
        if row is None:
            return error(404, "not_found", f"no scenario {name}")
        cur = await conn.execute(
            "SELECT version, saved_at FROM service_scenario_versions WHERE name = %s"
            " ORDER BY version DESC",
            (name,),
        )
        versions = [{"version": v, "saved_at": at.isoformat()} for v, at in await cur.fetchall()]
        problems: list[dict[str, Any]] = []
        try:
            check(row[0], name, await _topics(conn), set(_services(request)))
        except ScenarioError as e:
            problems = [{"line": n, "reason": r} for n, r in e.problems]
    return json({"name": name, "source": row[0], "version": row[1],
                 "updated_at": row[2].isoformat(), "versions": versions,
                 "problems": problems})  # fmt: skip


class ScenarioUpload(Body):
    source: Annotated[str, Field(min_length=1, max_length=131_072, description="the YAML")]


async def put_one(request: Request, name: str) -> HTTPResponse:
    if not re.fullmatch(NAME, name):
        return error(404, "not_found", f"no scenario {name}")
    text = parse(ScenarioUpload, json_body(request))["source"]
    async with pool(request).connection() as conn:
        try:
            saved = await save(conn, name, text, set(_services(request)), request.ctx.user)
        except ScenarioError as e:
            return error(
                422,
                "scenario_refused",
                "the scenario was refused; the running version stays",
                problems=[{"line": n, "reason": r} for n, r in e.problems],
            )
    return json(saved)


async def add_step(request: Request) -> HTTPResponse:
    data = parse(ServiceStep, json_body(request))
    user: User = request.ctx.user
    call = await _call(request, data.get("call_id"))
    async with pool(request).connection() as conn:
        await _customer_ok(conn, user, data.get("customer_id"))
        topic = data.get("topic_id")
        if topic is not None:
            cur = await conn.execute("SELECT 1 FROM topics WHERE id = %s", (topic,))
            if await cur.fetchone() is None:  # (a 422 naming it, not the foreign key's 500)
                raise ValidationFailed({"topic_id": f"no topic {topic}"})
        sid = await record_step(
            conn, user, data["step"], call=call, customer_id=data.get("customer_id"),
            scenario=data.get("scenario"), topic_id=data.get("topic_id"), data=data.get("data"),
        )  # fmt: skip
    return json({"id": sid}, status=201)


async def run_action(request: Request, name: str, action: str) -> HTTPResponse:
    """Call the outside web service an action names (the URL is the scenario's, never the
    client's; the form's values are percent-encoded into it) and show its answer."""
    data = parse(ActionRun, json_body(request))
    user: User = request.ctx.user
    call = await _call(request, data.get("call_id"))
    async with pool(request).connection() as conn:
        await _customer_ok(conn, user, data.get("customer_id"))
        scenario = next(iter(await all_scenarios(conn, _services(request), name)), None)
        spec = next((a for a in (scenario or {}).get("actions", []) if a["name"] == action), None)
        if scenario is None or spec is None:
            return error(404, "not_found", f"no action {action} in scenario {name}")
        form = {k: str(v) for k, v in (data.get("form") or {}).items()}
        values = await _values(conn, user, data.get("customer_id"), call)
        values |= {f"form.{k}": v for k, v in form.items()}
        url = fill(spec["url"], values, url=True)
        started = time.monotonic()
        status: int | None = None
        answer: Any = None
        problem: str | None = None
        client: httpx.AsyncClient = request.app.ctx.http_client
        try:
            r = await client.request(
                spec["method"],
                url,
                json={"form": form, "customer_id": data.get("customer_id")}
                if spec["method"] == "POST"
                else None,
                timeout=spec["timeout_seconds"],
            )
            status = r.status_code
            try:
                answer = r.json()
            except ValueError:
                answer = r.text[:ANSWER_LIMIT]
        except httpx.TimeoutException:
            problem = f"no answer within {spec['timeout_seconds']:g} s"
        except httpx.HTTPError as e:
            problem = f"{type(e).__name__}: {e}"[:500]
        elapsed = round((time.monotonic() - started) * 1000, 1)
        if isinstance(answer, dict) and spec.get("show"):
            answer = {k: answer.get(k) for k in spec["show"]}
        if len(jsonlib.dumps(answer, default=str)) > ANSWER_LIMIT:
            answer = jsonlib.dumps(answer, default=str)[:ANSWER_LIMIT]
        result = {"status": status, "answer": answer, "error": problem, "elapsed_ms": elapsed}
        await record_step(
            conn, user, "action", call=call, customer_id=data.get("customer_id"),
            scenario=name, topic_id=scenario["topic_id"],
            data={"action": action, "form": form, **result},
        )  # fmt: skip
    return json(result)


async def interaction_steps(request: Request, interaction_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        cur = await conn.execute(
            "SELECT customer_id FROM interactions WHERE id = %s", (interaction_id,)
        )
        row = await cur.fetchone()
        if row is None or (
            row[0] is not None and not await can_see_customer(conn, request.ctx.user, row[0])
        ):
            return error(404, "not_found", f"no interaction {interaction_id}")
        return json({"items": await steps_of_interaction(conn, interaction_id)})


async def app_link(request: Request, name: str, index: int) -> HTTPResponse:
    """A hosted application's URL for this call and customer (opened in a new tab)."""
    user: User = request.ctx.user
    ids: dict[str, int | None] = {}
    for key in ("call_id", "customer_id"):
        raw = request.args.get(key)
        if raw is not None and not raw.isdigit():
            raise ValidationFailed({key: "expected an id (digits)"})
        ids[key] = int(raw) if raw else None
    call = await _call(request, ids["call_id"])
    customer_id = ids["customer_id"]
    async with pool(request).connection() as conn:
        await _customer_ok(conn, user, customer_id)
        scenario = next(iter(await all_scenarios(conn, _services(request), name)), None)
        apps = scenario["apps"] if scenario is not None else []
        if not 0 <= index < len(apps):
            return error(404, "not_found", f"no app {index} in scenario {name}")
        url = fill(apps[index]["url"], await _values(conn, user, customer_id, call), url=True)
        await record_step(conn, user, "app", call=call, customer_id=customer_id, scenario=name,
                          topic_id=scenario["topic_id"] if scenario else None,
                          data={"url": url})  # fmt: skip
    return json({"url": url})


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/scenarios",
        "The service scenarios, parsed (forms, actions, apps, the registration's fields)",
        READERS,
        list_all,
    ),
    Route(
        "GET",
        "/api/scenarios/<name:str>",
        "A scenario's YAML, versions and any problems",
        ("supervisor", "admin"),
        get_one,
        responses={404: "no such scenario"},
    ),
    Route(
        "PUT",
        "/api/scenarios/<name:str>",
        "Upload a scenario (YAML); refused with line and reason, the running version stays",
        EDITORS,
        put_one,
        body=ScenarioUpload,
        max_body=160 * 1024,
        responses={422: "refused, with problems [{line, reason}]"},
    ),
    Route(
        "POST",
        "/api/service-steps",
        "Record a step of the guided service on the call (joins its interaction)",
        READERS,
        add_step,
        body=ServiceStep,
        responses={201: "recorded", 404: "no such call or customer"},
    ),
    Route(
        "POST",
        "/api/scenarios/<name:str>/actions/<action:str>",
        "Run an action: the node calls the scenario's web service (timeout) and answers with"
        " its status and answer; recorded as a step",
        READERS,
        run_action,
        body=ActionRun,
        responses={404: "no such action"},
    ),
    Route(
        "GET",
        "/api/scenarios/<name:str>/apps/<index:int>",
        "A hosted application's URL filled for the call and customer (?call_id=&customer_id=)",
        READERS,
        app_link,
        responses={404: "no such app"},
    ),
    Route(
        "GET",
        "/api/interactions/<interaction_id:int>/steps",
        "The guided-service steps recorded on an interaction",
        READERS,
        interaction_steps,
        responses={404: "no such interaction"},
    ),
)
