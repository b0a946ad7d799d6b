"""The flows' REST routes: list, read, upload a new version, roll back.

Declared as :class:`ccorch.api.routes.Route` rows, so the same guard (session, roles), JSON
errors and ``/openapi.json`` cover them. Reading needs supervisor or admin; changing a flow
needs admin. A refused upload is a 422 listing each problem with file, line and reason; the
running version stays. Every upload and rollback goes to the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import error as _error
from ccorch.api.http import json_body as _body
from ccorch.api.http import pool as _pool
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Id, parse
from ccorch.crm import store as crm_store
from ccorch.ivr.flow import Flow, FlowError
from ccorch.ivr.store import FlowStore


class FlowUpload(Body):
    source: Annotated[str, Field(min_length=1, max_length=262_144, description="the flow's YAML")]


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


def _problems(e: FlowError) -> HTTPResponse:
    return _error(
        422,
        "flow_refused",
        "the flow was refused; the running version stays",
        problems=[{"file": f, "line": n, "reason": r} for f, n, r in e.problems],
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
    return json(
        {
            **_summary(current),
            "source": current.source,
            "versions": [
                {
                    "version": n,
                    "digest": d,
                    "kept_at": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(),
                }
                for n, d, t in history
            ],
        }
    )


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


async def put_flow(request: Request, name: str) -> HTTPResponse:
    flows = _flows(request)
    if flows is None:
        return _unavailable()
    text = parse(FlowUpload, _body(request))["source"]
    before = flows.by_name.get(name)
    filename = before.path.rsplit("/", 1)[-1] if before is not None else f"{name}.yaml"
    try:
        flow = await asyncio.to_thread(flows.upload, text, filename, name)
    except FlowError as e:
        return _problems(e)
    await _audited(request, "upload", before, flow)
    return json(_summary(flow), status=200 if before is not None else 201)


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
        "/api/flows/<name:str>",
        "A flow: the version served, its text, the versions kept",
        READ,
        get_flow,
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
        responses={200: "a new version of a flow", 201: "a new flow", 422: "refused, with lines"},
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
