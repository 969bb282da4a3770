"""A service app run in process, with its lifespan, behind an httpx client; and a readiness wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI


@asynccontextmanager
async def in_process(app: FastAPI, base_url: str, timeout: float = 60) -> AsyncIterator[httpx.AsyncClient]:
    """`app` with its lifespan started, and a client that talks to it without a socket."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=timeout) as client:
            yield client


async def wait_ready(client: httpx.AsyncClient, deadline_s: float = 60) -> httpx.Response:
    """Poll /health until it answers 200; fail with its last body after the deadline."""
    deadline = time.monotonic() + deadline_s
    while (response := await client.get("/health")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready: {response.text}"
        await asyncio.sleep(0.01)
    return response
