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
    """Dependency name -> OpenAI base URL for every backend the readiness check probes (a model's first)."""
    targets = {d.name: d.api_base for d in router.deployments.values()}
    if settings.embedding_api_base:
        targets[EMBEDDING] = settings.embedding_api_base
    return targets


def pooled_checks(router: Router, states: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Per model: "ok" when any of its backends answers (else its first backend's reason), and per model with
    several backends, each backend's state."""
    checks: dict[str, str] = {}
    detail: dict[str, dict[str, str]] = {}
    for name, pool in router.pools.items():
        per_base = {d.api_base: states[d.api_base] for d in pool}
        checks[name] = "ok" if "ok" in per_base.values() else per_base[pool[0].api_base]
        if len(pool) > 1:
            detail[name] = per_base
    return checks, detail


async def queue_depth(client: httpx.AsyncClient, api_base: str) -> int:
    """Requests waiting at the backend, from its /health `queue_depth` (0 where it reports none or is down)."""
    try:
        response = await client.get(f"{api_base.removesuffix('/v1')}/health", timeout=READINESS_TIMEOUT)
        depth = response.json().get("queue_depth") if response.status_code == 200 else 0
    except (httpx.TransportError, ValueError, AttributeError):
        return 0
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0


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
