"""`/v1/embeddings`: checked for a known model name, then passed through to the embedding service as raw bytes."""

from __future__ import annotations

import httpx
from fastapi.responses import Response

from services.common.errors import ModelNotFound, ServiceUnavailable, UpstreamTimeout
from services.gateway.proxy import PASSED_HEADERS, describe_transport_error
from services.gateway.settings import GatewaySettings
from services.gateway.validation import parse_model_request

RETRY_AFTER = 2


def check_embedding_body(raw: bytes, names: list[str]) -> str:
    """The requested model; refuses a body without a JSON object, or a model the embedding service does not serve."""
    model: str = parse_model_request(raw)["model"]
    if model not in names:
        raise ModelNotFound(f"model {model!r} is not an embedding model; valid models: {', '.join(names)}",
                            param="model")
    return model


class EmbeddingForwarder:
    """One attempt per request: embeddings are cheap to retry on the client's side, and there is no fallback."""

    def __init__(self, client: httpx.AsyncClient, settings: GatewaySettings) -> None:
        self.client = client
        self.url = f"{settings.embedding_api_base}/embeddings" if settings.embedding_api_base else None
        self.timeout = httpx.Timeout(settings.embedding_timeout, connect=settings.connect_timeout)
        self.names = settings.embedding_model_names()
        self.headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if settings.upstream_key:
            self.headers["authorization"] = f"Bearer {settings.upstream_key}"

    def check(self, raw: bytes) -> str:
        """The model a request names, once it is one the embedding service serves."""
        if self.url is None:
            raise ModelNotFound("this gateway has no embedding service: set EMBEDDING_API_BASE (phase 2 does)",
                                param="model")
        return check_embedding_body(raw, self.names)

    async def forward(self, raw: bytes) -> Response:
        self.check(raw)
        return await self.send(raw)

    async def send(self, raw: bytes) -> Response:
        """Pass a checked request on to the embedding service."""
        assert self.url is not None
        try:
            upstream = await self.client.post(self.url, content=raw, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"the embedding service at {self.url} did not answer within EMBEDDING_TIMEOUT="
                f"{self.timeout.read:g}s", retry_after=RETRY_AFTER,
            ) from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"the embedding service at {self.url} is not reachable: {describe_transport_error(exc)}",
                retry_after=RETRY_AFTER, code="embedding_unavailable",
            ) from exc
        headers = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
        if upstream.status_code == 503 and "retry-after" not in headers:
            headers["retry-after"] = str(RETRY_AFTER)
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)
