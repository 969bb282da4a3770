"""Qdrant, as a server (QDRANT_URL) or embedded in this process (QDRANT_PATH)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from services.rag.clients.outage import RetryPolicy, StoreClosed

log = logging.getLogger(__name__)

T = TypeVar("T")
PREFIX = "rag_"


@dataclass(frozen=True)
class Point:
    id: UUID
    vector: list[float]
    payload: dict[str, Any]


def qdrant_name(collection: str) -> str:
    return PREFIX + collection


def unit_length(vector: Sequence[float]) -> list[float]:
    """Scale to length 1, so a dot product is the cosine similarity."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return (array / norm).tolist() if norm > 0 else array.tolist()


class VectorStore:
    """One Qdrant collection per RAG collection; the embedded store is reopened after it was lost."""

    def __init__(self, policy: RetryPolicy, *, url: str = "", path: Path | None = None, api_key: str | None = None,
                 timeout: float = 30.0) -> None:
        if not url and path is None:
            raise ValueError("either a Qdrant URL or an embedded path is needed")
        self.policy = policy
        self.url = url
        self.path = path
        self.api_key = api_key
        self.timeout = timeout
        self._client: AsyncQdrantClient | None = None
        self._lock = asyncio.Lock()

    @property
    def mode(self) -> str:
        return "server" if self.url else "embedded"

    async def _get(self) -> AsyncQdrantClient:
        async with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> AsyncQdrantClient:
        if self.url:
            return AsyncQdrantClient(url=self.url, api_key=self.api_key, timeout=int(self.timeout))
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            return AsyncQdrantClient(path=str(self.path))
        except RuntimeError as exc:  # the folder is locked by another process
            raise StoreClosed(str(exc)) from exc

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _run(self, fn: Callable[[AsyncQdrantClient], Awaitable[T]]) -> T:
        async def attempt() -> T:
            client = await self._get()
            try:
                return await fn(client)
            except RuntimeError as exc:
                if self.mode == "embedded" and "closed" in str(exc).lower():
                    # forget the dead handle, so the next attempt opens the folder again
                    async with self._lock:
                        if self._client is client:
                            self._client = None
                raise

        return await self.policy.call("qdrant", attempt)

    async def ping(self) -> None:
        """List collections once, with no retries, for /health."""
        client = await self._get()
        await client.get_collections()

    async def collections(self) -> list[str]:
        """Names of this service's Qdrant collections, with retries."""

        async def query(client: AsyncQdrantClient) -> list[str]:
            found = (await client.get_collections()).collections
            return [c.name[len(PREFIX):] for c in found if c.name.startswith(PREFIX)]

        return await self._run(query)

    async def ensure_collection(self, collection: str, dim: int) -> None:
        async def create(client: AsyncQdrantClient) -> None:
            name = qdrant_name(collection)
            if await client.collection_exists(name):
                return
            # vectors are stored at unit length, so DOT ranks like COSINE without renormalising every
            # stored vector per query (embedded Qdrant scans them all)
            await client.create_collection(name, vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.DOT))

        await self._run(create)

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [qm.PointStruct(id=str(p.id), vector=unit_length(p.vector), payload=p.payload) for p in points]
        await self._run(lambda client: client.upsert(qdrant_name(collection), points=structs, wait=True))

    async def set_chunk_index(self, collection: str, moved: dict[UUID, int]) -> None:
        """Keep the payload's chunk index in step when unchanged chunks move within their document."""

        async def update(client: AsyncQdrantClient) -> None:
            for chunk_id, index in moved.items():
                await client.set_payload(qdrant_name(collection), payload={"chunk": index},
                                         points=[str(chunk_id)], wait=True)

        if moved:
            await self._run(update)

    async def delete_points(self, collection: str, ids: Sequence[UUID]) -> None:
        if not ids:
            return
        selector = qm.PointIdsList(points=[str(i) for i in ids])
        await self._run(lambda client: self._delete(client, collection, selector))

    async def delete_document(self, collection: str, document_id: str) -> None:
        """Delete by payload, so vectors left by an interrupted run go too."""
        selector = qm.FilterSelector(filter=qm.Filter(must=[
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=document_id))
        ]))
        await self._run(lambda client: self._delete(client, collection, selector))

    @staticmethod
    async def _delete(client: AsyncQdrantClient, collection: str, selector: qm.PointsSelector) -> None:
        name = qdrant_name(collection)
        if await client.collection_exists(name):
            await client.delete(name, points_selector=selector, wait=True)

    async def drop_collection(self, collection: str) -> None:
        await self._run(lambda client: client.delete_collection(qdrant_name(collection)))

    async def search(self, collection: str, vector: list[float], limit: int) -> list[tuple[UUID, float]]:
        vector = unit_length(vector)

        async def query(client: AsyncQdrantClient) -> list[tuple[UUID, float]]:
            try:
                result = await client.query_points(qdrant_name(collection), query=vector, limit=limit,
                                                   with_payload=False)
            except (UnexpectedResponse, ValueError) as exc:
                # nothing indexed yet: one call instead of asking first, to keep /search fast
                if getattr(exc, "status_code", None) == 404 or "not found" in str(exc).lower():
                    return []
                raise
            return [(UUID(str(point.id)), float(point.score)) for point in result.points]

        return await self._run(query)

    async def count(self, collection: str, document_id: str | None = None) -> int:
        async def query(client: AsyncQdrantClient) -> int:
            name = qdrant_name(collection)
            if not await client.collection_exists(name):
                return 0
            flt = None
            if document_id is not None:
                flt = qm.Filter(must=[qm.FieldCondition(key="document_id",
                                                        match=qm.MatchValue(value=document_id))])
            return (await client.count(name, count_filter=flt, exact=True)).count

        return await self._run(query)
