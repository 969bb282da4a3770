"""Qdrant, as a server (QDRANT_URL) or embedded in this process (QDRANT_PATH)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from services.common.errors import SuiteError
from services.common.snapshots import copy_sqlite
from services.rag.clients.dense import DenseMatrix
from services.rag.clients.outage import RetryPolicy, StoreClosed

log = logging.getLogger(__name__)

T = TypeVar("T")
PREFIX = "rag_"


def write_ahead_log(client: AsyncQdrantClient) -> None:
    """Put each embedded collection's SQLite file in WAL mode.

    Embedded Qdrant commits every point on its own. With the default rollback journal a commit creates,
    writes, syncs and deletes a journal file (about 0.8 ms here); in WAL mode it appends to one file and
    syncs it (about 0.26 ms), just as durable with `synchronous=FULL`. The mode is kept in the file. A client
    without these internals (another qdrant-client) is left as it is, and a failure only costs the speed-up.
    """
    for collection in getattr(getattr(client, "_client", None), "collections", {}).values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if not isinstance(connection, sqlite3.Connection) or connection.in_transaction:
            continue
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            log.warning("embedded Qdrant keeps its rollback journal: %s", exc)


class SnapshotUnavailable(SuiteError):
    status = 409
    type = "invalid_request_error"
    code = "snapshot_unavailable"


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
                 timeout: float = 30.0, dense_copy: bool = True) -> None:
        """Server mode with `url`, embedded with `path`; embedded searches use an in-memory copy of the vectors
        unless `dense_copy` is off, and then go through Qdrant's own `query_points`, as server mode does."""
        if not url and path is None:
            raise ValueError("either a Qdrant URL or an embedded path is needed")
        self.policy = policy
        self.url = url
        self.path = path
        self.api_key = api_key
        self.timeout = timeout
        self._client: AsyncQdrantClient | None = None
        self._lock = asyncio.Lock()
        # Embedded mode only: this process is the folder's only writer (Qdrant locks it), so copies of the
        # vectors updated after each write stay exact. `_writes` counts writes, so that a copy read while one
        # ran is not kept.
        self._dense: dict[str, DenseMatrix] = {}
        self._writes = 0
        self._dense_copy = dense_copy and not url

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
            client = AsyncQdrantClient(path=str(self.path))
        except RuntimeError as exc:  # the folder is locked by another process
            raise StoreClosed(str(exc)) from exc
        write_ahead_log(client)
        return client

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            self._dense.clear()
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
                            self._dense.clear()
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
            write_ahead_log(client)

        await self._run(create)

    async def _write(self, collection: str, fn: Callable[[AsyncQdrantClient], Awaitable[object]],
                     apply: Callable[[DenseMatrix], None]) -> None:
        """Run a write, then `apply` it to the collection's in-memory copy, if there is one."""
        try:
            await self._run(fn)
        except BaseException:
            self._dense.pop(collection, None)  # the write may have gone through in part
            raise
        finally:
            self._writes += 1
        matrix = self._dense.get(collection)
        if matrix is not None:
            apply(matrix)

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        vectors = [unit_length(p.vector) for p in points]
        structs = [qm.PointStruct(id=str(p.id), vector=vector, payload=p.payload)
                   for p, vector in zip(points, vectors, strict=True)]
        await self._write(
            collection, lambda client: client.upsert(qdrant_name(collection), points=structs, wait=True),
            lambda matrix: matrix.upsert((p.id, vector, p.payload.get("document_id"))
                                         for p, vector in zip(points, vectors, strict=True)),
        )

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
        await self._write(collection, lambda client: self._delete(client, collection, selector),
                          lambda matrix: matrix.remove(ids))

    async def delete_document(self, collection: str, document_id: str) -> None:
        """Delete by payload, so vectors left by an interrupted run go too."""
        selector = qm.FilterSelector(filter=qm.Filter(must=[
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=document_id))
        ]))
        await self._write(collection, lambda client: self._delete(client, collection, selector),
                          lambda matrix: matrix.remove_document(document_id))

    @staticmethod
    async def _delete(client: AsyncQdrantClient, collection: str, selector: qm.PointsSelector) -> None:
        name = qdrant_name(collection)
        if await client.collection_exists(name):
            await client.delete(name, points_selector=selector, wait=True)

    async def drop_collection(self, collection: str) -> None:
        self._dense.pop(collection, None)
        await self._write(collection, lambda client: client.delete_collection(qdrant_name(collection)),
                          lambda matrix: None)

    async def search(self, collection: str, vector: list[float], limit: int) -> list[tuple[UUID, float]]:
        """Best `limit` (id, cosine similarity) pairs; embedded mode searches its in-memory copy."""
        vector = unit_length(vector)
        if self._dense_copy:
            matrix = self._dense.get(collection)
            if matrix is None:
                matrix = await self._load_dense(collection)
            if matrix is not None:
                return matrix.search(vector, limit)

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

    async def snapshot(self, dest: Path) -> dict[str, int]:
        """Copy the embedded store to `dest` (points per collection); the caller holds the write lock."""
        if self.path is None or self.url:
            raise SnapshotUnavailable("the vectors are in a Qdrant server, which keeps its own snapshots "
                                      "(POST /collections/{name}/snapshots); back them up there")
        counts = {name: await self.count(name) for name in await self.collections()}
        await asyncio.to_thread(_copy_store, self.path, dest)
        return counts

    def in_memory(self) -> set[str]:
        """Collections whose vectors are held in memory (embedded mode)."""
        return set(self._dense)

    async def warm(self) -> None:
        """Copy every collection's vectors into memory now, instead of at its first search (embedded mode)."""
        if self._dense_copy:
            for collection in await self.collections():
                if collection not in self._dense:
                    await self._load_dense(collection)

    async def _load_dense(self, collection: str) -> DenseMatrix | None:
        """The collection's vectors in memory; None when it does not exist or its vectors are not plain ones."""
        writes = self._writes
        matrix = await self._run(lambda client: _read_dense(client, qdrant_name(collection)))
        if matrix is not None and writes == self._writes:
            self._dense[collection] = matrix
        return matrix

    async def point_ids(self, collection: str) -> set[UUID]:
        """Every point id of `collection` (none when it does not exist)."""

        async def query(client: AsyncQdrantClient) -> set[UUID]:
            name = qdrant_name(collection)
            if not await client.collection_exists(name):
                return set()
            ids: set[UUID] = set()
            offset: qm.ExtendedPointId | None = None
            while True:
                points, offset = await client.scroll(name, limit=1024, offset=offset, with_vectors=False,
                                                     with_payload=False)
                ids.update(UUID(str(point.id)) for point in points)
                if offset is None:
                    return ids

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


async def _read_dense(client: AsyncQdrantClient, name: str) -> DenseMatrix | None:
    if not await client.collection_exists(name):
        return None
    params = (await client.get_collection(name)).config.params.vectors
    # stored DOT vectors are unit length (see `upsert`) and Qdrant normalises COSINE ones itself
    if not isinstance(params, qm.VectorParams) or params.distance not in (qm.Distance.DOT, qm.Distance.COSINE):
        return None
    count = (await client.count(name, exact=True)).count
    matrix = DenseMatrix(params.size, capacity=max(1024, count + count // 4))
    offset: qm.ExtendedPointId | None = None
    while True:
        # one page holds them all: every page sorts the whole collection again
        points, offset = await client.scroll(name, limit=count + 1, offset=offset, with_vectors=True,
                                             with_payload=["document_id"])
        rows = []
        for point in points:
            vector = np.asarray(point.vector, dtype=np.float32) if isinstance(point.vector, list) else None
            if vector is None or vector.shape != (params.size,):  # named or multi-vectors: not ours
                return None
            rows.append((UUID(str(point.id)), vector, (point.payload or {}).get("document_id")))
        matrix.upsert(rows)
        if offset is None:
            return matrix


def _copy_store(source: Path, dest: Path) -> None:
    """meta.json and each collection's SQLite file, copied through SQLite's online backup."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "meta.json", dest / "meta.json")
    for storage in sorted((source / "collection").glob("*/storage.sqlite")):
        copy_sqlite(storage, dest / "collection" / storage.parent.name / storage.name)
