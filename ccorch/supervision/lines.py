"""Trunks and lines for the supervisor (seed 004: 用户、中继状态): each trunk up or down and
its calls now, each phone account registered or not (where from, over what, which phone).

- ``GET /api/lines`` [supervisor, admin]: ``{"trunks": [...], "phones": [...]}``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.routes import Route


def lines(app: Any) -> dict[str, Any]:
    service, ctl = app.ctx.sip, app.ctx.calls
    if service is None:
        return {"trunks": [], "phones": []}
    per_trunk: Counter[str] = Counter()
    for call in list(ctl.calls.values()) if ctl is not None else []:
        if call.state == "ended":
            continue
        trunk = call.origin.trunk or call.outbound_trunk
        if trunk is not None:
            per_trunk[trunk.name] += 1
    trunks = [
        {
            "name": t.name,
            "host": t.host,
            "port": t.port,
            "transport": t.transport,
            "outbound": t.outbound,
            "probed": t.options_interval > 0,
            "up": t.up,  # None: not probed (or no answer yet)
            "calls": per_trunk[t.name],
        }
        for t in service.trunks
    ]
    now = service.now()
    phones = []
    for user, account in sorted(service.accounts.items()):
        bindings = service.registrar.lookup(now, user)
        phones.append(
            {
                "extension": user,
                "name": account.display_name,
                "registered": bool(bindings),
                "contacts": [
                    {
                        "transport": b.source.transport,
                        "source": f"{b.source.host}:{b.source.port}",
                        "user_agent": b.user_agent,
                        "expires_in": max(0, round(b.expires_at - now)),
                    }
                    for b in bindings
                ],
            }
        )
    return {"trunks": trunks, "phones": phones}


async def list_lines(request: Request) -> HTTPResponse:
    return json(lines(request.app))


ROUTES = (
    Route(
        "GET",
        "/api/lines",
        "Trunks (up or down, calls now) and phone accounts (registered, from where)",
        ("supervisor", "admin"),
        list_lines,
    ),
)
