"""Approval requests: created pending, decided by another user, and consumed exactly once by the caller's retry."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.mcp_server.security.audit import AuditEntry, append_now
from services.mcp_server.security.db import PERM_DECIDE, connect, role_has, user_role

OPEN = ("pending", "approved")


class ApprovalError(Exception):
    """A decision that cannot be made."""


class UnknownRequest(ApprovalError):
    pass


class SelfApproval(ApprovalError):
    pass


class AlreadyDecided(ApprovalError):
    pass


class RequestExpired(ApprovalError):
    pass


class NotApprover(ApprovalError):
    pass


def canonical(args: Any) -> str:
    """One spelling per argument set, so a retry with the same arguments hashes the same."""
    return json.dumps(args if args is not None else {}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str)


def args_digest(tool: str, args: Any) -> str:
    return hashlib.sha256(f"{tool}\n{canonical(args)}".encode()).hexdigest()


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    user_name: str
    tool: str
    args_hash: str
    args: str
    status: str
    created_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    reason: str | None
    used_at: float | None

    def state(self, now: float | None = None) -> str:
        """The stored status, or "expired" once an open request has run out of time."""
        if self.status in OPEN and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return self.status

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The JSON shape served to pollers."""
        body = asdict(self)
        body.pop("args_hash")
        body["args"] = json.loads(self.args)
        body["request_id"] = body.pop("id")
        body["user"] = body.pop("user_name")
        body["status"] = self.state(now)
        for key in ("created_at", "expires_at", "decided_at", "used_at"):
            body[key] = iso(body[key])
        return body


def _request(row: sqlite3.Row) -> ApprovalRequest:
    return ApprovalRequest(**{name: row[name] for name in ApprovalRequest.__dataclass_fields__})


@dataclass(frozen=True)
class Gate:
    """What a guarded call may do: run under `request` (consumed), or wait for it (pending)."""

    run: bool
    request: ApprovalRequest


class ApprovalStore:
    """Approval requests in the security database; every state change is one guarded UPDATE."""

    def __init__(self, db_path: Path, timeout_s: int, clock: Callable[[], float] = time.time) -> None:
        self.db_path = db_path
        self.timeout_s = timeout_s
        self.clock = clock
        self._conn: sqlite3.Connection = connect(db_path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def gate(self, user: str, tool: str, args: Any, stored_args: Any | None = None) -> Gate:
        """Consume an approval for this exact call, else return the open (or a new) pending request."""
        digest, now = args_digest(tool, args), self.clock()
        with self._lock:
            consumed = self._conn.execute(
                "UPDATE approval_requests SET status = 'used', used_at = ? WHERE id = ("
                " SELECT id FROM approval_requests WHERE user_name = ? AND tool = ? AND args_hash = ?"
                " AND status = 'approved' AND expires_at > ? ORDER BY decided_at LIMIT 1"
                ") AND status = 'approved' RETURNING *",
                (now, user, tool, digest, now),
            ).fetchone()
            if consumed is not None:
                return Gate(True, _request(consumed))
            return Gate(False, self._pending(user, tool, digest, stored_args if stored_args is not None else args))

    def _pending(self, user: str, tool: str, digest: str, args: Any) -> ApprovalRequest:
        now = self.clock()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT * FROM approval_requests WHERE user_name = ? AND tool = ? AND args_hash = ?"
                " AND status = 'pending' AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
                (user, tool, digest, now),
            ).fetchone()
            if row is None:
                row = self._conn.execute(
                    "INSERT INTO approval_requests (id, user_name, tool, args_hash, args, status, created_at,"
                    " expires_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING *",
                    (uuid.uuid4().hex, user, tool, digest, canonical(args), now, now + self.timeout_s),
                ).fetchone()
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return _request(row)

    def decide(self, request_id: str, approver: str, approve: bool, reason: str = "") -> ApprovalRequest:
        """Approve or reject a pending request as `approver`, who must be another user allowed to decide."""
        now = self.clock()
        with self._lock:
            self._check_decider(request_id, approver)
            status, expires_at = ("approved", now + self.timeout_s) if approve else ("rejected", None)
            # The WHERE clause re-checks everything, so a decision racing another one or the clock cannot slip in.
            row = self._conn.execute(
                "UPDATE approval_requests SET status = ?, decided_by = ?, decided_at = ?, reason = ?,"
                " expires_at = COALESCE(?, expires_at)"
                " WHERE id = ? AND status = 'pending' AND expires_at > ? AND user_name != ? RETURNING *",
                (status, approver, now, reason or None, expires_at, request_id, now, approver),
            ).fetchone()
            if row is not None:
                return _request(row)
            request = self._get(request_id)
        assert request is not None  # requests are never deleted
        if request.state(now) == "expired":
            raise RequestExpired(f"request {request_id} expired at {iso(request.expires_at)}")
        raise AlreadyDecided(f"request {request_id} is already {request.state(now)}"
                             + (f" by {request.decided_by}" if request.decided_by else ""))

    def _check_decider(self, request_id: str, approver: str) -> None:
        known = self._get(request_id)
        if known is None:
            raise UnknownRequest(f"no approval request {request_id!r}")
        if known.user_name == approver:
            raise SelfApproval(f"{approver!r} made request {request_id} and cannot decide it; ask another approver")
        role = user_role(self._conn, approver)
        if role is None or not role_has(self._conn, role, PERM_DECIDE):
            raise NotApprover(f"user {approver!r} may not decide approval requests")

    def _get(self, request_id: str) -> ApprovalRequest | None:
        row = self._conn.execute("SELECT * FROM approval_requests WHERE id = ?", (request_id,)).fetchone()
        return _request(row) if row else None

    def role_of(self, user: str) -> str | None:
        with self._lock:
            return user_role(self._conn, user)

    def get(self, request_id: str) -> ApprovalRequest | None:
        with self._lock:
            return self._get(request_id)

    def find(self, user: str | None = None, states: tuple[str, ...] = (), limit: int = 200) -> list[ApprovalRequest]:
        """Newest first, optionally one user's, optionally only in the given (effective) states."""
        query, params = "SELECT * FROM approval_requests", []
        if user is not None:
            query, params = query + " WHERE user_name = ?", [user]
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created_at DESC", params).fetchall()
        now = self.clock()
        found = [_request(row) for row in rows]
        if states:
            found = [req for req in found if req.state(now) in states]
        return found[:limit]


def decide_and_record(
    store: ApprovalStore, request_id: str, approver: str, approve: bool, reason: str = "", *, audit: bool = True,
    audit_key: Path | None = None,
) -> ApprovalRequest:
    """Decide a request and append the decision (or the refused attempt) to the audit chain."""
    args = {"request_id": request_id, "decision": "approve" if approve else "reject", "reason": reason}
    known = store.get(request_id)
    tool = known.tool if known else "-"
    role = store.role_of(approver) or ""
    try:
        decided = store.decide(request_id, approver, approve, reason)
    except ApprovalError as exc:
        if audit:
            append_now(store.db_path, [AuditEntry(approver, role, tool, args, "denied", detail=str(exc),
                                                  request_id=request_id)], audit_key)
        raise
    if audit:
        append_now(store.db_path, [AuditEntry(approver, role, tool, args, decided.status, request_id=request_id)],
                   audit_key)
    return decided
