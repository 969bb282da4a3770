"""`create_app()` for the gateway: OpenAI routes that forward to the chat and code backends, and conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.app_factory import harden
from services.common.httpclient import make_client
from services.gateway.api import router as api_router
from services.gateway.conversations.api import router as conversations_router
from services.gateway.conversations.service import Conversations
from services.gateway.embeddings import EmbeddingForwarder
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Forwarder
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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    router = Router(deployments_from(settings), Cooldowns(settings.cooldown_seconds))
    client = make_client(settings.llm_request_timeout, settings.connect_timeout)
    forwarder = Forwarder(client, router, settings, app.state.metrics)
    conversations = Conversations(settings, client, forwarder, router, app.state.metrics)
    status = StatusBoard(client, router)
    app.state.gateway = GatewayState(settings, client, forwarder, router, EmbeddingForwarder(client, settings),
                                     conversations, status)
    conversations.start()
    try:
        yield
    finally:
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
