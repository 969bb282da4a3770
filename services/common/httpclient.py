"""The shared `httpx.AsyncClient` factory: pooled, bounded timeouts, no env proxies."""

from __future__ import annotations

import httpx


def make_client(timeout: float, connect_timeout: float = 3.0, max_connections: int = 64) -> httpx.AsyncClient:
    """A client for loopback services; `trust_env=False` keeps proxy settings off local traffic."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,
    )
