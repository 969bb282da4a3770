"""Approval requests: pending, decided by another approver, consumed once; expired and rejected never run."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from services.mcp_server import approvals_cli
from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import (
    AlreadyDecided,
    ApprovalStore,
    NotApprover,
    RequestExpired,
    SelfApproval,
    UnknownRequest,
    args_digest,
    decide_and_record,
)
from services.mcp_server.gate.audit import verify
from tests.unit.mcp.security_support import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = db.initialize(make_settings(tmp_path, APPROVAL_TIMEOUT=60))
    conn = db.connect(path)
    db.create_user(conn, "alice", "developer")
    db.create_user(conn, "root2", "admin")
    conn.close()
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_path: Path, clock: Clock) -> ApprovalStore:
    return ApprovalStore(db_path, 60, clock=clock)


ARGS = {"command": "rm -rf build", "working_dir": "/tmp"}


def test_digest_ignores_key_order_but_not_values() -> None:
    assert args_digest("run_command", {"a": 1, "b": 2}) == args_digest("run_command", {"b": 2, "a": 1})
    assert args_digest("run_command", {"a": 1}) != args_digest("run_command", {"a": 2})
    assert args_digest("run_command", {"a": 1}) != args_digest("git_commit", {"a": 1})


def test_first_call_creates_one_pending_request(store: ApprovalStore, clock: Clock) -> None:
    gate = store.gate("owner", "run_command", ARGS)
    assert not gate.run and gate.request.status == "pending"
    assert gate.request.expires_at == clock.now + 60
    again = store.gate("owner", "run_command", dict(reversed(ARGS.items())))
    assert again.request.id == gate.request.id  # a retry before the decision does not pile up requests
    other = store.gate("owner", "run_command", {"command": "ls"})
    assert other.request.id != gate.request.id


def test_approved_request_runs_exactly_once(store: ApprovalStore) -> None:
    pending = store.gate("owner", "run_command", ARGS).request
    decided = store.decide(pending.id, "admin", approve=True)
    assert decided.status == "approved" and decided.decided_by == "admin"
    assert store.gate("owner", "run_command", {"command": "ls"}).run is False  # other arguments: not covered
    assert store.gate("alice", "run_command", ARGS).run is False  # another user: not covered
    first = store.gate("owner", "run_command", ARGS)
    assert first.run and first.request.id == pending.id and first.request.status == "used"
    replay = store.gate("owner", "run_command", ARGS)
    assert not replay.run and replay.request.id != pending.id and replay.request.status == "pending"
    assert store.get(pending.id).state() == "used"  # type: ignore[union-attr]


def test_concurrent_retries_consume_once(db_path: Path) -> None:
    store = ApprovalStore(db_path, 60)
    pending = store.gate("owner", "run_command", ARGS).request
    store.decide(pending.id, "admin", approve=True)
    stores = [ApprovalStore(db_path, 60) for _ in range(8)]
    runs: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def retry(s: ApprovalStore) -> None:
        barrier.wait()
        runs.append(s.gate("owner", "run_command", ARGS).run)

    threads = [threading.Thread(target=retry, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs.count(True) == 1


def test_rejected_request_never_runs(store: ApprovalStore) -> None:
    pending = store.gate("owner", "run_command", ARGS).request
    rejected = store.decide(pending.id, "admin", approve=False, reason="too broad")
    assert rejected.status == "rejected" and rejected.reason == "too broad"
    retry = store.gate("owner", "run_command", ARGS)
    assert not retry.run and retry.request.id != pending.id
    assert store.get(pending.id).state() == "rejected"  # type: ignore[union-attr]


def test_expired_pending_cannot_be_approved(store: ApprovalStore, clock: Clock) -> None:
    pending = store.gate("owner", "run_command", ARGS).request
    clock.now += 61
    assert store.get(pending.id).state(clock.now) == "expired"  # type: ignore[union-attr]
    with pytest.raises(RequestExpired):
        store.decide(pending.id, "admin", approve=True)
    assert store.gate("owner", "run_command", ARGS).request.id != pending.id


def test_expired_approval_never_runs(store: ApprovalStore, clock: Clock) -> None:
    pending = store.gate("owner", "run_command", ARGS).request
    clock.now += 30
    approved = store.decide(pending.id, "admin", approve=True)
    assert approved.expires_at == clock.now + 60  # the approval gets its own full window
    clock.now += 61
    late = store.gate("owner", "run_command", ARGS)
    assert not late.run
    assert store.get(pending.id).state(clock.now) == "expired"  # type: ignore[union-attr]


def test_decision_rules(store: ApprovalStore) -> None:
    mine = store.gate("admin", "run_command", ARGS).request
    with pytest.raises(SelfApproval, match="cannot decide"):
        store.decide(mine.id, "admin", approve=True)
    assert store.decide(mine.id, "root2", approve=True).status == "approved"
    pending = store.gate("owner", "execute_python", {"code": "1"}).request
    with pytest.raises(NotApprover):
        store.decide(pending.id, "alice", approve=True)  # developers may not approve
    with pytest.raises(NotApprover):
        store.decide(pending.id, "nobody", approve=True)
    with pytest.raises(UnknownRequest):
        store.decide("no-such-id", "admin", approve=True)
    store.decide(pending.id, "admin", approve=False)
    with pytest.raises(AlreadyDecided, match="already rejected"):
        store.decide(pending.id, "admin", approve=True)


def test_decisions_are_audited(db_path: Path, store: ApprovalStore) -> None:
    pending = store.gate("owner", "run_command", ARGS).request
    with pytest.raises(SelfApproval):
        decide_and_record(store, pending.id, "owner", True)
    decide_and_record(store, pending.id, "admin", True)
    rows = sqlite3.connect(db_path).execute(
        "SELECT user_name, tool, status, request_id FROM audit_log ORDER BY id").fetchall()
    assert rows == [("owner", "run_command", "denied", pending.id), ("admin", "run_command", "approved", pending.id)]
    assert verify(db_path).ok


def test_listing_filters_by_user_and_state(store: ApprovalStore, clock: Clock) -> None:
    a = store.gate("owner", "run_command", {"command": "a"}).request
    store.gate("alice", "run_command", {"command": "b"})
    store.decide(a.id, "admin", approve=False)
    assert [r.user_name for r in store.find(states=("pending",))] == ["alice"]
    assert {r.id for r in store.find(user="owner")} == {a.id}
    clock.now += 100
    assert store.find(states=("pending",)) == []
    assert len(store.find(states=("expired",))) == 1


@pytest.mark.parametrize(("cli_timeout", "server_timeout", "after", "runs"), [
    ("86400", 60, 61, False),  # a generous shell cannot stretch the server's window
    ("1", 60, 30, True),  # nor can a stingy one cut it short
])
def test_the_server_window_decides_how_long_an_approval_lives_not_the_approvers_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_timeout: str, server_timeout: int, after: int, runs: bool,
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECURITY_DB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    path = db.initialize(make_settings(tmp_path))
    clock = Clock()
    clock.now = time.time()
    server = ApprovalStore(path, server_timeout, clock=clock)
    pending = server.gate("owner", "run_command", ARGS).request
    monkeypatch.setenv("APPROVAL_TIMEOUT", cli_timeout)  # the environment `ai-approvals` happens to run in
    assert approvals_cli.main(["--approve", pending.id]) == 0
    clock.now += after
    assert server.gate("owner", "run_command", ARGS).run is runs


def test_the_window_is_the_one_the_server_has_when_the_approval_is_used(db_path: Path, clock: Clock) -> None:
    pending = ApprovalStore(db_path, 60, clock=clock).gate("owner", "run_command", ARGS).request
    ApprovalStore(db_path, 60, clock=clock).decide(pending.id, "admin", approve=True)
    clock.now += 120
    restarted = ApprovalStore(db_path, 600, clock=clock)  # the server came back with APPROVAL_TIMEOUT=600
    assert restarted.get(pending.id).state(clock.now) == "approved"  # type: ignore[union-attr]
    assert restarted.gate("owner", "run_command", ARGS).run is True
