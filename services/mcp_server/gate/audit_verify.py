"""Checking the audit chain (`ai-suite audit verify`), and keying it when the security database is opened."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from services.mcp_server.gate.audit_chain import (
    GENESIS,
    Head,
    HeadError,
    Walk,
    compare_with_head,
    head_path,
    is_keyed_head,
    parse_head,
    read_text,
    walk_rows,
    write_head,
)
from services.mcp_server.gate.audit_key import (
    AuditKeyError,
    AuditKeyMissing,
    default_key_path,
    load_key,
    new_key,
    write_key,
)

INTACT, TAMPERED, DAMAGED, UNCHECKED = "intact", "tampered", "damaged", "unchecked"


@dataclass(frozen=True)
class VerifyResult:
    """The verdict: intact; tampered or damaged (the log cannot be trusted); unchecked (the check could not run)."""

    ok: bool
    rows: int
    bad_row: int | None = None
    reason: str = ""
    verdict: str = INTACT
    legacy: int = 0  # rows from before the chain was keyed (checked by their unkeyed hashes)
    keyed: bool = True


def _fails(rows: int, bad_row: int | None, reason: str, verdict: str = TAMPERED) -> VerifyResult:
    return VerifyResult(False, rows, bad_row, reason, verdict)


def verify(db_path: Path, key_path: Path | None = None) -> VerifyResult:
    """Recompute the chain with the key and compare its end with the signed head checkpoint."""
    key_path = key_path or default_key_path(db_path)
    if not db_path.is_file():
        return _fails(0, None, f"there is no security database at {db_path}", UNCHECKED)
    key = None
    try:
        key = load_key(key_path)
    except AuditKeyMissing:
        pass
    except AuditKeyError as exc:
        return _fails(0, None, str(exc), UNCHECKED)
    head_file = head_path(db_path)
    head_text = read_text(head_file)
    if key is None and head_text is not None and is_keyed_head(head_text):
        return _fails(0, None, f"the audit key {key_path} is missing, but the chain was keyed with it; "
                               "restore the key (or point AUDIT_KEY_PATH at it)", UNCHECKED)
    try:
        with closing(sqlite3.connect(db_path, timeout=10.0)) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'").fetchone() \
                    is None:
                return _fails(0, None, "the audit_log table is missing")
            if key is None:
                return _verify_unkeyed(conn, head_file, head_text)[0]
            return _verify_keyed(conn, key, head_file, head_text)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            return _fails(0, None, f"the audit database is busy: {exc}", UNCHECKED)
        return _fails(0, None, f"the audit database is damaged: {exc}", DAMAGED)


def _verify_keyed(conn: sqlite3.Connection, key: bytes, head_file: Path, head_text: str | None) -> VerifyResult:
    if head_text is None or not head_text.strip():
        # The head is made with the key, so a key without a head means the head was removed.
        return _fails(0, None, f"the head checkpoint {head_file.name} is missing, but the audit key exists: "
                               "the log may have been emptied or cut")
    try:
        head = parse_head(head_text, key, head_file.name)
    except HeadError as exc:
        return _fails(0, None, str(exc))
    walk = walk_rows(conn, key, head.legacy, head.count)
    if walk.bad_row is not None:
        return _fails(walk.rows, walk.bad_row, walk.reason)
    bad_row, reason = compare_with_head(walk, head.count, head.row_hash, head_file.name)
    if bad_row is not None:
        return _fails(walk.rows, bad_row, reason)
    return VerifyResult(True, walk.rows, legacy=head.legacy)


def _verify_unkeyed(conn: sqlite3.Connection, head_file: Path, head_text: str | None) -> tuple[VerifyResult, Walk]:
    """The check of a chain written before keys existed: plain SHA-256 rows and an unsigned head."""
    try:
        old = None if head_text is None or not head_text.strip() else json.loads(head_text)
        head_id, head_hash = (int(old["id"]), str(old["row_hash"])) if old is not None else (0, GENESIS)
    except (ValueError, KeyError, TypeError):
        return _fails(0, None, f"the head checkpoint {head_file.name} is unreadable"), Walk(0, GENESIS, None)
    walk = walk_rows(conn, None, None, head_id)
    if walk.bad_row is not None:
        return _fails(walk.rows, walk.bad_row, walk.reason), walk
    if old is None and walk.rows:
        return _fails(walk.rows, walk.rows, f"head checkpoint {head_file.name} is missing"), walk
    bad_row, reason = compare_with_head(walk, head_id, head_hash, head_file.name)
    if bad_row is not None:
        return _fails(walk.rows, bad_row, reason), walk
    return VerifyResult(True, walk.rows, legacy=walk.rows, keyed=False), walk


def prepare_chain(conn: sqlite3.Connection, db_path: Path, key_path: Path) -> None:
    """Make sure the chain has a usable key; make one, with its signed head, for a new or unkeyed chain.

    Raises AuditKeyError when the key cannot be used, or when an unkeyed chain does not verify as it stands:
    keying it would make a tampered history look intact.
    """
    if not os.path.lexists(key_path):
        conn.execute("BEGIN IMMEDIATE")  # one process keys the chain; the others wait, then find the key
        try:
            if not os.path.lexists(key_path):
                _key_the_chain(conn, db_path, key_path)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    load_key(key_path)


def _key_the_chain(conn: sqlite3.Connection, db_path: Path, key_path: Path) -> None:
    head_file = head_path(db_path)
    head_text = read_text(head_file)
    if head_text is not None and is_keyed_head(head_text):
        raise AuditKeyError(f"the audit key {key_path} is missing, but the audit chain was keyed with it; "
                            "restore the key (or point AUDIT_KEY_PATH at it)")
    result, walk = _verify_unkeyed(conn, head_file, head_text)
    if not result.ok:
        where = f"row {result.bad_row}: " if result.bad_row is not None else ""
        raise AuditKeyError(
            f"the audit log cannot be keyed, because it does not verify as it stands ({where}{result.reason}). "
            f"Keep it as evidence: stop the MCP server and move {db_path.name} (with its -wal and -shm files) "
            f"and {head_file.name} out of {db_path.parent}; the next start begins a new log")
    key = new_key()
    # The signed head first: a crash before the key is written then refuses to start, never signs a guess.
    write_head(head_file, Head(walk.rows, walk.last_hash, walk.rows), key)
    write_key(key_path, key)
