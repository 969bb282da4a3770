"""What the gateway serves and how its readiness check probes the backends behind it."""

from __future__ import annotations

import httpx

from services.gateway.proxy import describe_transport_error
from services.gateway.routing import PUBLIC_NAMES, Router
from services.gateway.settings import GatewaySettings

READINESS_TIMEOUT = 2.0
EMBEDDING = "embedding"  # the readiness dependency name of the embedding service


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
