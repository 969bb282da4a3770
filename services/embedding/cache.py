"""Vectors by content hash: a bounded LRU in memory, then a bounded SQLite file under DATA_DIR/cache.

The key is sha256 of the model name and the text (after truncation), so a repeated text costs a hash and a
lookup instead of a model run, and re-indexing an unchanged corpus, even after a restart, embeds nothing.
The disk tier is a cache, never a dependency: when its file is corrupt or its folder cannot be written, it
is switched off (logged once, shown in /health) and requests are served by the memory tier and the model.
SQLite in WAL mode commits each batch atomically, so a crash loses at most the last batch, never the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.lru import LruCache

log = logging.getLogger(__name__)

ROW_OVERHEAD = 64  # bytes a row costs besides its vector: key, token count, b-tree cell
EVICT_TO = 0.9  # after an eviction the file holds at most this share of its budget


@dataclass(frozen=True)
class Cached:
    """One text's vector (read-only float32) and the tokens the model read of it."""

    vector: np.ndarray
    tokens: int


def cache_key(model: str, text: str) -> bytes:
    return hashlib.sha256(model.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()


class DiskCache:
    """The SQLite tier; thread-safe (one connection behind a lock), and off for good after its first error."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.error: str | None = None
        self.rows = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def state(self) -> str:
        return f"error: {self.error}" if self.error else "ok"

    def open(self) -> None:
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._fail("cannot open", exc)

    def _connect(self) -> sqlite3.Connection:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        for path in (folder, self.path):
            # the cache is opened by name; a symlink planted there must not redirect the writes
            if os.path.lexists(path) and stat.S_ISLNK(os.lstat(path).st_mode):
                raise OSError(f"{path} is a symlink")
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL, "
                       "tokens INTEGER NOT NULL)")
            rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(vector)), 0) FROM vectors").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        self.rows, self.bytes = int(rows), int(size) + ROW_OVERHEAD * int(rows)
        return db

    def _fail(self, what: str, exc: BaseException) -> None:
        self.error = f"{what} {self.path}: {exc}"
        log.error("embedding disk cache off: %s; requests go on without it", self.error)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Cached]:
        found: dict[bytes, Cached] = {}
        with self._lock:
            if self._db is None or not keys:
                return found
            try:
                for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                    chunk = keys[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, vector, tokens FROM vectors WHERE key IN ({marks})"  # nosec B608
                    for key, blob, tokens in self._db.execute(query, chunk):
                        found[bytes(key)] = Cached(np.frombuffer(blob, dtype=np.float32), int(tokens))
            except sqlite3.Error as exc:
                self._fail("cannot read", exc)
        return found

    def put_many(self, items: Iterable[tuple[bytes, Cached]]) -> None:
        rows = [(key, item.vector.astype("<f4", copy=False).tobytes(), item.tokens) for key, item in items]
        with self._lock:
            if self._db is None or not rows:
                return
            try:
                with self._db:  # one transaction: all of the batch or none of it
                    self._db.execute("BEGIN")
                    before = self._db.total_changes
                    self._db.executemany("INSERT OR IGNORE INTO vectors (key, vector, tokens) VALUES (?, ?, ?)",
                                         rows)
                    added = self._db.total_changes - before
                self.rows += added
                self.bytes += added * (len(rows[0][1]) + ROW_OVERHEAD)
                if self.bytes > self.max_bytes:
                    self._evict(len(rows[0][1]) + ROW_OVERHEAD)
            except sqlite3.Error as exc:
                self._fail("cannot write", exc)

    def _evict(self, row_bytes: int) -> None:
        """Drop the oldest rows (insertion order) until the file is back under its budget."""
        assert self._db is not None
        keep = max(0, int(self.max_bytes * EVICT_TO) // row_bytes)
        drop = max(0, self.rows - keep)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY rowid LIMIT ?)",
                             (drop,))
        self.rows -= drop
        self.bytes = self.rows * row_bytes

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class EmbeddingCache:
    """Memory first, then disk; `lookup` and `store` run in worker threads, so both tiers take the lock."""

    def __init__(self, model: str, memory_entries: int, disk: DiskCache | None) -> None:
        self.model = model
        self.memory: LruCache[bytes, Cached] = LruCache(memory_entries)
        self.disk = disk
        self._lock = threading.Lock()

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        return [cache_key(self.model, text) for text in texts]

    def lookup(self, keys: Sequence[bytes]) -> tuple[dict[bytes, Cached], int]:
        """The cached entries among `keys`, and how many of them came from disk."""
        with self._lock:
            found = {key: item for key in dict.fromkeys(keys) if (item := self.memory.get(key)) is not None}
        wanted = [key for key in dict.fromkeys(keys) if key not in found]
        from_disk = self.disk.get_many(wanted) if self.disk is not None and wanted else {}
        if from_disk:
            with self._lock:
                for key, item in from_disk.items():
                    self.memory.put(key, item)
        return found | from_disk, len(from_disk)

    def store(self, items: dict[bytes, Cached]) -> None:
        with self._lock:
            for key, item in items.items():
                self.memory.put(key, item)
        if self.disk is not None:
            self.disk.put_many(items.items())

    def state(self) -> dict[str, object]:
        """What /health shows of the cache."""
        info: dict[str, object] = {"memory_entries": len(self.memory)}
        if self.disk is not None:
            info |= {"disk": self.disk.state, "disk_entries": self.disk.rows}
        return info

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
