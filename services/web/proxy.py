"""Same-origin proxying: a request's bytes go upstream as they arrive, and the answer's bytes come back the same way."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import anyio
import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse

from services.common.errors import NotFound, ServiceUnavailable, UpstreamTimeout
from services.web.headers import hop_by_hop

log = logging.getLogger(__name__)

# Not passed upstream: the client's view of this hop (host, length is re-sent as received), and cookies,
# which the app never uses and an upstream must not see.
DROPPED_REQUEST = frozenset({"host", "cookie", "accept-encoding"})
DROPPED_RESPONSE = frozenset({"set-cookie", "server", "date"})
BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
RETRY_AFTER = 2


def quoted_path(path: str) -> str:
    """A path the router has already decoded, encoded again for the upstream URL.

    Otherwise an encoded `?` would start a query the client never sent, a control character would make an
    invalid URL, and an encoded `..` would climb out of the prefix this proxy forwards to.
    """
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        raise NotFound(f"no such path: {path!r}")
    return "/".join(quote(segment, safe="") for segment in segments)


def quoted_segment(value: str) -> str:
    """One path segment (an id) for the upstream URL; a value holding a `/` is not one."""
    if "/" in value:
        raise NotFound(f"no such id: {value!r}")
    return quoted_path(value)


def request_headers(request: Request) -> dict[str, str]:
    """The client's end-to-end headers (Authorization, Origin, Content-Type and Content-Length included)."""
    pairs = [(k.lower(), v) for k, v in request.headers.items()]
    dropped = hop_by_hop(pairs) | DROPPED_REQUEST
    headers = {k: v for k, v in pairs if k not in dropped}
    # bytes pass through as the upstream sends them; identity keeps Content-Length and the body consistent
    headers["accept-encoding"] = "identity"
    return headers


def response_headers(upstream: httpx.Response) -> list[tuple[str, str]]:
    pairs = [(k.lower(), v) for k, v in upstream.headers.multi_items()]
    dropped = hop_by_hop(pairs) | DROPPED_RESPONSE
    return [(k, v) for k, v in pairs if k not in dropped]


def has_body(request: Request) -> bool:
    if request.method not in BODILESS:
        return True
    return "content-length" in request.headers or "transfer-encoding" in request.headers


async def forward(client: httpx.AsyncClient, request: Request, url: str, name: str,
                  headers: dict[str, str] | None = None, query: str | None = None) -> StreamingResponse:
    """Send `request` to `url` (with `query`, else the request's query string) and stream the answer back unchanged.

    A refused or timed-out connection is a 503 (504 for a timeout) with Retry-After that names `name`.
    """
    query = request.url.query if query is None else query
    if query:
        url = f"{url}?{query}"
    sent = {**request_headers(request), **(headers or {})}
    content = request.stream() if has_body(request) else None
    upstream_request = client.build_request(request.method, url, headers=sent, content=content)
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{name} did not answer in time ({type(exc).__name__})",
                              retry_after=RETRY_AFTER) from exc
    except httpx.TransportError as exc:
        raise ServiceUnavailable(f"{name} is not reachable ({describe(exc)}); is it running?",
                                 retry_after=RETRY_AFTER, code=unavailable_code(name)) from exc
    response = StreamingResponse(relay(upstream), status_code=upstream.status_code)
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers(upstream)]
    return response


def unavailable_code(name: str) -> str:
    """"the RAG service" -> rag_service_unavailable"""
    return name.removeprefix("the ").lower().replace(" ", "_") + "_unavailable"


def describe(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return type(exc).__name__


def stream_error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "server_error", "code": "upstream_stream_broken"}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"


async def relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream's raw bytes as they come; a broken event stream ends with an in-band error event."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:
        log.warning("upstream %s broke mid-answer: %s", upstream.request.url.path, describe(exc))
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            yield stream_error_event(f"the upstream stream broke: {describe(exc)}")
        else:
            raise
    finally:
        # shielded: on a client disconnect this runs in a cancelled scope, and closing the upstream
        # connection is what tells the model to stop generating
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
