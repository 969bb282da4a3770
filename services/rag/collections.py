"""The one writer of what is indexed: vectors, postgres rows and the BM25 index change here and only here.

Every write runs under one lock, in one order (vectors first, postgres, then BM25), and the
`rag_bm25_chunks` gauge follows every change, so a delete, an index run and a start-up cannot disagree.
The per-collection gauges (documents, chunks) are read back from postgres after each change.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import NotFound, SuiteError
from services.rag.bm25 import BM25Index
from services.rag.clients.postgres import ChunkRow, DocumentRow, PostgresStore
from services.rag.clients.qdrant import Point, VectorStore
from services.rag.metrics import RagMetrics

log = logging.getLogger(__name__)

UPLOADS = "uploads"  # DOCUMENTS_DIR/uploads/<collection>/<name>: copies of files uploaded to the service


@dataclass(frozen=True)
class DocumentChange:
    """What one indexing pass of a document writes: new chunks (with vectors), removed and moved ones."""

    document: DocumentRow
    rows: list[ChunkRow]
    points: list[Point]
    removed: list[uuid.UUID]
    moved: dict[uuid.UUID, int]


class Collections:
    """Owns every write to the stores and the in-memory BM25 indexes; readers use `bm25` and the stores."""

    def __init__(self, pg: PostgresStore, vectors: VectorStore, metrics: RagMetrics,
                 uploads: Path | None = None) -> None:
        """`uploads`: DOCUMENTS_DIR/uploads, where the service keeps the files uploaded to it."""
        self.pg, self.vectors, self.metrics = pg, vectors, metrics
        self.uploads = uploads
        self.bm25: dict[str, BM25Index] = defaultdict(BM25Index)
        # one writer at a time: indexing and deletes of the same document must not interleave
        self.write_lock = asyncio.Lock()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._published: set[str] = set()
        # collections whose vectors may include some no chunk owns (a write failed half way)
        self._dirty: set[str] = set()
        self._repair_task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        """Apply migrations and build BM25 from postgres once; callers retry until postgres answers."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            await self.pg.migrate()
            rows = await self.pg.all_terms()
            indexes: dict[str, BM25Index] = defaultdict(BM25Index)
            for collection, chunk_id, terms in rows:
                indexes[collection].add(str(chunk_id), terms)
            self.bm25 = indexes
            self._count()
            self._loaded = True
            log.info("BM25 loaded: %d chunks in %d collections", len(rows), len(indexes))
            # a run that died with the process may have left vectors that no chunk owns
            self._dirty.update(indexes)
            self._repair_later(first_wait=0)
        await self.publish_sizes()

    async def publish_sizes(self) -> None:
        """Set the documents and chunks gauges of every collection from postgres; drop vanished ones."""
        try:
            rows = await self.pg.list_collections()
        except SuiteError as exc:
            # the write itself succeeded; the gauges catch up with the next one
            log.warning("collection sizes not updated: %s", exc.message)
            return
        names = {row["name"] for row in rows}
        for name in self._published - names:
            self.metrics.collection_documents.remove(name)
            self.metrics.collection_chunks.remove(name)
        for row in rows:
            self.metrics.collection_documents.labels(row["name"]).set(row["documents"])
            self.metrics.collection_chunks.labels(row["name"]).set(row["chunks"])
        self._published = names

    async def repair(self, collections: Sequence[str] | None = None) -> int:
        """Delete the vectors of `collections` (default: those a failed write left dirty) that no chunk owns.

        Runs under the write lock; returns how many vectors went.
        """
        removed = 0
        async with self.write_lock:
            for collection in sorted(set(collections) if collections is not None else set(self._dirty)):
                orphans = await self.vectors.point_ids(collection) - await self.pg.chunk_ids(collection)
                if orphans:
                    await self.vectors.delete_points(collection, sorted(orphans))
                    log.warning("collection %s: removed %d vectors that no chunk owns", collection, len(orphans))
                    removed += len(orphans)
                self._dirty.discard(collection)
        return removed

    def _repair_later(self, first_wait: float = 1.0, most_wait: float = 15.0) -> None:
        """Repair the dirty collections in the background, retrying until postgres answers again."""
        if self._repair_task is not None and not self._repair_task.done():
            return

        async def run() -> None:
            wait = first_wait
            while self._dirty:
                await asyncio.sleep(wait)
                try:
                    await self.repair()
                except SuiteError as exc:
                    log.info("vector repair waits for the stores: %s", exc.message)
                    wait = min(wait * 2, most_wait)

        self._repair_task = asyncio.get_running_loop().create_task(run(), name="rag-vector-repair")

    def chunk_count(self) -> int:
        return sum(len(index) for index in self.bm25.values())

    async def ensure(self, collection: str, model: str | None, dim: int | None) -> None:
        """Record the collection (and its vector size, once known) in postgres and the vector store."""
        await self.pg.ensure_collection(collection, model, dim)
        if dim:
            await self.vectors.ensure_collection(collection, dim)

    async def save(self, collection: str, change: DocumentChange) -> None:
        """Write one document's new state; a failure before postgres commits leaves the old state listed.

        New vectors go first and gone ones last, around postgres's commit, so every chunk postgres lists
        always has its vector. Vectors a failed write leaves without a chunk are removed by `repair`.
        """
        self._dirty.add(collection)  # until this write has finished, its vectors may outnumber the chunks
        if change.points:
            await self.vectors.upsert(collection, change.points)
        await self.vectors.set_chunk_index(collection, change.moved)
        try:
            await self.pg.save_document(change.document, change.rows, change.removed, change.moved)
            await self.vectors.delete_points(collection, change.removed)
        except BaseException:
            self._repair_later()
            raise
        self._dirty.discard(collection)
        index = self.bm25[collection]
        self._drop_terms(index, change.removed)
        for row in change.rows:
            index.add(str(row.id), row.terms)
        self.metrics.chunks_written.inc(len(change.rows))
        self.metrics.chunks_removed.inc(len(change.removed))
        self._count()
        await self.publish_sizes()

    async def delete_document(self, collection: str, document_id: str) -> int:
        """Remove a document's vectors, rows and terms; returns how many chunks went."""
        await self.require(collection)
        # postgres first (the record), then the vectors; vectors a failure leaves behind are repaired
        deleted = await self.pg.delete_document(collection, document_id)
        if deleted is None:
            raise NotFound(f"document {document_id!r} is not in collection {collection!r}",
                           code="document_not_found")
        try:
            await self.vectors.delete_document(collection, document_id)
        except BaseException:
            self._dirty.add(collection)
            self._repair_later()
            raise
        path, removed = deleted
        self._forget_upload(path)
        if collection in self.bm25:
            self._drop_terms(self.bm25[collection], removed)
        self.metrics.chunks_removed.inc(len(removed))
        self._count()
        await self.publish_sizes()
        return len(removed)

    async def delete_collection(self, collection: str) -> None:
        await self.require(collection)
        await self.pg.delete_collection(collection)
        await self.vectors.drop_collection(collection)
        self.bm25.pop(collection, None)
        self._count()
        await self.publish_sizes()
        if self.uploads is not None:
            # the copies of what was uploaded to this collection go with it
            shutil.rmtree(self.uploads / collection, ignore_errors=True)

    def _forget_upload(self, path: str) -> None:
        """Delete the service's own copy of an uploaded document (`uploads/<collection>/<name>`)."""
        if self.uploads is None or not path.startswith(UPLOADS + "/"):
            return
        copy = (self.uploads.parent / path).resolve()
        if copy.is_relative_to(self.uploads.resolve()):
            copy.unlink(missing_ok=True)

    async def require(self, collection: str) -> None:
        """404 unless the collection exists."""
        if not await self.pg.collection_exists(collection):
            raise NotFound(f"collection {collection!r} does not exist", code="collection_not_found")

    @staticmethod
    def _drop_terms(index: BM25Index, chunk_ids: Sequence[uuid.UUID]) -> None:
        for chunk_id in chunk_ids:
            index.remove(str(chunk_id))

    def _count(self) -> None:
        self.metrics.bm25_chunks.set(self.chunk_count())
