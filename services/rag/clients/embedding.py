"""The embedding service over HTTP: `POST /embed {texts}` in batches, a few in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from services.common.errors import SuiteError
from services.rag.clients.outage import RetryPolicy


class EmbeddingDown(ConnectionError):
    """The embedding service answered 5xx (loading, overloaded, crashed)."""


class EmbeddingRejected(SuiteError):
    status = 502
    type = "upstream_error"
    code = "embedding_rejected"


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    model: str
    dim: int


class EmbeddingClient:
    """Sends batches of `batch_size` texts; `parallel` batches in flight keep the service busy."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, policy: RetryPolicy, batch_size: int = 64,
                 parallel: int = 2) -> None:
        self.url = base_url.rstrip("/")
        self.http = http
        self.policy = policy
        self.batch_size = batch_size
        self._slots = asyncio.Semaphore(max(1, parallel))

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        batches = [list(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        if not batches:
            return Embeddings([], "", 0)
        results = await asyncio.gather(*(self._batch(batch) for batch in batches))
        vectors = [vector for result in results for vector in result.vectors]
        return Embeddings(vectors, results[0].model, results[0].dim)

    async def _batch(self, texts: list[str]) -> Embeddings:
        async with self._slots:
            return await self.policy.call("embedding", lambda: self._post(texts))

    async def _post(self, texts: list[str]) -> Embeddings:
        response = await self.http.post(f"{self.url}/embed", json={"texts": texts})
        if response.status_code >= 500:
            raise EmbeddingDown(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise EmbeddingRejected(f"the embedding service refused the texts: HTTP {response.status_code} "
                                    f"{response.text[:300]}")
        body = response.json()
        vectors = body["embeddings"]
        if len(vectors) != len(texts):
            raise EmbeddingRejected(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return Embeddings(vectors, str(body.get("model", "")), int(body.get("dim") or len(vectors[0])))

    async def ping(self) -> None:
        response = await self.http.get(f"{self.url}/health")
        if response.status_code != 200:
            raise EmbeddingDown(f"HTTP {response.status_code}")
