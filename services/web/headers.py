"""The headers every answer of the app carries, and the ones a proxy must not pass along."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})


def hop_by_hop(headers: list[tuple[str, str]]) -> set[str]:
    """The hop-by-hop names, with those a Connection header lists."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


class SecurityHeaders:
    """Sets the CSP, nosniff and referrer headers on every response, and drops any CORS header.

    The app and its APIs share one origin, so no cross-origin grant is ever needed; an upstream's
    `Access-Control-*` or CSP header is replaced rather than passed through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.added = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k.lower().decode("latin-1") not in SECURITY_HEADERS
                        and not k.lower().startswith(b"access-control-")]
                message = {**message, "headers": kept + self.added}
            await send(message)

        await self.app(scope, receive, send_with_headers)
