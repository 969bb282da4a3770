"""Append-only audit chain: each row hashes the one before it, and a head file catches a removed last row."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.mcp_server.security.db import connect, now_iso

log = logging.getLogger(__name__)

GENESIS = "0" * 64
STATUSES = frozenset({"allowed", "denied", "pending", "approved", "rejected", "error", "ok"})
BATCH = 500
# A short pause after the first queued row lets a busy server write many rows per commit.
LINGER_S = 0.02
STOPPED = "the audit writer stopped before the row was written"
COLUMNS = ("id", "ts", "user_name", "role", "tool", "args", "status", "duration_ms", "detail", "request_id")


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


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_row: int | None = None
    reason: str = ""


def head_path(db_path: Path) -> Path:
    """The checkpoint of the newest row, kept beside the database."""
    return db_path.with_name(db_path.name + ".audit-head")


def row_hash(values: tuple[Any, ...], prev_hash: str) -> str:
    """sha256 over the row's columns (in COLUMNS order) and the previous row's hash."""
    payload = json.dumps([*values, prev_hash], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class HeadFile:
    """The head checkpoint, rewritten in place as one fixed-size record (a rename per batch costs far more)."""

    SIZE = 128

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def write(self, row_id: int, digest: str) -> None:
        record = json.dumps({"id": row_id, "row_hash": digest}).ljust(self.SIZE).encode()
        os.pwrite(self.fd, record, 0)

    def close(self) -> None:
        os.close(self.fd)


def append_entries(
    conn: sqlite3.Connection, db_path: Path, entries: list[AuditEntry], head: HeadFile | None = None
) -> None:
    """Append rows under the write lock, so writers in other processes (the approvals CLI) extend one chain."""
    own_head = head is None
    head = head or HeadFile(head_path(db_path))
    try:
        _append(conn, head, entries)
    finally:
        if own_head:
            head.close()


def _append(conn: sqlite3.Connection, head: HeadFile, entries: list[AuditEntry]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        row_id, prev = (last[0], last[1]) if last else (0, GENESIS)
        for entry in entries:
            if entry.status not in STATUSES:
                raise ValueError(f"unknown audit status {entry.status!r}")
            row_id += 1
            values = (row_id, entry.ts, entry.user, entry.role, entry.tool,
                      json.dumps(entry.args, sort_keys=True, ensure_ascii=False, default=str), entry.status,
                      round(float(entry.duration_ms), 3), entry.detail, entry.request_id)
            digest = row_hash(values, prev)
            conn.execute(f"INSERT INTO audit_log ({', '.join(COLUMNS)}, prev_hash, row_hash) "  # nosec B608  # constants
                         f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})", (*values, prev, digest))
            prev = digest
        # Written while the lock is held, so concurrent writers cannot leave an older head behind.
        head.write(row_id, prev)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def verify(db_path: Path) -> VerifyResult:
    """Recompute the chain; the first row that does not fit (edited, removed, or a missing head) fails it."""
    conn = connect(db_path)
    try:
        query = f"SELECT {', '.join(COLUMNS)}, prev_hash, row_hash FROM audit_log ORDER BY id"  # nosec B608  # constants
        rows = conn.execute(query).fetchall()
    finally:
        conn.close()
    prev, expected_id = GENESIS, 1
    for row in rows:
        values = tuple(row[name] for name in COLUMNS)
        if row["id"] != expected_id:
            return VerifyResult(False, len(rows), expected_id, f"row {expected_id} is missing")
        if row["prev_hash"] != prev:
            return VerifyResult(False, len(rows), row["id"], "previous-hash link broken (a row before it changed)")
        if row_hash(values, prev) != row["row_hash"]:
            return VerifyResult(False, len(rows), row["id"], "row contents do not match its hash")
        prev, expected_id = row["row_hash"], expected_id + 1
    return _check_head(db_path, rows, prev)


def _check_head(db_path: Path, rows: list[sqlite3.Row], last_hash: str) -> VerifyResult:
    path = head_path(db_path)
    # A writer creates the file when it starts and fills it with its first batch: empty means none yet.
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        if rows:
            return VerifyResult(False, len(rows), rows[-1]["id"], f"head checkpoint {path.name} is missing")
        return VerifyResult(True, 0)
    try:
        head = json.loads(text)
        head_id, head_hash = int(head["id"]), str(head["row_hash"])
    except (ValueError, KeyError, TypeError):
        return VerifyResult(False, len(rows), None, f"head checkpoint {path.name} is unreadable")
    last_id = rows[-1]["id"] if rows else 0
    if head_id > last_id:
        return VerifyResult(False, len(rows), last_id + 1, f"rows {last_id + 1}..{head_id} were removed from the end")
    # Rows after the head can only come from a crash between commit and checkpoint; the chain covers them.
    if head_id and rows[head_id - 1]["row_hash"] != head_hash:
        return VerifyResult(False, len(rows), head_id, "row does not match the head checkpoint")
    return VerifyResult(True, len(rows))


class AuditLog:
    """Takes entries and writes them in batches on a worker thread.

    `log` queues a row without waiting. `record` waits until its row is committed: the middleware uses it
    for calls that can change something, so once such a call is answered its row survives a hard kill.
    Rows that arrive while a commit runs share the next one (group commit); a waiting row cuts the
    linger short.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conn: sqlite3.Connection | None = None
        self._head: HeadFile | None = None
        self._queue: asyncio.Queue[Queued | None] | None = None  # None: the stop sentinel of `close`
        self._task: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()
        self._closing = False
        self._writing = threading.Lock()  # held by the worker thread while it writes
        self.last_error: str | None = None
        self.written = 0

    def state(self) -> str:
        return "ok" if self.last_error is None else f"failing: {self.last_error}"

    def start(self) -> None:
        """Start the writer on the running loop (idempotent).

        A writer that was stopped from outside leaves its queue behind; the new one takes it over.
        """
        if self._task is not None and not self._task.done():
            return
        self._conn = self._conn or connect(self.db_path)
        self._head = self._head or HeadFile(head_path(self.db_path))
        self._queue = self._queue or asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(self._queue), name="audit-writer")

    def _put(self, item: Queued) -> None:
        if not self._closing and (self._queue is None or self._task is None or self._task.done()):
            self.start()
        assert self._queue is not None
        self._queue.put_nowait(item)

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
            if self._task is not None and not self._task.done():
                assert self._queue is not None
                self._queue.put_nowait(None)
                await self._task
            self._task = None
            queue, self._queue = self._queue, None
            late = [item for item in _drain(queue) if item is not None] if queue is not None else []
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
                if self._head is not None:
                    self._head.close()
                    self._head = None
            finally:
                self._writing.release()

    async def _run(self, queue: asyncio.Queue[Queued | None]) -> None:
        while True:
            first = await queue.get()
            taken, stopping = 1, first is None
            batch = [] if first is None else [first]
            settled = 0
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
                for settled in range(0, len(batch), BATCH):
                    await self._commit(batch[settled:settled + BATCH])
                settled = len(batch)
            finally:
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
        try:
            await asyncio.to_thread(self._write, [entry for entry, _ in batch])
            committed = True
        except Exception as exc:
            # Keep serving; /health turns 503 and the middleware refuses calls that change something.
            log.exception("audit write of %d rows failed", len(batch))
            self.last_error = str(exc) or type(exc).__name__
            failure = exc
        finally:
            if committed:
                for _, waiter in batch:
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
            else:
                _fail_waiters(batch, failure)

    def _write(self, batch: list[AuditEntry]) -> None:
        with self._writing:
            if self._conn is None or self._head is None:
                raise sqlite3.ProgrammingError("the audit log is closed")
            append_entries(self._conn, self.db_path, batch, self._head)
        self.written += len(batch)
        self.last_error = None


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


def append_now(db_path: Path, entries: list[AuditEntry]) -> None:
    """Write entries synchronously (for CLI tools that have no event loop)."""
    conn = connect(db_path)
    try:
        append_entries(conn, db_path, entries)
    finally:
        conn.close()
