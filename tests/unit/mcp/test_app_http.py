"""The HTTP server end to end: two identities over real streamable HTTP, approvals via `ai-approvals`, and audit."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from fastmcp.exceptions import ToolError
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from services.mcp_server import approvals_cli
from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import ApprovalStore, decide_and_record
from services.mcp_server.gate.audit import verify
from tests.unit.mcp.security_support import RAN, LiveServer, live_server, make_settings


@dataclass
class Suite:
    server: LiveServer
    db_path: Path
    keys: dict[str, str]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("http")
    settings = make_settings(tmp)
    with live_server(settings) as server:
        path = settings.security_db_path()
        conn = db.connect(path)
        keys = {"owner": settings.owner_key_path().read_text().strip(),
                "alice": db.create_user(conn, "alice", "developer"), "admin": db.issue_key(conn, "admin")}
        conn.close()
        yield Suite(server, path, keys)


@pytest.fixture
def cli_env(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ai-approvals` reads the same database through the environment, as on the command line."""
    monkeypatch.setenv("SECURITY_DB_PATH", str(suite.db_path))
    monkeypatch.setenv("DATA_DIR", str(suite.db_path.parent.parent))


async def call(suite: Suite, user: str | None, tool: str, args: dict[str, Any]) -> Any:
    async with suite.server.client(suite.keys[user] if user else None) as client:
        return (await client.call_tool(tool, args)).data


async def needs_approval(suite: Suite, user: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ToolError) as err:
        await call(suite, user, tool, args)
    body: dict[str, Any] = json.loads(str(err.value))
    assert body["approval_required"] is True and body["status"] == "pending"
    return body


def status(suite: Suite, request_id: str, user: str | None = "owner") -> httpx.Response:
    headers = {"Authorization": f"Bearer {suite.keys[user]}"} if user else {}
    return httpx.get(f"{suite.server.url}/api/approvals/{request_id}/status", headers=headers, timeout=10)


def ran(command: str) -> int:
    return sum(1 for tool, args in RAN if tool == "run_command" and args["command"] == command)


def expire(db_path: Path, request_id: str) -> None:
    """Let time pass for one request without sleeping."""
    conn = sqlite3.connect(db_path)
    # Every stamp moves back: a pending request runs out by expires_at, an approval by its decision's age.
    gone = time.time() + 86400 * 365
    conn.execute("UPDATE approval_requests SET created_at = created_at - ?, expires_at = expires_at - ?,"
                 " decided_at = decided_at - ? WHERE id = ?", (gone, gone, gone, request_id))
    conn.commit()
    conn.close()


async def test_health_and_metrics(suite: Suite) -> None:
    await call(suite, "owner", "read_file", {"path": "m"})
    health = httpx.get(f"{suite.server.url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["dependencies"] == {"security_db": "ok", "audit": "ok"}
    metrics = httpx.get(f"{suite.server.url}/metrics", timeout=10).text
    assert 'mcp_tool_calls_total{status="allowed",tool="read_file"}' in metrics
    layer = suite.server.app.state.security
    layer.audit.last_error = "disk full"  # what the writer records when a batch cannot be committed
    try:
        failing = httpx.get(f"{suite.server.url}/health", timeout=10)
    finally:
        layer.audit.last_error = None
    assert failing.status_code == 503 and "disk full" in failing.json()["dependencies"]["audit"]


def last_audit_row(suite: Suite) -> tuple[str, str, str]:
    with closing(sqlite3.connect(suite.db_path)) as conn:
        return conn.execute("SELECT tool, status, args FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()


async def test_a_call_that_changes_something_is_answered_after_its_audit_row_is_committed(suite: Suite) -> None:
    await call(suite, "owner", "write_file", {"path": "durable.txt", "content": "x"})
    tool, status_, args = last_audit_row(suite)  # read at once: no flush, no wait
    assert (tool, status_) == ("write_file", "allowed") and "durable.txt" in args


async def test_calls_that_change_something_are_refused_while_the_audit_log_fails(suite: Suite) -> None:
    audit = suite.server.app.state.security.audit
    writes = sum(1 for tool, _ in RAN if tool == "write_file")
    audit.last_error = "disk full"
    try:
        with pytest.raises(ToolError, match="audit log cannot be written"):
            await call(suite, "owner", "write_file", {"path": "refused.txt", "content": "x"})
    finally:
        deadline = time.monotonic() + 5
        while audit.last_error is not None and time.monotonic() < deadline:  # the refusal's own row heals it
            time.sleep(0.01)
    assert sum(1 for tool, _ in RAN if tool == "write_file") == writes
    assert audit.last_error is None
    assert await call(suite, "owner", "write_file", {"path": "after.txt", "content": "x"}) == "wrote 1 chars"


async def test_approve_then_run_once_then_replay_needs_new_approval(
    suite: Suite, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"command": "make deploy"}
    body = await needs_approval(suite, "owner", "run_command", args)
    request_id = body["request_id"]
    assert status(suite, request_id).json()["status"] == "pending"
    assert approvals_cli.main(["--list"]) == 0
    assert request_id in capsys.readouterr().out
    assert approvals_cli.main(["--approve", request_id, "--as", "owner"]) == 1  # the requester cannot approve
    assert "cannot decide" in capsys.readouterr().out
    assert approvals_cli.main(["--approve", request_id]) == 0
    polled = status(suite, request_id).json()
    assert polled["status"] == "approved" and polled["decided_by"] == "admin"
    assert await call(suite, "alice", "read_file", {"path": "x"}) == "contents of x"
    await needs_approval(suite, "alice", "run_command", args)  # the approval is owner's alone
    assert await call(suite, "owner", "run_command", args) == "ran make deploy"
    assert ran("make deploy") == 1
    assert status(suite, request_id).json()["status"] == "used"
    replay = await needs_approval(suite, "owner", "run_command", args)
    assert replay["request_id"] != request_id
    assert ran("make deploy") == 1
    assert approvals_cli.main(["--approve", request_id]) == 1
    assert "already used" in capsys.readouterr().out


async def test_reject_never_runs(suite: Suite, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"command": "rm -rf /tmp/x"}
    request_id = (await needs_approval(suite, "owner", "run_command", args))["request_id"]
    assert approvals_cli.main(["--reject", request_id, "not", "today"]) == 0
    polled = status(suite, request_id).json()
    assert polled["status"] == "rejected" and polled["reason"] == "not today"
    retry = await needs_approval(suite, "owner", "run_command", args)
    assert retry["request_id"] != request_id
    assert ran("rm -rf /tmp/x") == 0


async def test_expired_requests_never_run(suite: Suite, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"command": "late pending"}
    request_id = (await needs_approval(suite, "owner", "run_command", args))["request_id"]
    expire(suite.db_path, request_id)
    assert status(suite, request_id).json()["status"] == "expired"
    assert approvals_cli.main(["--approve", request_id]) == 1
    assert "expired" in capsys.readouterr().out
    assert (await needs_approval(suite, "owner", "run_command", args))["request_id"] != request_id

    args = {"command": "late approved"}
    request_id = (await needs_approval(suite, "owner", "run_command", args))["request_id"]
    assert approvals_cli.main(["--approve", request_id]) == 0
    expire(suite.db_path, request_id)
    await needs_approval(suite, "owner", "run_command", args)
    assert ran("late pending") == 0 and ran("late approved") == 0


async def test_status_is_for_the_requester_and_approvers(suite: Suite) -> None:
    request_id = (await needs_approval(suite, "owner", "run_command", {"command": "private"}))["request_id"]
    assert status(suite, request_id, "owner").status_code == 200
    assert status(suite, request_id, "admin").status_code == 200
    assert status(suite, request_id, "alice").status_code == 403
    assert status(suite, request_id, None).status_code == 403  # anonymous on loopback is a separate user
    assert status(suite, "nope", "owner").status_code == 404
    bad = httpx.get(f"{suite.server.url}/api/approvals/{request_id}/status",
                    headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert bad.status_code == 401
    mine = httpx.get(f"{suite.server.url}/api/approvals", timeout=10,
                     headers={"Authorization": f"Bearer {suite.keys['owner']}"}).json()
    assert request_id in {r["request_id"] for r in mine["requests"]}
    assert all(r["user"] == "owner" for r in mine["requests"])
    everyone = f"{suite.server.url}/api/approvals?everyone=true"
    as_alice = {"Authorization": f"Bearer {suite.keys['alice']}"}
    assert httpx.get(everyone, headers=as_alice, timeout=10).status_code == 403
    listed = httpx.get(everyone, headers={"Authorization": f"Bearer {suite.keys['admin']}"}, timeout=10).json()
    assert request_id in {r["request_id"] for r in listed["requests"]}


async def test_official_client_identity_and_anonymous_guest(suite: Suite) -> None:
    headers = {"Authorization": f"Bearer {suite.keys['alice']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(f"{suite.server.url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("read_file", {"path": "official"})
                assert not result.is_error
    with pytest.raises(ToolError, match="role 'guest' lacks permission 'tool:write_file'"):
        await call(suite, None, "write_file", {"path": "a", "content": "b"})
    wrong = httpx.post(f"{suite.server.url}/mcp", json={}, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401


async def test_off_loopback_refuses_anonymous_callers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, BIND_HOST="0.0.0.0", API_KEY="unused")
    with live_server(settings) as server:
        anonymous = httpx.post(f"{server.url}/mcp", json={}, timeout=10)
        assert anonymous.status_code == 401
        assert "authentication required" in anonymous.json()["error"]["message"]
        async with server.client(settings.owner_key_path().read_text().strip()) as client:
            assert (await client.call_tool("read_file", {"path": "k"})).data == "contents of k"


async def test_mixed_run_has_one_audit_row_per_call_and_verifies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, RATE_LIMIT_TOOLS='{"write_file": [0.001, 1]}')
    expected: list[tuple[str, str, str]] = []
    with live_server(settings) as server:
        conn = db.connect(settings.security_db_path())
        keys = {"owner": settings.owner_key_path().read_text().strip(), "admin": db.issue_key(conn, "admin")}
        conn.close()
        suite = Suite(server, settings.security_db_path(), keys)
        for i in range(5):
            await call(suite, "owner", "read_file", {"path": f"f{i}"})
            expected.append(("owner", "read_file", "allowed"))
        await call(suite, "owner", "write_file", {"path": "w", "content": "secret body"})
        with pytest.raises(ToolError, match="rate limit"):
            await call(suite, "owner", "write_file", {"path": "w", "content": "again"})
        with pytest.raises(ToolError, match="lacks permission"):
            await call(suite, None, "write_file", {"path": "w", "content": "x"})
        expected += [("owner", "write_file", "allowed"), ("owner", "write_file", "denied"),
                     ("anonymous", "write_file", "denied")]
        request_id = (await needs_approval(suite, "owner", "run_command", {"command": "mixed"}))["request_id"]
        decide_and_record(ApprovalStore(suite.db_path, 60), request_id, "admin", True)
        await call(suite, "owner", "run_command", {"command": "mixed"})
        with pytest.raises(ToolError, match="boom"):
            await call(suite, "admin", "execute_python", {"code": "raise"})
        expected += [("owner", "run_command", "pending"), ("admin", "run_command", "approved"),
                     ("owner", "run_command", "allowed"), ("admin", "execute_python", "error")]
        refused = (await needs_approval(suite, "owner", "run_command", {"command": "nope"}))["request_id"]
        decide_and_record(ApprovalStore(suite.db_path, 60), refused, "admin", False, "no")
        with pytest.raises(ToolError, match="approval_required"):
            await call(suite, "owner", "run_command", {"command": "nope"})  # a rejected request never runs
        expected += [("owner", "run_command", "pending"), ("admin", "run_command", "rejected"),
                     ("owner", "run_command", "pending")]
    rows = sqlite3.connect(suite.db_path).execute("SELECT user_name, tool, status, args FROM audit_log").fetchall()
    # The decision row is written by the approver at once; call rows arrive through the queue, so compare as sets.
    assert sorted(r[:3] for r in rows) == sorted(expected)
    assert all("secret body" not in r[3] for r in rows)
    assert verify(suite.db_path).ok
