"""Audit chain: append through the queue, verify, and catch every kind of edit or removal."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from services.mcp_server.gate import db
from services.mcp_server.gate.audit import (
    AuditEntry,
    AuditLog,
    AuditWriteError,
    HeadError,
    append_now,
    head_path,
    verify,
)
from services.mcp_server.gate.redact import redact
from tests.unit.mcp.security_support import make_settings


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return db.initialize(make_settings(tmp_path))


def _entries(count: int) -> list[AuditEntry]:
    return [AuditEntry(f"user{i % 2}", "developer", "read_file", {"path": f"/f{i}"}, "allowed", 1.5 + i)
            for i in range(count)]


def _tamper(path: Path, sql: str, *params: object) -> None:
    """What an attacker with file access does: drop the append-only triggers, then edit."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_empty_log_verifies(db_path: Path) -> None:
    result = verify(db_path)
    assert result.ok and result.rows == 0


def test_chain_of_rows_verifies_and_links(db_path: Path) -> None:
    append_now(db_path, _entries(3))
    append_now(db_path, _entries(2))
    result = verify(db_path)
    assert result.ok and result.rows == 5
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT id, prev_hash, row_hash FROM audit_log ORDER BY id").fetchall()
    assert rows[0][1] == "0" * 64
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 5))


def test_application_cannot_update_or_delete_rows(db_path: Path) -> None:
    append_now(db_path, _entries(1))
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_log SET status = 'denied'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_log")


def test_edited_row_is_found(db_path: Path) -> None:
    append_now(db_path, _entries(5))
    _tamper(db_path, "UPDATE audit_log SET status = 'denied' WHERE id = 3")
    result = verify(db_path)
    assert not result.ok and result.bad_row == 3
    assert "do not match its HMAC" in result.reason


def test_edit_with_recomputed_hash_breaks_the_next_link(db_path: Path) -> None:
    append_now(db_path, _entries(5))
    _tamper(db_path, "UPDATE audit_log SET row_hash = ? WHERE id = 2", "f" * 64)
    result = verify(db_path)
    assert not result.ok and result.bad_row == 2


def test_deleted_middle_row_is_found(db_path: Path) -> None:
    append_now(db_path, _entries(5))
    _tamper(db_path, "DELETE FROM audit_log WHERE id = 3")
    result = verify(db_path)
    assert not result.ok and result.bad_row == 3
    assert "missing" in result.reason


def test_deleted_first_row_is_found(db_path: Path) -> None:
    append_now(db_path, _entries(3))
    _tamper(db_path, "DELETE FROM audit_log WHERE id = 1")
    assert verify(db_path).bad_row == 1


def test_deleted_last_row_is_found_by_the_head_checkpoint(db_path: Path) -> None:
    append_now(db_path, _entries(4))
    _tamper(db_path, "DELETE FROM audit_log WHERE id = 4")
    result = verify(db_path)
    assert not result.ok and result.bad_row == 4
    assert "removed from the end" in result.reason


def test_every_row_deleted_is_found(db_path: Path) -> None:
    append_now(db_path, _entries(2))
    _tamper(db_path, "DELETE FROM audit_log")
    assert not verify(db_path).ok


def test_the_writer_refuses_to_extend_a_chain_cut_short(db_path: Path) -> None:
    """Appending on top of a removed last row would hide the removal; the writer stops instead."""
    append_now(db_path, _entries(3))
    _tamper(db_path, "DELETE FROM audit_log WHERE id = 3")
    with pytest.raises(HeadError, match="ends at row 2, but its head checkpoint says 3"):
        append_now(db_path, [AuditEntry("mallory", "admin", "read_file", {}, "allowed")])
    result = verify(db_path)
    assert not result.ok and result.bad_row == 3 and result.rows == 2


def test_the_writer_refuses_to_extend_a_chain_whose_last_row_was_replaced(db_path: Path) -> None:
    append_now(db_path, _entries(3))
    _tamper(db_path, "UPDATE audit_log SET row_hash = ? WHERE id = 3", "e" * 64)
    with pytest.raises(HeadError, match="row 3 does not match the head checkpoint"):
        append_now(db_path, _entries(1))
    assert verify(db_path).bad_row == 3


async def test_a_writer_that_finds_the_head_removed_fails_and_health_says_so(db_path: Path) -> None:
    log = AuditLog(db_path)
    await log.record(_entries(1)[0])
    head_path(db_path).unlink()
    with pytest.raises(AuditWriteError, match="head checkpoint .* is missing"):
        await log.record(_entries(1)[0])
    assert "head checkpoint" in log.state()
    await log.close()
    assert "missing" in verify(db_path).reason


def test_missing_head_file_is_found(db_path: Path) -> None:
    append_now(db_path, _entries(2))
    head_path(db_path).unlink()
    assert "missing" in verify(db_path).reason


def test_unknown_status_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown audit status"):
        append_now(db_path, [AuditEntry("u", "guest", "read_file", {}, "maybe")])
    assert verify(db_path).rows == 0


async def test_queue_writer_writes_everything_in_order_and_flushes(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.start()
    for entry in _entries(300):
        log.log(entry)
    await log.flush()
    assert log.written == 300
    await log.close()
    rows = sqlite3.connect(db_path).execute("SELECT args FROM audit_log ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [f'{{"path": "/f{i}"}}' for i in range(300)]
    assert verify(db_path).ok


async def test_two_writers_share_one_chain(db_path: Path) -> None:
    """The server's queue and the approvals CLI append to the same chain without forking it."""
    log = AuditLog(db_path)
    for entry in _entries(20):
        log.log(entry)
    await asyncio.gather(*(asyncio.to_thread(append_now, db_path, _entries(3)) for _ in range(5)))
    await log.close()
    result = verify(db_path)
    assert result.ok and result.rows == 35


def test_redaction_hides_secrets_and_content_but_keeps_the_rest() -> None:
    args = {
        "path": "notes.txt", "content": "x" * 5000, "api_key": "abc123", "headers": {"Authorization": "Bearer z"},
        "command": "curl -H 'Authorization: Bearer sk-abcdefghijklmnop' --password=hunter2 http://h/?token=s3cr3t",
        "max_tokens": 5, "author": "Ann",
    }
    out = redact(args)
    assert out["path"] == "notes.txt" and out["max_tokens"] == 5 and out["author"] == "Ann"
    assert out["content"] == f"sha256:{hashlib.sha256(b'x' * 5000).hexdigest()}; 5000 bytes"
    assert out["api_key"] == "[redacted]"
    assert out["headers"]["Authorization"] == "[redacted]"
    for secret in ("sk-abcdefghijklmnop", "hunter2", "s3cr3t"):
        assert secret not in out["command"]
    assert redact(args, keep_content=True)["content"] == "x" * 512 + "... [5000 chars]"


async def test_record_returns_only_once_the_row_is_committed(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.log(_entries(1)[0])  # a queued row alone lingers before it is written
    await log.record(AuditEntry("alice", "developer", "write_file", {"path": "/w"}, "allowed"))
    with closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT tool FROM audit_log ORDER BY id").fetchall()
    assert rows == [("read_file",), ("write_file",)]  # committed together, before record returned
    await log.close()
    assert verify(db_path).ok


async def test_record_raises_when_its_row_cannot_be_written(db_path: Path) -> None:
    log = AuditLog(db_path)
    with pytest.raises(AuditWriteError, match="unknown audit status"):
        await log.record(AuditEntry("alice", "developer", "write_file", {}, "maybe"))
    assert log.last_error is not None and "unknown audit status" in log.state()
    await log.record(AuditEntry("alice", "developer", "write_file", {}, "allowed"))  # the next good row heals it
    assert log.last_error is None
    await log.close()
    assert verify(db_path).rows == 1


async def test_a_waiting_row_cuts_the_linger_short(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.mcp_server.gate.audit.LINGER_S", 30.0)
    log = AuditLog(db_path)
    log.log(_entries(1)[0])  # alone in the queue: the writer lingers for more
    await asyncio.sleep(0.05)
    await asyncio.wait_for(log.record(AuditEntry("alice", "developer", "write_file", {}, "allowed")), 5)
    await log.close()
    assert verify(db_path).rows == 2


async def test_a_write_cut_short_is_reported_as_not_written(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.start()
    started, release = threading.Event(), threading.Event()
    real = log._write

    def slow(batch: list[AuditEntry], committed: Callable[[], None] | None = None) -> None:
        started.set()
        release.wait(10)
        real(batch, committed)

    log._write = slow  # type: ignore[method-assign]
    waiting = asyncio.create_task(log.record(AuditEntry("alice", "developer", "write_file", {}, "allowed")))
    await asyncio.to_thread(started.wait, 10)
    assert log._task is not None
    log._task.cancel()  # the writer stopped from outside, mid-write
    with pytest.raises(AuditWriteError, match="stopped"):
        await waiting
    release.set()  # the cut-short write goes on in its thread; close waits for it before closing the file
    await log.close()
    assert verify(db_path).ok


async def test_rows_queued_while_closing_are_written(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.log(_entries(1)[0])
    stopping = asyncio.create_task(log.close())
    await asyncio.sleep(0)  # close has queued its stop sentinel
    log.log(AuditEntry("bob", "developer", "read_file", {"path": "/late"}, "allowed"))
    await stopping
    with closing(sqlite3.connect(db_path)) as conn:
        assert [row[0] for row in conn.execute("SELECT user_name FROM audit_log ORDER BY id")] == ["user0", "bob"]
    assert verify(db_path).ok


async def test_a_writer_stopped_from_outside_leaves_its_rows_to_the_next(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.start()
    assert log._task is not None
    log._task.cancel()
    await asyncio.sleep(0)
    log.log(_entries(1)[0])  # the next writer starts and writes it
    await log.flush()
    await log.close()
    assert verify(db_path).rows == 1


async def test_a_server_that_recorded_nothing_verifies(db_path: Path) -> None:
    log = AuditLog(db_path)
    log.start()
    await log.close()
    assert head_path(db_path).exists() and verify(db_path).ok  # the head is made with the key
    head_path(db_path).write_text("")  # an emptied head is not a fresh one
    assert "missing" in verify(db_path).reason
    with pytest.raises(HeadError, match="empty"):
        append_now(db_path, _entries(1))
