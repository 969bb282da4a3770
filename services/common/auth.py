"""Bearer-key check, active only when an API key is configured."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = ("/health", "/metrics")


class ApiKeyMiddleware:
    """Requires `Authorization: Bearer <key>` on every path but health and metrics."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error":{"message":"missing or invalid API key","type":"authentication_error",' \
               b'"code":"invalid_api_key","param":null}}'
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
