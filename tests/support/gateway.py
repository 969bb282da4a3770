"""The gateway app for tests: in process behind an httpx client, or on a port, in front of given backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.fake_openai import ThreadedServer


def gateway_settings(chat_base: str, code_base: str, data_dir: Path, **env: Any) -> GatewaySettings:
    values: dict[str, Any] = {"CHAT_API_BASE": chat_base, "CODE_API_BASE": code_base, "DATA_DIR": data_dir,
                              "LLM_REQUEST_TIMEOUT": 10, "GATEWAY_MAX_RETRIES": 0, "GATEWAY_COOLDOWN_SECONDS": 1}
    return GatewaySettings(_env_file=None, **{**values, **env})


@asynccontextmanager
async def gateway_client(settings: GatewaySettings, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, and a client that talks to it without a socket."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30,
                                     headers=headers) as client:
            yield client


@contextmanager
def gateway_on_port(settings: GatewaySettings) -> Iterator[str]:
    """The app served by uvicorn on a free port (for clients that need a socket); yields its base URL."""
    server = ThreadedServer(lambda: create_app(settings), lifespan="on").start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
