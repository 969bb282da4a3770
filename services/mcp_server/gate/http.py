"""The gate's HTTP side: who a request is (a Bearer key, or none on loopback), whose a session is, and who may
read /metrics."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from fastmcp.server.auth import AccessToken
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import error_body
from services.common.settings import is_loopback
from services.mcp_server.gate.db import hash_key
from services.mcp_server.gate.identity import AuthenticationError, credential
from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.rbac import Identity


def _refusal(exc: AuthenticationError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), "authentication_error", "invalid_api_key"), 401,
                        headers={"WWW-Authenticate": "Bearer"})


def session_owner(identity: Identity, key: str | None) -> AuthenticatedUser | None:
    """Who a streamable HTTP session belongs to: the user and the very key that opened it.

    The MCP SDK binds a session to the `user` in the ASGI scope and answers 404 to anyone else, for DELETE
    as for every other request. Keyless callers all look alike, so their sessions stay unbound. The token is
    FastMCP's own type (a subclass of the SDK's), which FastMCP then reads as it is instead of converting it on
    every access (several times per tool call).
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
                keyed_caller(self.layer, Request(scope))
            except AuthenticationError as exc:
                await _refusal(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def keyed_caller(layer: SecurityLayer, request: Request) -> Identity:
    """The caller behind a valid key; a missing key is refused even where guests are allowed."""
    if credential(request.headers) is None:
        raise AuthenticationError("authentication required: send 'Authorization: Bearer <API key>'")
    return layer.identity.from_headers(request.headers)
