"""The browser app (built from ``web/`` into ``ccorch/web/dist`` by the set-up command,
shipped in the wheel) served at ``/``: one page, its hashed assets under ``/assets/``.

The app talks to the node only through the documented API and event stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse, HTTPResponse, file, json

DIST = Path(__file__).parent / "dist"


def install(app: Sanic[Any, Any], dist: Path = DIST) -> None:
    index = dist / "index.html"

    async def page(request: Request) -> HTTPResponse:
        if not index.is_file():
            return json(
                {
                    "error": "unavailable",
                    "message": "the web app is not built: run scripts/setup.sh"
                    " (it runs npm ci and npm run build in web/)",
                },
                status=503,
            )
        # the page names the current assets: never cached, so an upgrade shows at once
        return await file(index, headers={"cache-control": "no-cache"})

    app.add_route(page, "/", methods=["GET"], name="web_app")
    if (dist / "assets").is_dir():
        # hashed file names: a new build has new names, so these may be kept a year
        app.static("/assets", dist / "assets", name="web_assets", use_content_range=False)

        async def _cache_assets(request: Request, response: BaseHTTPResponse) -> None:
            if request.path.startswith("/assets/") and response.status == 200:
                response.headers["cache-control"] = "public, max-age=31536000, immutable"

        app.register_middleware(_cache_assets, "response")
