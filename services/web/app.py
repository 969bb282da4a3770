"""`create_app()` for the chat app: desktop-app/'s files and same-origin proxies to the gateway, RAG, MCP and alerts,
and the Status page's charts from Prometheus.

The browser talks to one origin only (this service), so the app needs no CORS grant and its CSP can say
`connect-src 'self'`. Every request is passed upstream with the browser's Authorization (and Origin), so each
service checks its own key and rules; this service checks none itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.common.app_factory import harden
from services.common.errors import BadRequest, NotFound
from services.common.health import health_response
from services.common.httpclient import make_client
from services.web.charts import WINDOWS_MINUTES, charts
from services.web.headers import SecurityHeaders
from services.web.proxy import forward, quoted_path, quoted_segment
from services.web.settings import WebSettings
from services.web.static import INDEX, media_type, read_static

# the front-end routes by location.pathname; each of these loads the app
APP_PAGES = ("/", "/approvals", "/settings", "/status")
# RAG routes the app uses: (method, first path segment, number of segments)
RAG_ROUTES = {("GET", "collections", 1), ("GET", "collections", 3), ("POST", "query", 1),
              ("POST", "search", 1), ("POST", "index", 1)}
ALERTS_TIMEOUT = 3.0


def rag_route_allowed(method: str, path: str) -> bool:
    """Whether the app uses this RAG route (dot segments are refused later, by quoted_path)."""
    parts = path.split("/")
    if "" in parts:
        return False
    if len(parts) == 3 and parts[2] != "documents":
        return False
    return (method, parts[0], len(parts)) in RAG_ROUTES


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: WebSettings = app.state.settings
    app.state.client = make_client(settings.proxy_timeout, settings.connect_timeout)
    try:
        yield
    finally:
        await app.state.client.aclose()


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings()
    app = FastAPI(title="Local AI Suite chat app", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.settings = settings
    # no key of its own: static files are public, and each upstream checks the Authorization passed to it
    harden(app, settings.model_copy(update={"api_key": None}))
    app.add_middleware(SecurityHeaders)
    gateway = settings.gateway_url.rstrip("/")
    rag = settings.rag_url.rstrip("/")
    mcp = settings.mcp_url.rstrip("/")
    root = settings.static_dir

    def client(request: Request) -> httpx.AsyncClient:
        found: httpx.AsyncClient = request.app.state.client
        return found

    def static(relative: str) -> Response:
        body = read_static(root, relative)
        if body is None:
            raise NotFound(f"no such file: /{relative}")
        return Response(body, media_type=media_type(relative), headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health() -> JSONResponse:
        index = read_static(root, INDEX) is not None
        return health_response("desktop-web", {"static": "ok" if index else f"no {INDEX} in {root}"},
                               info={"gateway": gateway})

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def v1(path: str, request: Request) -> Response:
        return await forward(client(request), request, f"{gateway}/v1/{quoted_path(path)}", "the gateway")

    @app.api_route("/rag/{path:path}", methods=["GET", "POST"])
    async def rag_proxy(path: str, request: Request) -> Response:
        if not rag_route_allowed(request.method, path):
            raise NotFound(f"the app has no RAG route {request.method} /rag/{path}")
        return await forward(client(request), request, f"{rag}/{quoted_path(path)}", "the RAG service")

    @app.get("/mcp/approvals")
    async def approvals(request: Request) -> Response:
        return await forward(client(request), request, f"{mcp}/api/approvals", "the MCP server",
                             query="everyone=true")

    @app.post("/mcp/approvals/{request_id}/{decision}")
    async def decide(request_id: str, decision: str, request: Request) -> Response:
        if decision not in ("approve", "reject"):
            raise NotFound(f"no such decision {decision!r}: approve or reject")
        return await forward(client(request), request,
                             f"{mcp}/api/approvals/{quoted_segment(request_id)}/{decision}",
                             "the MCP server")

    @app.get("/api/alerts")
    async def alerts(request: Request) -> dict[str, Any]:
        return await active_alerts(client(request), settings)

    @app.get("/api/charts")
    async def status_charts(request: Request, minutes: int = 15) -> dict[str, Any]:
        if minutes not in WINDOWS_MINUTES:
            raise BadRequest(f"minutes must be one of {', '.join(map(str, WINDOWS_MINUTES))}, not {minutes}")
        return await charts(client(request), settings.prometheus_url, minutes)

    @app.get("/c/{conversation_id}")
    async def conversation_page(conversation_id: str) -> Response:
        return static(INDEX)

    for page in APP_PAGES:
        app.add_api_route(page, lambda: static(INDEX), methods=["GET"], include_in_schema=False)

    @app.get("/{relative:path}")
    async def files(relative: str) -> Response:
        return static(relative)

    return app


async def active_alerts(client: httpx.AsyncClient, settings: WebSettings) -> dict[str, Any]:
    """The receiver's firing alerts in the app's shape; `available` is false when there is no receiver."""
    if not settings.alerts_url:
        return {"available": False, "alerts": [], "error": "no alert receiver configured (WEB_ALERTS_URL)"}
    headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        response = await client.get(settings.alerts_url.rstrip("/") + "/alerts", headers=headers,
                                    timeout=ALERTS_TIMEOUT)
        response.raise_for_status()
        active = response.json()["active"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return {"available": False, "alerts": [], "error": f"the alert receiver did not answer ({exc})"}
    found = []
    for alert in active if isinstance(active, list) else []:
        labels = alert.get("labels") or {}
        found.append({"name": alert.get("name", ""), "severity": labels.get("severity", ""),
                      "service": labels.get("service") or labels.get("job", ""),
                      "summary": alert.get("summary", ""), "since": alert.get("starts_at", "")})
    return {"available": True, "alerts": found}
