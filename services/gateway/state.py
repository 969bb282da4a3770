"""The gateway's typed state: what the lifespan owns, reached by routes through `gateway_state`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request

from services.gateway.conversations.service import Conversations
from services.gateway.embeddings import EmbeddingForwarder
from services.gateway.proxy import Forwarder
from services.gateway.response_cache import ResponseCache
from services.gateway.routing import Router
from services.gateway.settings import GatewaySettings
from services.gateway.status import StatusBoard


@dataclass
class GatewayState:
    """The pooled backend client and what is built on it, and the conversations."""

    settings: GatewaySettings
    client: httpx.AsyncClient
    forwarder: Forwarder
    router: Router
    embeddings: EmbeddingForwarder
    conversations: Conversations
    status: StatusBoard
    responses: ResponseCache | None = None  # GATEWAY_RESPONSE_CACHE


def gateway_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
