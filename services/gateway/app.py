"""The gateway app: OpenAI routes that forward to the chat and code backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.common.app_factory import harden
from services.common.health import health_response
from services.common.httpclient import make_client
from services.gateway.embeddings import EmbeddingForwarder
from services.gateway.proxy import Forwarder, GatewayMetrics, describe_transport_error
from services.gateway.routing import CHAT, CODE, PUBLIC_NAMES, Cooldowns, Deployment, Router, resolve
from services.gateway.settings import GatewaySettings
from services.gateway.validation import Endpoint, parse_body

READINESS_TIMEOUT = 2.0
EMBEDDING = "embedding"  # the readiness dependency name of the embedding service


@dataclass
class GatewayState:
    """What the lifespan owns: the pooled backend client and the forwarder built on it."""

    settings: GatewaySettings
    client: httpx.AsyncClient
    forwarder: Forwarder
    router: Router
    embeddings: EmbeddingForwarder


def deployments_from(settings: GatewaySettings) -> dict[str, Deployment]:
    """The two deployments, as the settings describe them."""
    return {
        CHAT: Deployment(CHAT, settings.chat_api_base.rstrip("/"), settings.chat_backend_model),
        CODE: Deployment(CODE, settings.code_api_base.rstrip("/"), settings.code_backend_model),
    }


def served_model_names(settings: GatewaySettings) -> list[str]:
    """Every name the gateway answers to: chat and code names, then the embedding names when configured."""
    return [*PUBLIC_NAMES, *settings.embedding_model_names()]


def models_payload(settings: GatewaySettings) -> dict:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "local-ai-suite"}
                 for name in served_model_names(settings)],
    }


def readiness_targets(settings: GatewaySettings, router: Router) -> dict[str, str]:
    """Dependency name -> OpenAI base URL for every backend the readiness check probes."""
    targets = {d.name: d.api_base for d in router.deployments.values()}
    if settings.embedding_api_base:
        targets[EMBEDDING] = settings.embedding_api_base
    return targets


async def probe_backend(client: httpx.AsyncClient, api_base: str) -> str:
    """"ok" when the backend's /health (or, lacking one, /models) answers 200; otherwise why not."""
    root = api_base.removesuffix("/v1")
    url = f"{root}/health"
    try:
        response = await client.get(url, timeout=READINESS_TIMEOUT)
        if response.status_code == 404:
            url = f"{api_base}/models"
            response = await client.get(url, timeout=READINESS_TIMEOUT)
    except httpx.TransportError as exc:
        return f"unavailable: {describe_transport_error(exc)} ({url})"
    if response.status_code == 200:
        return "ok"
    return f"unavailable: HTTP {response.status_code} ({url})"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway app; backends are reached only inside request handlers."""
    settings = settings or GatewaySettings()
    router = Router(deployments_from(settings), Cooldowns(settings.cooldown_seconds))
    metrics: GatewayMetrics | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert metrics is not None
        client = make_client(settings.llm_request_timeout, settings.connect_timeout)
        app.state.gateway = GatewayState(settings, client, Forwarder(client, router, settings, metrics), router,
                                         EmbeddingForwarder(client, settings))
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="Local AI Suite gateway", lifespan=lifespan)
    metrics = GatewayMetrics(harden(app, settings))

    def state(request: Request) -> GatewayState:
        return request.app.state.gateway

    async def complete(request: Request, endpoint: Endpoint, path: str) -> Response:
        raw = await request.body()
        body = parse_body(raw, endpoint, settings.max_tokens_limit)
        route = resolve(body["model"], body)
        return await state(request).forwarder.forward(path, raw, body, route)

    async def chat_completions(request: Request) -> Response:
        return await complete(request, "chat", "/chat/completions")

    async def completions(request: Request) -> Response:
        return await complete(request, "completion", "/completions")

    async def embeddings(request: Request) -> Response:
        return await state(request).embeddings.forward(await request.body())

    async def list_models() -> JSONResponse:
        return JSONResponse(models_payload(settings))

    # Both spellings, because some clients take the base URL without /v1.
    for prefix in ("/v1", ""):
        app.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"])
        app.add_api_route(f"{prefix}/completions", completions, methods=["POST"])
        app.add_api_route(f"{prefix}/embeddings", embeddings, methods=["POST"])
        app.add_api_route(f"{prefix}/models", list_models, methods=["GET"])

    @app.get("/health")
    @app.get("/health/liveliness", include_in_schema=False)
    async def health() -> JSONResponse:
        """Liveness: the process serves requests; no backend is called."""
        info = {"engine": "fast", "models": served_model_names(settings)}
        return health_response("gateway", {}, info=info)

    @app.get("/health/readiness")
    async def readiness(request: Request) -> JSONResponse:
        """Readiness: every backend, the embedding service included when configured, answers its health check."""
        gateway = state(request)
        targets = readiness_targets(settings, gateway.router)
        bases = sorted(set(targets.values()))
        states = dict(zip(bases, await asyncio.gather(*(probe_backend(gateway.client, b) for b in bases)),
                          strict=True))
        checks = {name: states[base] for name, base in targets.items()}
        cooling = gateway.router.cooldowns.cooling()
        return health_response("gateway", checks, info={"cooldown_seconds_left": cooling})

    return app
