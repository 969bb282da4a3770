"""Files to stored chunks: extract, chunk, embed only what changed, write Qdrant and postgres idempotently."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import BadRequest
from services.rag.clients.postgres import ChunkRow, DocumentRow
from services.rag.clients.qdrant import Point
from services.rag.collections import UPLOADS, DocumentChange
from services.rag.extract import UnreadableFile, extract_bytes
from services.rag.paths import OUTSIDE_ROOT, relative_name, resolve_inside, walk_files
from services.rag.state import RagState

log = logging.getLogger(__name__)

# Fixed namespace: ids must come out the same in every process and after every restart.
ID_NAMESPACE = uuid.UUID("6f0b1d52-8a7e-4c55-9a51-3f2d3a1c0e77")
FILES_IN_FLIGHT = 3


def document_id(collection: str, path: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{collection}\x00{path}"))


def chunk_ids(doc_id: str, content_hashes: list[str]) -> list[uuid.UUID]:
    """Ids keyed by content: the same text in the same document keeps its id wherever it moves."""
    seen: Counter[str] = Counter()
    ids = []
    for content_hash in content_hashes:
        ids.append(uuid.uuid5(ID_NAMESPACE, f"{doc_id}\x00{content_hash}\x00{seen[content_hash]}"))
        seen[content_hash] += 1
    return ids


@dataclass
class IndexReport:
    collection: str
    documents: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "documents": self.documents, "skipped": self.skipped,
                "chunks_added": self.chunks_added, "chunks_removed": self.chunks_removed,
                "chunks_unchanged": self.chunks_unchanged, "seconds": round(self.seconds, 3)}


class Indexer:
    """One /index request: works out each document's change; `Collections` writes it (caller holds its lock)."""

    def __init__(self, state: RagState, collection: str) -> None:
        self.state = state
        self.collection = collection
        self.root = state.settings.documents_root()
        self.report = IndexReport(collection)
        self._collection_ready: asyncio.Lock = asyncio.Lock()
        self._dim: int | None = None

    def plan(self, given: list[str]) -> list[tuple[Path, str | None]]:
        """Resolve every named path first, so one bad path refuses the whole request before any write."""
        starts = [resolve_inside(self.root, path) for path in given]
        files: dict[Path, str | None] = {}
        for start in starts:
            for path, reason in walk_files(self.root, start):
                files.setdefault(path, reason)
        return list(files.items())

    async def run(self, files: list[tuple[Path, str | None]]) -> IndexReport:
        started = time.perf_counter()
        slots = asyncio.Semaphore(FILES_IN_FLIGHT)

        async def one(path: Path, reason: str | None) -> None:
            if reason is not None:
                self._skip(path, reason, "outside_documents" if reason == OUTSIDE_ROOT else "not_a_file")
                return
            async with slots:
                await self.index_file(path)

        # gather, not TaskGroup: the first outage is raised as it is (a 503), not wrapped in a group
        await asyncio.gather(*(one(path, reason) for path, reason in files))
        return self._finish(started, bool(files))

    async def run_uploads(self, uploads: list[tuple[str, bytes]]) -> IndexReport:
        """Index uploaded files, then keep each one that was indexed under DOCUMENTS_DIR/uploads."""
        started = time.perf_counter()
        folder = self.root / UPLOADS / self.collection
        for filename, data in uploads:
            name = f"{UPLOADS}/{self.collection}/{filename}"
            if not data:
                self.report.skipped.append({"path": name, "reason": "empty file (0 bytes)"})
                self.state.metrics.indexing_failures.labels("empty_file").inc()
                continue
            done = len(self.report.documents)
            await self.index_bytes(name, data)
            if len(self.report.documents) > done:
                await asyncio.to_thread(_write_atomically, folder / filename, data)
        return self._finish(started, bool(uploads))

    def _finish(self, started: float, had_files: bool) -> IndexReport:
        self.report.seconds = time.perf_counter() - started
        self.report.documents.sort(key=lambda d: d["path"])
        if had_files and not self.report.documents:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in self.report.skipped[:10])
            raise BadRequest(f"no file could be indexed: {reasons}", code="no_readable_files")
        return self.report

    def _skip(self, path: Path, reason: str, code: str) -> None:
        self.report.skipped.append({"path": relative_name(self.root, path), "reason": reason})
        self.state.metrics.indexing_failures.labels(code).inc()

    async def index_file(self, path: Path) -> None:
        name = relative_name(self.root, path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            self._skip(path, f"cannot read: {exc.strerror or exc}", "cannot_read")
            return
        await self.index_bytes(name, data)

    async def index_bytes(self, name: str, data: bytes) -> None:
        state = self.state
        file_hash = hashlib.sha256(data).hexdigest()
        doc_id = document_id(self.collection, name)
        existing = await state.pg.find_document(self.collection, name)
        if existing is not None and existing.file_hash == file_hash:
            self.report.chunks_unchanged += existing.chunk_count
            self.report.documents.append(_entry(name, doc_id, "unchanged", existing.chunk_count, 0, 0))
            return
        analyzer, chunker = state.text_tools()
        try:
            text = await asyncio.to_thread(extract_bytes, os.path.basename(name), data)
        except UnreadableFile as exc:
            self.report.skipped.append({"path": name, "reason": str(exc)})
            state.metrics.indexing_failures.labels(exc.code).inc()
            return
        chunks = await asyncio.to_thread(chunker.chunk, text, analyzer)
        if not chunks:
            self.report.skipped.append({"path": name, "reason": "no text to index"})
            state.metrics.indexing_failures.labels("no_text").inc()
            return
        ids = chunk_ids(doc_id, [chunk.content_hash for chunk in chunks])
        old = await state.pg.chunk_keys(doc_id)
        fresh = [(chunk_id, chunk) for chunk_id, chunk in zip(ids, chunks, strict=True) if chunk_id not in old]
        kept = set(ids)
        removed = [chunk_id for chunk_id in old if chunk_id not in kept]
        moved = {chunk_id: chunk.index for chunk_id, chunk in zip(ids, chunks, strict=True)
                 if chunk_id in old and old[chunk_id] != chunk.index}
        terms = await asyncio.to_thread(analyzer.bm25_terms_batch, [chunk.text for _, chunk in fresh])
        rows = [ChunkRow(chunk_id, doc_id, chunk.index, chunk.text, chunk.token_count, chunk.content_hash, t)
                for (chunk_id, chunk), t in zip(fresh, terms, strict=True)]
        points: list[Point] = []
        if rows:
            embeddings = await state.embedder.embed([row.text for row in rows])
            await self._ensure_collection(embeddings.model, embeddings.dim)
            points = [
                Point(row.id, vector, {"collection": self.collection, "document_id": doc_id, "path": name,
                                       "chunk": row.chunk_index, "content_hash": row.content_hash})
                for row, vector in zip(rows, embeddings.vectors, strict=True)
            ]
        else:
            await self._ensure_collection(None, None)
        document = DocumentRow(doc_id, self.collection, name, file_hash, len(data), len(chunks))
        await state.collections.save(self.collection, DocumentChange(document, rows, points, removed, moved))
        self.report.chunks_added += len(rows)
        self.report.chunks_removed += len(removed)
        self.report.chunks_unchanged += len(chunks) - len(rows)
        status = "added" if existing is None else "updated"
        self.report.documents.append(_entry(name, doc_id, status, len(chunks), len(rows), len(removed)))

    async def _ensure_collection(self, model: str | None, dim: int | None) -> None:
        async with self._collection_ready:
            if dim is not None and self._dim == dim:
                return
            await self.state.collections.ensure(self.collection, model, dim)
            if dim:
                self._dim = dim


def _entry(path: str, doc_id: str, status: str, chunks: int, added: int, removed: int) -> dict[str, Any]:
    return {"path": path, "document_id": doc_id, "status": status, "chunks": chunks,
            "chunks_added": added, "chunks_removed": removed}


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
