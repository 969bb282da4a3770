"""What makes the audit chain tamper-evident: keyed row digests and a signed head checkpoint.

Each row's digest is an HMAC-SHA256, with a key kept outside the database, over its columns and the digest of
the row before it. The head checkpoint, a file beside the database, names the number of rows and the newest
row's digest, signed with the same key. Without the key nobody can recompute a digest after editing a row,
nor write a head that agrees with a shortened or emptied table.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.mcp_server.gate.audit_key import sync_folder

GENESIS = "0" * 64
COLUMNS = ("id", "ts", "user_name", "role", "tool", "args", "status", "duration_ms", "detail", "request_id")
# One record well inside a disk sector, rewritten in place, so it is never seen half written.
HEAD_SIZE = 256


class HeadError(Exception):
    """The head checkpoint is missing, unreadable, unsigned, or disagrees with the rows."""


def head_path(db_path: Path) -> Path:
    """The checkpoint of the newest row, kept beside the database."""
    return db_path.with_name(db_path.name + ".audit-head")


def row_digest(key: bytes | None, values: Sequence[Any], prev_hash: str) -> str:
    """HMAC-SHA256 over the row's columns (in COLUMNS order) and the previous digest.

    `key` is None only for rows written before the chain was keyed, which used plain SHA-256.
    """
    payload = json.dumps([*values, prev_hash], separators=(",", ":"), ensure_ascii=False).encode()
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.digest(key, payload, "sha256").hex()


@dataclass(frozen=True)
class Head:
    """Rows 1..count exist and row `count` has digest `row_hash`; rows 1..legacy predate the key."""

    count: int
    row_hash: str
    legacy: int = 0

    def mac(self, key: bytes) -> str:
        signed = json.dumps(["audit-head", self.count, self.legacy, self.row_hash]).encode()
        return hmac.digest(key, signed, "sha256").hex()

    def record(self, key: bytes) -> bytes:
        body = {"count": self.count, "legacy": self.legacy, "row_hash": self.row_hash, "mac": self.mac(key)}
        data = json.dumps(body).encode()
        if len(data) > HEAD_SIZE:
            raise HeadError("head checkpoint record too long")
        return data.ljust(HEAD_SIZE)


def parse_head(text: str, key: bytes, name: str) -> Head:
    """The head in `text`, if `key` signed it; HeadError naming what is wrong otherwise."""
    if not text.strip():
        raise HeadError(f"the head checkpoint {name} is empty")
    try:
        fields = json.loads(text)
        head = Head(int(fields["count"]), str(fields["row_hash"]), int(fields["legacy"]))
        mac = str(fields["mac"])
    except (ValueError, KeyError, TypeError):
        raise HeadError(f"the head checkpoint {name} is unreadable or unsigned") from None
    if not hmac.compare_digest(mac, head.mac(key)):
        raise HeadError(f"the head checkpoint {name} is not signed by the audit key "
                        "(forged, or AUDIT_KEY_PATH names another key)")
    return head


def is_keyed_head(text: str) -> bool:
    """Whether a head file's text is in the signed form (the chain was keyed), valid or not."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return "mac" in json.loads(text)
    return False


def read_text(path: Path) -> str | None:
    """A small file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def write_head(path: Path, head: Head, key: bytes) -> None:
    """Replace the head file whole (a temporary file, fsynced, then renamed); used when a chain is keyed."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, head.record(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_folder(path.parent)


class HeadFile:
    """The head checkpoint as the writer uses it: locked for a batch, checked before it, advanced after its commit.

    It is opened per batch, so a head file replaced on disk is seen at once. An exclusive flock, held from the
    check to the advance, orders writers in different processes; the head only moves forward.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        self.path, self.key = path, key
        self.head: Head | None = None
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise HeadError(f"the head checkpoint {path.name} is missing") from None

    def close(self) -> None:
        """Close the file, which also drops the lock."""
        os.close(self.fd)

    def _read(self) -> Head:
        text = os.pread(self.fd, 4096, 0).decode("utf-8", "replace")
        return parse_head(text, self.key, self.path.name)

    def check(self, conn: sqlite3.Connection, last_id: int, last_hash: str) -> Head:
        """Lock the head until `close`, and refuse to extend a chain that no longer reaches it (rows removed or
        replaced); `last_id` and `last_hash` are the newest row's."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        head = self.head = self._read()
        if head.count > last_id:
            raise HeadError(f"the audit log ends at row {last_id}, but its head checkpoint says {head.count}: "
                            "rows were removed")
        if head.count == last_id:
            found: str | None = last_hash
        elif head.count:
            row = conn.execute("SELECT row_hash FROM audit_log WHERE id = ?", (head.count,)).fetchone()
            found = None if row is None else row[0]
        if head.count and found != head.row_hash:
            raise HeadError(f"row {head.count} does not match the head checkpoint")
        return head

    def advance(self, count: int, row_hash: str) -> None:
        """Record row `count` as the newest (the lock taken by `check` is still held)."""
        if self.head is None:
            raise HeadError("the head checkpoint was not checked before it was advanced")
        if self.head.count < count:
            os.pwrite(self.fd, Head(count, row_hash, self.head.legacy).record(self.key), 0)


@dataclass(frozen=True)
class Walk:
    """What walking the rows found: how many, the last digest, the digest at a wanted row, the first fault."""

    rows: int
    last_hash: str
    anchor_hash: str | None
    bad_row: int | None = None
    reason: str = ""


def walk_rows(conn: sqlite3.Connection, key: bytes | None, legacy: int | None, anchor: int) -> Walk:
    """Recompute the chain row by row; rows up to `legacy` (every row when None) use the unkeyed digest."""
    query = f"SELECT {', '.join(COLUMNS)}, prev_hash, row_hash FROM audit_log ORDER BY id"  # nosec B608  # constants
    prev, expected, anchor_hash = GENESIS, 1, None
    for row in conn.execute(query):
        values = tuple(row[:len(COLUMNS)])
        row_id, prev_hash, digest = row[0], row[-2], row[-1]
        found = expected - 1
        if row_id != expected:
            return Walk(found, prev, anchor_hash, expected, f"row {expected} is missing")
        if prev_hash != prev:
            return Walk(found, prev, anchor_hash, row_id, "previous-hash link broken (a row before it changed)")
        unkeyed = legacy is None or row_id <= legacy
        if not hmac.compare_digest(row_digest(None if unkeyed else key, values, prev), str(digest)):
            kind = "hash" if unkeyed else "HMAC (edited, or written with another key)"
            return Walk(found, prev, anchor_hash, row_id, f"row contents do not match its {kind}")
        if row_id == anchor:
            anchor_hash = digest
        prev, expected = digest, expected + 1
    return Walk(expected - 1, prev, anchor_hash)


def compare_with_head(walk: Walk, count: int, row_hash: str, name: str) -> tuple[int | None, str]:
    """The first row that disagrees with a head saying `count` rows ending in `row_hash`, and why."""
    if count > walk.rows:
        if walk.rows == 0:
            return 1, f"every row is gone, but the head checkpoint {name} says there were {count}"
        return walk.rows + 1, f"rows {walk.rows + 1}..{count} were removed from the end"
    # Rows after the head are the writer's lag (it signs the head after each commit); their HMACs cover them.
    if count and walk.anchor_hash != row_hash:
        return count, f"row {count} does not match the head checkpoint"
    return None, ""
