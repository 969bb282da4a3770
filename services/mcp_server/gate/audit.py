"""The audit log's writer: rows queue up and are appended to the keyed chain in batches (see audit_chain)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.mcp_server.gate.audit_chain import COLUMNS, GENESIS, HeadError, HeadFile, head_path, row_digest
from services.mcp_server.gate.audit_key import default_key_path, load_key
from services.mcp_server.gate.audit_verify import VerifyResult, verify
from services.mcp_server.gate.db import connect, now_iso

__all__ = ["AuditEntry", "AuditLog", "AuditWriteError", "HeadError", "VerifyResult", "append_entries", "append_now",
           "head_path", "verify"]

log = logging.getLogger(__name__)

STATUSES = frozenset({"allowed", "denied", "pending", "approved", "rejected", "error", "ok"})
BATCH = 500
# A short pause after the first queued row lets a busy server write many rows per commit.
LINGER_S = 0.02
STOPPED = "the audit writer stopped before the row was written"


@dataclass
class AuditEntry:
    """One call or decision, with arguments already redacted."""

    user: str
    role: str
    tool: str
    args: Any
    status: str
    duration_ms: float = 0.0
    detail: str = ""
    request_id: str | None = None
    ts: str = field(default_factory=now_iso)


Queued = tuple[AuditEntry, "asyncio.Future[None] | None"]


class AuditWriteError(Exception):
    """A row that a caller waited for could not be committed."""

    def __init__(self, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else str(cause) or type(cause).__name__
        super().__init__(f"audit row not written: {reason}")


def append_entries(conn: sqlite3.Connection, db_path: Path, entries: list[AuditEntry], key: bytes,
                   committed: Callable[[], None] | None = None) -> None:
    """Append rows under the write lock, so writers in other processes (the approvals CLI) extend one chain.

    `conn` comes from `audit_connection`: its commits are synced before the head moves past them, so after a
    power loss the head can lag the rows (which verify accepts) but never run ahead of them (which would read
    as rows removed). `committed` is called between the commit and the head's advance: the rows are durable by
    then, and whoever waits for them need not wait for the head as well.
    """
    head = HeadFile(head_path(db_path), key)
    try:
        count, last = _append(conn, head, entries, key)
        if committed is not None:
            committed()
        head.advance(count, last)
    finally:
        head.close()


def audit_connection(db_path: Path) -> sqlite3.Connection:
    """A connection for appending to the chain: every commit synced (synchronous=FULL), set once per connection."""
    conn = connect(db_path)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _append(conn: sqlite3.Connection, head: HeadFile, entries: list[AuditEntry], key: bytes) -> tuple[int, str]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        row_id, prev = (last[0], last[1]) if last else (0, GENESIS)
        try:
            head.check(conn, row_id, prev)
        except HeadError as exc:
            # Rows added on top would bury the evidence; the writer fails until someone looks.
            raise HeadError(f"{exc} (run: ai-suite audit verify)") from None
        for entry in entries:
            if entry.status not in STATUSES:
                raise ValueError(f"unknown audit status {entry.status!r}")
            row_id += 1
            values = (row_id, entry.ts, entry.user, entry.role, entry.tool,
                      json.dumps(entry.args, sort_keys=True, ensure_ascii=False, default=str), entry.status,
                      round(float(entry.duration_ms), 3), entry.detail, entry.request_id)
            digest = row_digest(key, values, prev)
            conn.execute(f"INSERT INTO audit_log ({', '.join(COLUMNS)}, prev_hash, row_hash) "  # nosec B608  # constants
                         f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})", (*values, prev, digest))
            prev = digest
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return row_id, prev


class AuditLog:
    """Takes entries and writes them in batches on a worker thread.

    `log` queues a row without waiting. `record` waits until its row is committed: the middleware uses it
    for calls that can change something, so once such a call is answered its row survives a hard kill.
    Rows that arrive while a commit runs share the next one (group commit); a waiting row cuts the
    linger short.
    """

    def __init__(self, db_path: Path, key_path: Path | None = None) -> None:
        self.db_path = db_path
        self.key_path = key_path or default_key_path(db_path)
        self._conn: sqlite3.Connection | None = None
        self._key: bytes | None = None  # read by the first write, so a bad key is a write failure, not a crash
        self._queue: asyncio.Queue[Queued | None] | None = None  # None: the stop sentinel of `close`
        self._task: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()
        self._closing = False
        self._writing = threading.Lock()  # held by the worker thread while it writes
        self.last_error: str | None = None
        self.written = 0
        # When each queued row was queued (monotonic), and the batch being written: for the lag metrics.
        self._queued_at: deque[float] = deque()
        self._batch_since: float | None = None
        self._batch_rows = 0

    def state(self) -> str:
        return "ok" if self.last_error is None else f"failing: {self.last_error}"

    def uncommitted(self) -> int:
        """Rows queued or being written."""
        return len(self._queued_at) + self._batch_rows

    def write_lag(self) -> float:
        """Seconds since the oldest uncommitted row was queued (0 when every row is committed)."""
        oldest = self._batch_since if self._batch_since is not None else \
            (self._queued_at[0] if self._queued_at else None)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def start(self) -> None:
        """Start the writer on the running loop (idempotent).

        A writer that was stopped from outside leaves its queue behind; the new one takes it over.
        """
        if self._task is not None and not self._task.done():
            return
        self._conn = self._conn or audit_connection(self.db_path)
        self._queue = self._queue or asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(self._queue), name="audit-writer")

    def _put(self, item: Queued) -> None:
        if not self._closing and (self._queue is None or self._task is None or self._task.done()):
            self.start()
        if self._queue is None:  # only between the last flush of `close` and its end
            raise AuditWriteError("the audit log is closed")
        self._queue.put_nowait(item)
        self._queued_at.append(time.monotonic())

    def log(self, entry: AuditEntry) -> None:
        """Queue one entry; never blocks the call it records."""
        self._put((entry, None))

    async def record(self, entry: AuditEntry) -> None:
        """Queue one entry and wait until it is committed; raises AuditWriteError when it was not.

        Cancelling the wait does not withdraw the row: it is written with its batch.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((entry, done))
        self._urgent.set()
        await asyncio.shield(done)

    async def flush(self) -> None:
        """Wait until every queued entry is in the database."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        """Write everything queued, stop the writer and close its connection.

        The writer stops at a sentinel rather than by cancellation, so no write is cut short; rows that
        arrive while it stops are written here before the connection closes.
        """
        self._closing = True
        try:
            if self._task is not None and not self._task.done() and self._queue is not None:
                self._queue.put_nowait(None)
                await self._task
            self._task = None
            queue, self._queue = self._queue, None
            late = [item for item in _drain(queue) if item is not None] if queue is not None else []
            self._queued_at.clear()
            if late and self._conn is not None:
                await self._commit(late)
        finally:
            self._closing = False
            # A write whose waiter was cancelled may still run on its thread: wait for it, and keep the
            # lock while closing, so a write that starts later finds the log closed instead of a dead handle.
            await asyncio.to_thread(self._writing.acquire)
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                self._writing.release()

    async def _run(self, queue: asyncio.Queue[Queued | None]) -> None:
        while True:
            first = await queue.get()
            taken, stopping = 1, first is None
            batch = [] if first is None else [first]
            settled = 0
            if first is not None:
                self._batch_since = self._queued_at.popleft() if self._queued_at else time.monotonic()
                self._batch_rows = 1
            try:
                if first is not None and first[1] is None and queue.empty():
                    # nobody waits yet: linger so a busy server writes many rows per commit
                    self._urgent.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), LINGER_S)
                while not queue.empty() and (stopping or len(batch) < BATCH):
                    item = queue.get_nowait()
                    taken += 1
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
                        if self._queued_at:
                            self._queued_at.popleft()
                self._batch_rows = len(batch)
                for settled in range(0, len(batch), BATCH):
                    await self._commit(batch[settled:settled + BATCH])
                settled = len(batch)
            finally:
                self._batch_since, self._batch_rows = None, 0
                # stopped from outside before its turn: a waiting caller hears so instead of hanging
                _fail_waiters(batch[settled:], STOPPED)
                for _ in range(taken):
                    queue.task_done()
            if stopping:
                return

    async def _commit(self, batch: list[Queued]) -> None:
        """Write one batch and settle its waiters: committed, or AuditWriteError for any failure."""
        failure: BaseException | str = STOPPED
        committed = False
        loop = asyncio.get_running_loop()

        def durable() -> None:
            # On the writing thread, as soon as the commit is synced and before the head file moves on: the
            # counters first, so the guard never sees a stale error after a good write, then the waiters.
            self.written += len(batch)
            self.last_error = None
            with contextlib.suppress(RuntimeError):  # the loop has closed while the thread wrote
                loop.call_soon_threadsafe(_settle, batch)

        try:
            await asyncio.to_thread(self._write, [entry for entry, _ in batch], durable)
            committed = True
        except Exception as exc:
            # Keep serving; /health turns 503 and the middleware refuses calls that change something.
            log.exception("audit write of %d rows failed", len(batch))
            self.last_error = str(exc) or type(exc).__name__
            failure = exc
        finally:
            if committed:
                _settle(batch)
            else:
                _fail_waiters(batch, failure)

    def _write(self, batch: list[AuditEntry], committed: Callable[[], None] | None = None) -> None:
        """Append the batch on the calling thread; `committed` runs once its rows are durable."""
        with self._writing:
            if self._conn is None:
                raise sqlite3.ProgrammingError("the audit log is closed")
            self._key = self._key or load_key(self.key_path)
            append_entries(self._conn, self.db_path, batch, self._key, committed)


def _settle(batch: list[Queued]) -> None:
    """Tell the batch's waiters that their rows are committed."""
    for _, waiter in batch:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _fail_waiters(batch: list[Queued], failure: BaseException | str) -> None:
    for _, waiter in batch:
        if waiter is not None and not waiter.done():
            waiter.set_exception(AuditWriteError(failure))


def _drain(queue: asyncio.Queue[Queued | None]) -> list[Queued | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
        queue.task_done()
    return items


def append_now(db_path: Path, entries: list[AuditEntry], key_path: Path | None = None) -> None:
    """Write entries synchronously (for CLI tools that have no event loop)."""
    key = load_key(key_path or default_key_path(db_path))
    conn = audit_connection(db_path)
    try:
        append_entries(conn, db_path, entries, key)
    finally:
        conn.close()
