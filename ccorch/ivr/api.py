"""The flows' REST routes: list, read, upload a new version, roll back.

Declared as :class:`ccorch.api.routes.Route` rows, so the same guard (session, roles), JSON
errors and ``/openapi.json`` cover them. Reading needs supervisor or admin; changing a flow
needs admin. A refused upload is a 422 listing each problem with file, line and reason; the
running version stays. Every upload and rollback goes to the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json, raw

from ccorch.api.http import error as _error
from ccorch.api.http import json_body as _body
from ccorch.api.http import pool as _pool
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Id, parse
from ccorch.crm import store as crm_store
from ccorch.ivr import dry_run, prompts, schema, tts
from ccorch.ivr.flow import Flow, FlowError, node_at_lines, node_of
from ccorch.ivr.store import FlowStore


class FlowUpload(Body):
    source: Annotated[str, Field(min_length=1, max_length=262_144, description="the flow's YAML")]
    # the version the editor opened: refused (409) when another was published since
    base_version: Id | None = None


class FlowCheck(Body):
    source: Annotated[str, Field(min_length=1, max_length=262_144, description="the flow's YAML")]
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class FlowTry(Body):
    source: Annotated[str, Field(min_length=1, max_length=262_144)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    ani: Annotated[str, Field(pattern=r"^\+?[0-9]{1,20}$")] = "0000000"
    dnis: Annotated[str, Field(max_length=32)] = ""
    keys: Annotated[str, Field(pattern=r"^[0-9*#t]{0,200}$")] = ""


class PromptUpload(Body):
    name: Annotated[str, Field(min_length=5, max_length=85, description="e.g. greeting-ru.wav")]
    content_base64: Annotated[str, Field(min_length=4, max_length=80_000_000)]


class SayText(Body):
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    language: Literal["ru", "en", "zh"]


class Position(Body):
    x: Annotated[float, Field(strict=False, ge=-1e6, le=1e6)]
    y: Annotated[float, Field(strict=False, ge=-1e6, le=1e6)]


class FlowLayout(Body):
    positions: Annotated[dict[str, Position], Field(max_length=2000)]


class FlowRollback(Body):
    version: Id


READ = ("supervisor", "admin")
CHANGE = ("admin",)


def _flows(request: Request) -> FlowStore | None:
    flows: FlowStore | None = getattr(request.app.ctx, "flows", None)
    return flows


def _summary(f: Flow) -> dict[str, Any]:
    return {
        "name": f.name,
        "version": f.version,
        "dnis": list(f.dnis),
        "language": f.language,
        "file": f.path,
        "digest": f.digest,
    }


def _unavailable() -> HTTPResponse:
    return _error(503, "unavailable", "flows are not loaded on this node")


_NODE_NAMED = re.compile(r"node '([^']+)'")


def _problem_list(e: FlowError, text: str | None = None) -> list[dict[str, Any]]:
    """Each problem with file, line and reason, and the node it concerns (the one its
    reason names, else the one whose block holds its line) for the editor to mark."""
    starts = node_at_lines(text, "flow.yaml") if text is not None else []
    out = []
    for f, n, r in e.problems:
        named = _NODE_NAMED.match(r)
        node = named.group(1) if named else node_of(starts, n) if n else None
        out.append({"file": f, "line": n, "reason": r, "node": node})
    return out


def _problems(e: FlowError, text: str | None = None) -> HTTPResponse:
    return _error(
        422,
        "flow_refused",
        "the flow was refused; the running version stays",
        problems=_problem_list(e, text),
    )


async def list_flows(request: Request) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    return json(
        {
            "items": [_summary(f) for _, f in sorted(flows.by_name.items())],
            "refused": [
                {"file": file, "problems": [{"line": n, "reason": r} for _, n, r in problems]}
                for file, problems in sorted(flows.errors.items())
            ],
        }
    )


async def get_flow(request: Request, name: str) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    current = flows.by_name.get(name)
    if current is None:
        return _error(404, "not_found", f"no flow {name!r}")
    history = await asyncio.to_thread(flows.history, name)
    layout = await asyncio.to_thread(flows.layout, name)
    published = await _publications(request, name)
    return json(
        {
            **_summary(current),
            "source": current.source,
            "layout": layout,
            "versions": [
                {
                    "version": n,
                    "digest": d,
                    "kept_at": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(),
                    # the last time it was published over the API, and by whom (a version
                    # that came from editing the file has none)
                    **published.get(n, {"published_by": None, "published_at": None}),
                }
                for n, d, t in history
            ],
        }
    )


async def _publications(request: Request, name: str) -> dict[int, dict[str, Any]]:
    """Who last published (uploaded or rolled back to) each version, from the audit log."""
    async with _pool(request).connection() as conn:
        cur = await conn.execute(
            """SELECT DISTINCT ON ((a.after->>'version')::int) (a.after->>'version')::int,
                      u.login, a.at, a.action
                 FROM audit_log a LEFT JOIN users u ON u.id = a.user_id
                WHERE a.entity = 'ivr_flow' AND a.entity_id = %s
                  AND a.action IN ('upload', 'rollback')
                ORDER BY (a.after->>'version')::int, a.at DESC""",
            (name,),
        )
        rows = await cur.fetchall()
    return {
        v: {"published_by": login, "published_at": at.isoformat(), "published_as": action}
        for v, login, at, action in rows
    }


async def diff_versions(request: Request, name: str) -> HTTPResponse:
    """Two versions' texts as a unified diff (``?from=1&to=2``; ``to`` defaults to the one
    served)."""
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    current = flows.by_name.get(name)
    if current is None:
        return _error(404, "not_found", f"no flow {name!r}")
    try:
        old = int(request.args.get("from", ""))
        new = int(request.args.get("to", current.version))
    except ValueError:
        return _error(
            422, "invalid", "from and to are version numbers", fields={"from": "a number"}
        )
    try:
        a = await asyncio.to_thread(flows.source, name, old)
        b = await asyncio.to_thread(flows.source, name, new)
    except KeyError as e:
        return _error(404, "not_found", str(e.args[0]))
    lines = difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), f"{name} v{old}", f"{name} v{new}"
    )
    return json({"name": name, "from": old, "to": new, "diff": "".join(lines)})


async def get_version(request: Request, name: str, version: int) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    try:
        text = await asyncio.to_thread(flows.source, name, version)
    except KeyError as e:
        return _error(404, "not_found", str(e.args[0]))
    return json({"name": name, "version": version, "source": text})


async def _audited(request: Request, action: str, before: Flow | None, after: Flow) -> None:
    async with _pool(request).connection() as conn, conn.transaction():
        await crm_store.audit(
            conn,
            request.ctx.user.id,
            action,
            "ivr_flow",
            after.name,
            None if before is None else {"version": before.version, "digest": before.digest},
            {"version": after.version, "digest": after.digest},
        )


# one publication at a time: the version check and the write are one step
_PUBLISHING = asyncio.Lock()


async def put_flow(request: Request, name: str) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    fields = parse(FlowUpload, _body(request))
    text = fields["source"]
    async with _PUBLISHING:
        before = flows.by_name.get(name)
        base = fields.get("base_version")
        if base is not None and (before is None or before.version != base):
            return _error(
                409,
                "conflict",
                f"flow {name!r} changed since you opened it (version {base}); it is now "
                f"version {before.version if before else 'gone'}: reload it and apply your "
                "changes again",
                current_version=before.version if before else None,
            )
        filename = before.path.rsplit("/", 1)[-1] if before is not None else f"{name}.yaml"
        try:
            flow = await asyncio.to_thread(flows.upload, text, filename, name)
        except FlowError as e:
            return _problems(e, text)
    await _audited(request, "upload", before, flow)
    return json(_summary(flow), status=200 if before is not None else 201)


async def check_flow(request: Request) -> HTTPResponse:
    """Check a flow's text as publishing would, without publishing it."""
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    fields = parse(FlowCheck, _body(request))
    text, name = fields["source"], fields.get("name")
    before = flows.by_name.get(name) if name else None
    filename = before.path.rsplit("/", 1)[-1] if before is not None else f"{name or 'new'}.yaml"
    try:
        flow = await asyncio.to_thread(flows.check, text, filename, name)
    except FlowError as e:
        return json({"ok": False, "problems": _problem_list(e, text)})
    return json({"ok": True, "problems": [], "name": flow.name, "nodes": len(flow.nodes)})


async def try_flow(request: Request) -> HTTPResponse:
    """Walk a flow (the text given, or the flow in service by name) as a caller pressing
    keys, without a call and without writing anything (``ccorch.ivr.dry_run``)."""
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    fields = parse(FlowTry, _body(request))
    text, name = fields.get("source"), fields.get("name")
    if text is None:
        current = flows.by_name.get(name or "")
        if current is None:
            return _error(404, "not_found", f"no flow {name!r}")
        flow = current
        text = current.source
    else:
        try:
            flow = await asyncio.to_thread(flows.check, text, f"{name or 'try'}.yaml", name)
        except FlowError as e:
            return _problems(e, text)
    walked = await dry_run.walk(
        flow,
        ani=fields.get("ani", "0000000"),
        dnis=fields.get("dnis") or (flow.dnis[0] if flow.dnis else ""),
        keys=fields.get("keys", ""),
        pool=_pool(request),
        clock=request.app.ctx.clock,
        country=request.app.ctx.config.crm.default_country,
    )
    return json({"flow": flow.name, "language": flow.language, **walked})


async def say_text(request: Request) -> HTTPResponse:
    """A prompt's text as the callers would hear it (8 kHz WAV), to listen in the editor."""
    fields = parse(SayText, _body(request))
    folder = Path(request.app.ctx.config.ivr.tts_cache_dir)
    missing = tts.voice_problem(fields["language"])
    if missing:
        return _error(503, "unavailable", missing)
    try:
        path = await asyncio.to_thread(tts.render, fields["text"], fields["language"], folder)
    except tts.TtsError as e:  # the voice is there: it is this text it cannot say
        return _error(422, "invalid", f"the text cannot be spoken: {e}", fields={"text": str(e)})
    return raw(await asyncio.to_thread(path.read_bytes), content_type="audio/wav")


async def upload_prompt(request: Request) -> HTTPResponse:
    """A recorded prompt: checked, converted to 8 kHz mono, kept for flows to name."""
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    fields = parse(PromptUpload, _body(request))
    try:
        data = base64.b64decode(fields["content_base64"], validate=True)
    except ValueError:
        return _error(
            422, "invalid", "content_base64 is not base64", fields={"content_base64": "not base64"}
        )
    try:
        kept = await asyncio.to_thread(prompts.save, flows.folder, fields["name"], data)
    except prompts.PromptError as e:
        return _error(422, "invalid", str(e), fields={"content_base64": str(e)})
    async with _pool(request).connection() as conn, conn.transaction():
        await crm_store.audit(
            conn, request.ctx.user.id, "upload", "ivr_prompt", kept["file"], None, kept
        )
    return json(kept, status=201)


async def list_prompts(request: Request) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    return json({"items": await asyncio.to_thread(prompts.listed, flows.folder)})


async def flow_schema(request: Request) -> HTTPResponse:
    return json(schema.as_json())


async def put_layout(request: Request, name: str) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    current = flows.by_name.get(name)
    if current is None:
        return _error(404, "not_found", f"no flow {name!r}")
    positions = parse(FlowLayout, _body(request))["positions"]
    kept = {n: p for n, p in positions.items() if n in current.nodes}
    await asyncio.to_thread(flows.save_layout, name, kept)
    return json({"name": name, "positions": kept})


async def rollback_flow(request: Request, name: str) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    version = parse(FlowRollback, _body(request))["version"]
    before = flows.by_name.get(name)
    try:
        flow = await asyncio.to_thread(flows.rollback, name, version)
    except KeyError as e:
        return _error(404, "not_found", str(e.args[0]))
    except FlowError as e:  # e.g. a queue it names is gone since
        return _problems(e)
    await _audited(request, "rollback", before, flow)
    return json(_summary(flow))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/flows", "The IVR flows in service, and refused files", READ, list_flows),
    Route(
        "GET",
        "/api/flows/schema",
        "The node types, their fields and exits: what the loader accepts (the flow editor's"
        " palette and property panels)",
        READ,
        flow_schema,
    ),
    Route(
        "POST",
        "/api/flows/check",
        "Check a flow's text as publishing would (problems with line, reason and node);"
        " nothing is published",
        READ,
        check_flow,
        body=FlowCheck,
        max_body=1024 * 1024,
    ),
    Route(
        "POST",
        "/api/flows/try",
        "Walk a flow as a caller pressing keys: the path, what is said, the variables, where"
        " it ends; no call, nothing written (the CRM and lookups are read)",
        CHANGE,
        try_flow,
        body=FlowTry,
        responses={404: "no such flow", 422: "the text is refused, with lines"},
        max_body=1024 * 1024,
    ),
    Route(
        "POST",
        "/api/flows/prompts",
        "Upload a recorded prompt (WAV, 8-48 kHz): checked, converted to 8 kHz mono, kept as"
        " prompts/<name> for flows to name",
        CHANGE,
        upload_prompt,
        body=PromptUpload,
        responses={201: "kept", 422: "not a WAV the IVR can play, with the reason"},
        max_body=64 * 1024 * 1024,
    ),
    Route("GET", "/api/flows/prompts", "The recorded prompts kept", READ, list_prompts),
    Route(
        "POST",
        "/api/flows/say",
        "A prompt's text spoken in a language, as an 8 kHz WAV",
        CHANGE,
        say_text,
        body=SayText,
        responses={200: "audio/wav", 503: "no voice for the language"},
    ),
    Route(
        "PUT",
        "/api/flows/<name:str>/layout",
        "Where the editor drew the flow's nodes, kept beside the flow",
        CHANGE,
        put_layout,
        body=FlowLayout,
        responses={404: "no such flow"},
        max_body=1024 * 1024,
    ),
    Route(
        "GET",
        "/api/flows/<name:str>",
        "A flow: the version served, its text, the versions kept",
        READ,
        get_flow,
    ),
    Route(
        "GET",
        "/api/flows/<name:str>/diff",
        "Two versions' texts as a unified diff (?from=N&to=M)",
        READ,
        diff_versions,
        responses={404: "no such flow or version", 422: "from and to are numbers"},
    ),
    Route(
        "GET",
        "/api/flows/<name:str>/versions/<version:int>",
        "The text of one kept version",
        READ,
        get_version,
    ),
    Route(
        "PUT",
        "/api/flows/<name:str>",
        "Upload a new version (checked first; new calls use it at once)",
        CHANGE,
        put_flow,
        body=FlowUpload,
        responses={
            200: "a new version of a flow",
            201: "a new flow",
            409: "changed since base_version",
            422: "refused, with lines",
        },
        max_body=1024 * 1024,
    ),
    Route(
        "POST",
        "/api/flows/<name:str>/rollback",
        "Serve a kept version again",
        CHANGE,
        rollback_flow,
        body=FlowRollback,
        responses={404: "no such version"},
    ),
)
