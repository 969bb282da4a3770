"""The gateway's routes: the OpenAI endpoints (with and without /v1), liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.common.health import health_response
from services.gateway.metrics import UNKNOWN_MODEL, counted, gateway_metrics
from services.gateway.openapi import CHAT, COMPLETION, EMBEDDINGS, body
from services.gateway.readiness import (
    models_payload,
    pooled_checks,
    probe_backend,
    readiness_targets,
    served_model_names,
)
from services.gateway.response_cache import deterministic
from services.gateway.routing import PUBLIC_NAMES, resolve
from services.gateway.state import gateway_state
from services.gateway.validation import Endpoint, parse_body

router = APIRouter()


async def _complete(request: Request, endpoint: Endpoint, path: str) -> Response:
    state = gateway_state(request)
    with counted(request, endpoint) as labels:
        raw = await request.body()
        body = parse_body(raw, endpoint, state.settings.max_tokens_limit)
        labels.model = body["model"] if body["model"] in PUBLIC_NAMES else UNKNOWN_MODEL
        route = resolve(body["model"], body)
        if route.auto is not None:
            gateway_metrics(request).auto_choices.labels(route.auto.kind, route.auto.signal).inc()
        if endpoint == "chat" and body.get("conversation") is not None:
            labels.route = "conversation"
            return labels.answered(await state.conversations.chat.complete(path, body, route))
        if state.responses is not None and deterministic(body):
            return labels.answered(await state.responses.serve(state.forwarder, path, raw, body, route))
        # The fast path: no store, no re-serialising; the client's bytes go to the backend as they came.
        return labels.answered(await state.forwarder.forward(path, raw, body, route))


async def chat_completions(request: Request) -> Response:
    return await _complete(request, "chat", "/chat/completions")


async def completions(request: Request) -> Response:
    return await _complete(request, "completion", "/completions")


async def embeddings(request: Request) -> Response:
    forwarder = gateway_state(request).embeddings
    with counted(request, "embeddings") as labels:
        raw = await request.body()
        labels.model = forwarder.check(raw)
        return labels.answered(await forwarder.send(raw))


async def list_models(request: Request) -> JSONResponse:
    settings = gateway_state(request).settings
    if settings.debug_route_delay_ms:  # an injected slowdown, for proving regression detection (off by default)
        await asyncio.sleep(settings.debug_route_delay_ms / 1000)
    return JSONResponse(models_payload(settings))


# Both spellings, because some clients take the base URL without /v1.
for prefix in ("/v1", ""):
    router.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"], openapi_extra=body(CHAT))
    router.add_api_route(f"{prefix}/completions", completions, methods=["POST"], openapi_extra=body(COMPLETION))
    router.add_api_route(f"{prefix}/embeddings", embeddings, methods=["POST"], openapi_extra=body(EMBEDDINGS))
    router.add_api_route(f"{prefix}/models", list_models, methods=["GET"])


@router.get("/v1/status")
async def backend_status(request: Request) -> dict[str, Any]:
    """Each model backend: healthy, loading, cooling_down or down, with its queue and last decode speed."""
    return await gateway_state(request).status.view()


@router.get("/health")
@router.get("/health/liveliness", include_in_schema=False)
async def health(request: Request) -> JSONResponse:
    """Liveness: the process serves requests; no backend is called."""
    info = {"engine": "fast", "models": served_model_names(gateway_state(request).settings)}
    return health_response("gateway", {}, info=info)


@router.get("/health/readiness")
async def readiness(request: Request) -> JSONResponse:
    """Readiness: every backend, the embedding service included when configured, answers its health check."""
    gateway = gateway_state(request)
    targets = readiness_targets(gateway.settings, gateway.router)
    bases = sorted({*targets.values(), *(d.api_base for d in gateway.router.backends())})
    states = dict(zip(bases, await asyncio.gather(*(probe_backend(gateway.client, b) for b in bases)), strict=True))
    checks = {name: states[base] for name, base in targets.items()}
    pooled, backends = pooled_checks(gateway.router, states)
    checks.update(pooled)
    checks["conversations"] = gateway.conversations.health()
    cooling = gateway.router.cooldowns.cooling()
    info: dict[str, object] = {"cooldown_seconds_left": cooling,
                               "conversation_search": gateway.conversations.search_engines()}
    if backends:
        info["backends"] = backends
    return health_response("gateway", checks, info=info)
