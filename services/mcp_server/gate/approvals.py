"""Approval requests: created pending, decided by another user, and consumed exactly once by the caller's retry."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.mcp_server.gate.audit import AuditEntry, append_now
from services.mcp_server.gate.db import PERM_DECIDE, connect, role_has, user_role

OPEN = ("pending", "approved")
# The state the running call's approval was bound to, for a tool that can pin itself to it (git_commit commits
# the approved tree, not whatever is staged by the time it runs).
_APPROVED_STATE: ContextVar[dict[str, str] | None] = ContextVar("approved_state", default=None)


def approved_state() -> dict[str, str] | None:
    """What the approval the current call runs under is bound to; None when it runs under no bound approval."""
    return _APPROVED_STATE.get()


@contextmanager
def running_under(bound: dict[str, str] | None) -> Iterator[None]:
    """Make `bound` the approved state for the call run inside this block."""
    token = _APPROVED_STATE.set(bound)
    try:
        yield
    finally:
        _APPROVED_STATE.reset(token)


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
    bound: str | None

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
        body["bound"] = json.loads(self.bound) if self.bound else None
        body["request_id"] = body.pop("id")
        body["user"] = body.pop("user_name")
        body["status"] = self.state(now)
        for key in ("created_at", "expires_at", "decided_at", "used_at"):
            body[key] = iso(body[key])
        return body


# Spend the oldest live approval of this call: one whose bound state matches (it runs), or, failing that, one
# bound to another state (it is spent without running). Approvals live a window from their decision, by the
# server's setting at the time of use. Parameters: now, user, tool, args hash, now - window, bound state.
_SPEND_MATCHING = (
    "UPDATE approval_requests SET status = 'used', used_at = ? WHERE id = ("
    " SELECT id FROM approval_requests WHERE user_name = ? AND tool = ? AND args_hash = ?"
    " AND status = 'approved' AND decided_at > ? AND bound IS ? ORDER BY decided_at LIMIT 1"
    ") AND status = 'approved' RETURNING *"
)
_SPEND_STALE = _SPEND_MATCHING.replace("AND bound IS ?", "AND bound IS NOT ?")


def _request(row: sqlite3.Row) -> ApprovalRequest:
    return ApprovalRequest(**{name: row[name] for name in ApprovalRequest.__dataclass_fields__})


@dataclass(frozen=True)
class Gate:
    """What a guarded call may do: run under `request` (consumed), or wait for it (pending).

    `stale` marks an approval of these arguments that was spent without running, because what it was bound to
    (`request.bound`) no longer holds.
    """

    run: bool
    request: ApprovalRequest
    stale: bool = False


class ApprovalStore:
    """Approval requests in the security database; every state change is one guarded UPDATE.

    `timeout_s` is the server's APPROVAL_TIMEOUT: how long a new request waits, and how long an approval lives
    when it is used. A store without one (the `ai-approvals` command) only reads and decides: an approval it
    grants lives as long as the server said its request would wait, never by the approver's own environment.
    """

    def __init__(self, db_path: Path, timeout_s: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.db_path = db_path
        self.timeout_s = timeout_s
        self.clock = clock
        self._conn: sqlite3.Connection = connect(db_path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _row(self, row: sqlite3.Row) -> ApprovalRequest:
        """A stored request; the server reports an approval's expiry by its own window, as `gate` applies it."""
        request = _request(row)
        if self.timeout_s is not None and request.status == "approved" and request.decided_at is not None:
            return replace(request, expires_at=request.decided_at + self.timeout_s)
        return request

    def _window(self) -> int:
        if self.timeout_s is None:
            raise ValueError("only the server's store, which knows APPROVAL_TIMEOUT, gates calls")
        return self.timeout_s

    def gate(self, user: str, tool: str, args: Any, stored_args: Any | None = None,
             bound: dict[str, str] | None = None) -> Gate:
        """Consume an approval for this exact call in this exact state, else return the open (or a new) pending
        request; an approval of the same call bound to another state is spent and returned as stale."""
        digest, now, window = args_digest(tool, args), self.clock(), self._window()
        state = canonical(bound) if bound is not None else None
        params = (now, user, tool, digest, now - window, state)
        with self._lock:
            consumed = self._conn.execute(_SPEND_MATCHING, params).fetchone()
            if consumed is not None:
                return Gate(True, self._row(consumed))
            stale = self._conn.execute(_SPEND_STALE, params).fetchone()
            if stale is not None:
                return Gate(False, self._row(stale), stale=True)
            stored = stored_args if stored_args is not None else args
            return Gate(False, self._pending(user, tool, digest, stored, state, window))

    def _pending(self, user: str, tool: str, digest: str, args: Any, state: str | None, window: int
                 ) -> ApprovalRequest:
        now = self.clock()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT * FROM approval_requests WHERE user_name = ? AND tool = ? AND args_hash = ?"
                " AND status = 'pending' AND expires_at > ? AND bound IS ? ORDER BY created_at DESC LIMIT 1",
                (user, tool, digest, now, state),
            ).fetchone()
            if row is None:
                row = self._conn.execute(
                    "INSERT INTO approval_requests (id, user_name, tool, args_hash, args, status, created_at,"
                    " expires_at, bound) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING *",
                    (uuid.uuid4().hex, user, tool, digest, canonical(args), now, now + window, state),
                ).fetchone()
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return self._row(row)

    def decide(self, request_id: str, approver: str, approve: bool, reason: str = "") -> ApprovalRequest:
        """Approve or reject a pending request as `approver`, who must be another user allowed to decide."""
        now = self.clock()
        with self._lock:
            self._check_decider(request_id, approver)
            # An approval gets the window the server gave its request (expires_at - created_at), for display;
            # the server applies its own setting again when the approval is used.
            # The WHERE clause re-checks everything, so a decision racing another one or the clock cannot slip in.
            row = self._conn.execute(
                "UPDATE approval_requests SET status = ?, decided_by = ?, decided_at = ?, reason = ?,"
                " expires_at = CASE WHEN ? THEN ? + expires_at - created_at ELSE expires_at END"
                " WHERE id = ? AND status = 'pending' AND expires_at > ? AND user_name != ? RETURNING *",
                ("approved" if approve else "rejected", approver, now, reason or None, approve, now,
                 request_id, now, approver),
            ).fetchone()
            if row is not None:
                return self._row(row)
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
        return self._row(row) if row else None

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
        found = [self._row(row) for row in rows]
        if states:
            found = [req for req in found if req.state(now) in states]
        return found[:limit]


def count_pending(conn: sqlite3.Connection, now: float) -> int:
    """Requests waiting for a decision at `now` (expired ones left out)."""
    row = conn.execute("SELECT count(*) FROM approval_requests WHERE status = 'pending' AND expires_at > ?",
                       (now,)).fetchone()
    return int(row[0])


def decisions_since(conn: sqlite3.Connection, since: float) -> list[tuple[float, float]]:
    """(decided at, seconds waited) of every approval or rejection made after `since`, oldest first."""
    rows = conn.execute("SELECT decided_at, decided_at - created_at FROM approval_requests WHERE decided_at > ?"
                        " ORDER BY decided_at", (since,)).fetchall()
    return [(float(row[0]), float(row[1])) for row in rows]


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
