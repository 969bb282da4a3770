"""`create_app()` for the MCP server: streamable HTTP at /mcp, plus /health, /metrics and approval polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import NotFound, SuiteError, Unauthorized, error_body, install_error_handlers
from services.common.health import health_response
from services.common.metrics import instrument
from services.common.settings import is_loopback
from services.mcp_server.gate.db import PERM_DECIDE, hash_key
from services.mcp_server.gate.identity import AuthenticationError, credential
from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.rbac import Identity
from services.mcp_server.metrics import ToolMetrics
from services.mcp_server.server import Register, build_server
from services.mcp_server.settings import McpSettings


class Forbidden(SuiteError):
    status = 403
    type = "permission_error"
    code = "forbidden"


def _refusal(exc: AuthenticationError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), "authentication_error", "invalid_api_key"), 401,
                        headers={"WWW-Authenticate": "Bearer"})


def session_owner(identity: Identity, key: str | None) -> AuthenticatedUser | None:
    """Who a streamable HTTP session belongs to: the user and the very key that opened it.

    The MCP SDK binds a session to the `user` in the ASGI scope and answers 404 to anyone else, for DELETE
    as for every other request. Keyless callers all look alike, so their sessions stay unbound.
    """
    if key is None:
        return None
    digest = hash_key(key)
    return AuthenticatedUser(AccessToken(token=digest, client_id=identity.user, scopes=[], subject=digest))


class RequireIdentity:
    """Refuses /mcp requests with a wrong key, or with none where anonymous callers are not allowed."""

    def __init__(self, app: ASGIApp, layer: SecurityLayer) -> None:
        self.app = app
        self.layer = layer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.layer.active:
            headers = Request(scope).headers
            try:
                identity = self.layer.identity.from_headers(headers)
                owner = session_owner(identity, credential(headers))
            except AuthenticationError as exc:
                await _refusal(exc)(scope, receive, send)
                return
            if owner is not None:
                scope["user"] = owner
        await self.app(scope, receive, send)


class KeyedMetrics:
    """/metrics stays keyless only while the server listens on loopback alone; elsewhere it needs a key."""

    def __init__(self, app: ASGIApp, layer: SecurityLayer) -> None:
        self.app = app
        self.layer = layer
        s = layer.settings
        self.open = is_loopback(s.host) and not s.trust_container_network

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.open and scope["type"] == "http" and scope["path"].rstrip("/") == "/metrics":
            try:
                _keyed_caller(self.layer, Request(scope))
            except AuthenticationError as exc:
                await _refusal(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _keyed_caller(layer: SecurityLayer, request: Request) -> Identity:
    """The caller behind a valid key; a missing key is refused even where guests are allowed."""
    if credential(request.headers) is None:
        raise AuthenticationError("authentication required: send 'Authorization: Bearer <API key>'")
    return layer.identity.from_headers(request.headers)


def _caller(layer: SecurityLayer, request: Request) -> Identity:
    try:
        return layer.identity.from_headers(request.headers)
    except AuthenticationError as exc:
        raise Unauthorized(str(exc)) from None


def _add_routes(app: FastAPI, layer: SecurityLayer) -> None:
    @app.get("/health")
    async def health() -> JSONResponse:
        s = layer.settings
        info = {"rbac": s.rbac_enabled, "approvals": s.approval_enabled, "audit": s.audit_enabled,
                "rate_limit": s.rate_limit_enabled}
        return health_response("mcp-server", await layer.health(), info=info)

    @app.get("/api/approvals/{request_id}/status")
    async def approval_status(request_id: str, request: Request) -> dict[str, Any]:
        caller = _caller(layer, request)
        found = await asyncio.to_thread(layer.approvals.get, request_id)
        if found is None:
            raise NotFound(f"no approval request {request_id!r}", code="approval_not_found")
        if found.user_name != caller.user and not layer.auth.has(caller.role, PERM_DECIDE):
            raise Forbidden(f"request {request_id} belongs to another user")
        return found.public()

    @app.get("/api/approvals")
    async def my_approvals(request: Request, everyone: bool = False) -> dict[str, Any]:
        caller = _caller(layer, request)
        if everyone and not layer.auth.has(caller.role, PERM_DECIDE):
            raise Forbidden("only approvers may list everyone's requests")
        found = await asyncio.to_thread(layer.approvals.find, None if everyone else caller.user)
        return {"user": caller.user, "requests": [req.public() for req in found]}


def create_app(settings: McpSettings | None = None, *, families: Iterable[str | Register] | None = None) -> FastAPI:
    """Build the HTTP server; `families` limits the tool families (tests pass their own)."""
    settings = settings or McpSettings()
    registry = CollectorRegistry()
    metrics = ToolMetrics.create(registry)
    mcp, layer = build_server(settings, families, observe=metrics.observe)
    # Host/Origin checks stop DNS-rebinding pages from reaching a loopback server through the browser.
    mcp_app = mcp.http_app(path="/mcp", host_origin_protection="auto")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The MCP app's lifespan runs the session manager, which enters the FastMCP lifespan (audit writer).
        try:
            async with mcp_app.lifespan(app):
                yield
        finally:
            layer.close()

    app = FastAPI(title="Local AI Suite MCP server", lifespan=lifespan)
    install_error_handlers(app)
    instrument(app, registry)
    # No shared ApiKeyMiddleware: every MCP and API caller authenticates with their own key.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(KeyedMetrics, layer=layer)
    app.state.security = layer
    app.state.mcp = mcp
    _add_routes(app, layer)
    app.mount("/", RequireIdentity(mcp_app, layer))
    return app
