"""`create_app()` for the gateway: OpenAI routes that forward to the chat and code backends, and conversations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.common.app_factory import harden
from services.common.httpclient import make_client
from services.gateway.api import router as api_router
from services.gateway.conversations.api import router as conversations_router
from services.gateway.conversations.service import Conversations
from services.gateway.embeddings import EmbeddingForwarder
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Forwarder
from services.gateway.readiness import queue_depth
from services.gateway.response_cache import ResponseCache
from services.gateway.routing import CHAT, CODE, Cooldowns, Deployment, Router
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.status import StatusBoard


def deployments_from(settings: GatewaySettings) -> dict[str, Deployment]:
    """The two deployments, as the settings describe them."""
    return {
        CHAT: Deployment(CHAT, settings.chat_api_base.rstrip("/"), settings.chat_backend_model),
        CODE: Deployment(CODE, settings.code_api_base.rstrip("/"), settings.code_backend_model),
    }


def extra_deployments_from(settings: GatewaySettings) -> dict[str, list[Deployment]]:
    """The further backends of each model (CHAT_API_BASES, CODE_API_BASES)."""
    return {
        name: [Deployment(name, b.api_base, b.backend_model, b.api_key) for b in settings.extra_backends(which)]
        for name, which in ((CHAT, "chat"), (CODE, "code"))
    }


async def poll_queue_depths(client: httpx.AsyncClient, router: Router, seconds: float) -> None:
    """Keep each backend's reported queue depth fresh, for the least-busy choice."""
    while True:
        bases = sorted({d.api_base for d in router.backends()})
        depths = await asyncio.gather(*(queue_depth(client, base) for base in bases))
        for base, depth in zip(bases, depths, strict=True):
            router.load.queue_depth[base] = depth
        await asyncio.sleep(seconds)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    router = Router(deployments_from(settings), Cooldowns(settings.cooldown_seconds),
                    extra_deployments_from(settings))
    app.state.metrics.watch_backends(
        router.deployments, lambda name: router.cooldowns.remaining(router.deployments[name].api_base) > 0)
    client = make_client(settings.llm_request_timeout, settings.connect_timeout)
    forwarder = Forwarder(client, router, settings, app.state.metrics)
    conversations = Conversations(settings, client, forwarder, router, app.state.metrics)
    responses = ResponseCache(settings, app.state.metrics) if settings.response_cache else None
    status = StatusBoard(client, router)
    app.state.gateway = GatewayState(settings, client, forwarder, router, EmbeddingForwarder(client, settings),
                                     conversations, status, responses)
    conversations.start()
    poller = None
    if settings.backend_poll_seconds > 0 and any(len(pool) > 1 for pool in router.pools.values()):
        poller = asyncio.create_task(poll_queue_depths(client, router, settings.backend_poll_seconds))
    try:
        yield
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        await status.close()
        await conversations.close()
        await client.aclose()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway app; backends are reached only inside request handlers."""
    settings = settings or GatewaySettings()
    app = FastAPI(title="Local AI Suite gateway", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = GatewayMetrics(harden(app, settings))
    app.include_router(api_router)
    app.include_router(conversations_router)
    return app
