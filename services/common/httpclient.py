"""The shared `httpx.AsyncClient` factory: pooled, bounded timeouts, no env proxies, request ids passed on."""

from __future__ import annotations

import httpx

from services.common.request_id import propagate_request_id


def make_client(timeout: float, connect_timeout: float = 3.0, max_connections: int = 64,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client for loopback services; `trust_env=False` keeps proxy settings off local traffic.

    Every request it sends carries the `X-Request-ID` of the request being served, so one id follows a
    question from the gateway or rag into every service it reaches.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,
        event_hooks={"request": [propagate_request_id]},
        transport=transport,
    )
