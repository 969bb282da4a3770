"""The MCP server's security metrics over real streamable HTTP: refusals, approvals, the audit writer and chain."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from fastmcp.exceptions import ToolError

from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import ApprovalStore, decide_and_record
from services.mcp_server.metrics import DENIAL_REASONS
from tests.support.metrics import documented_names, exposed_names, metric, sample
from tests.unit.mcp.security_support import LiveServer, live_server, make_settings


def scrape(server: LiveServer) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


def until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def call(server: LiveServer, key: str | None, tool: str, args: dict) -> None:
    async with server.client(key) as client:
        await client.call_tool(tool, args)


async def refused(server: LiveServer, key: str | None, tool: str, args: dict) -> str:
    with pytest.raises(ToolError) as err:
        await call(server, key, tool, args)
    return str(err.value)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("mcp-metrics")
    # run_command: one call per user, then the rate limit (checked before RBAC and approvals)
    settings = make_settings(tmp, RATE_LIMIT_TOOLS='{"run_command": [0.001, 1]}', AUDIT_VERIFY_INTERVAL="0.2")
    with live_server(settings) as server:
        with closing(db.connect(settings.security_db_path())) as conn:
            keys = {"alice": db.create_user(conn, "alice", "developer"), "bob": db.create_user(conn, "bob", "admin")}
        yield server, keys


async def test_refusals_are_counted_by_reason_and_rate_limits_by_tool(served: tuple[LiveServer, dict]) -> None:
    server, keys = served
    page = scrape(server)
    for reason in DENIAL_REASONS:
        assert sample(page, "mcp_denials_total", reason=reason) == 0
    assert sample(page, "mcp_rate_limited_total", tool="read_file") == 0
    assert "guest" in await refused(server, None, "write_file", {"path": "x", "content": "y"})  # anonymous: guest
    await refused(server, keys["alice"], "run_command", {"command": "ls"})  # waits for approval: not a denial
    assert "rate limit" in await refused(server, keys["alice"], "run_command", {"command": "ls"})
    page = scrape(server)
    assert sample(page, "mcp_denials_total", reason="permission") == 1
    assert sample(page, "mcp_rate_limited_total", tool="run_command") == 1
    assert sum(sample(page, "mcp_denials_total", reason=r) for r in DENIAL_REASONS) == 1
    assert sample(page, "mcp_tool_calls_total", tool="run_command", status="pending") == 1
    assert sample(page, "mcp_tool_calls_total", tool="run_command", status="denied") == 1


async def test_pending_approvals_and_the_wait_for_a_decision(served: tuple[LiveServer, dict]) -> None:
    server, keys = served
    waited_before = metric(scrape(server), "mcp_approval_wait_seconds_count")
    asked = await refused(server, keys["alice"], "execute_python", {"code": "print(1)"})  # CRITICAL: approval
    assert "approval_required" in asked
    store = ApprovalStore(Path(server.app.state.security.db_path))
    try:
        open_requests = store.find(states=("pending",))
        assert metric(scrape(server), "mcp_approvals_pending") == len(open_requests) >= 1
        request = next(r for r in open_requests if r.tool == "execute_python")
        await asyncio.sleep(0.3)
        decide_and_record(store, request.id, "bob", approve=False, reason="not now")  # as `ai-approvals` does
    finally:
        store.close()
    page = scrape(server)
    assert metric(page, "mcp_approvals_pending") == len(open_requests) - 1
    assert metric(page, "mcp_approval_wait_seconds_count") == waited_before + 1
    assert metric(page, "mcp_approval_wait_seconds_sum") >= 0.3
    assert metric(scrape(server), "mcp_approval_wait_seconds_count") == waited_before + 1  # each decision once


async def test_audit_rows_waiting_for_the_disk_show_as_depth_and_lag(served: tuple[LiveServer, dict]) -> None:
    server, keys = served
    audit = server.app.state.security.audit
    until(lambda: metric(scrape(server), "mcp_audit_queue_depth") == 0, "the audit queue to empty")
    assert metric(scrape(server), "mcp_audit_write_lag_seconds") == 0
    audit._writing.acquire()  # the disk stalls: the writer thread cannot take its turn
    try:
        await call(server, keys["alice"], "read_file", {"path": "a"})  # its row is not waited for
        await call(server, keys["alice"], "read_file", {"path": "b"})
        await asyncio.sleep(0.3)
        page = scrape(server)
        assert metric(page, "mcp_audit_queue_depth") == 2
        assert metric(page, "mcp_audit_write_lag_seconds") >= 0.3
    finally:
        audit._writing.release()
    until(lambda: metric(scrape(server), "mcp_audit_queue_depth") == 0, "the rows to be written")
    assert metric(scrape(server), "mcp_audit_write_lag_seconds") == 0


async def test_the_audit_chain_is_verified_at_start_and_again_while_running(
    served: tuple[LiveServer, dict],
) -> None:
    server, keys = served
    await call(server, keys["alice"], "read_file", {"path": "c"})
    until(lambda: metric(scrape(server), "mcp_audit_queue_depth") == 0, "the row to be written")
    until(lambda: "mcp_audit_last_verification_ok" in scrape(server), "the first verification")
    page = scrape(server)
    assert metric(page, "mcp_audit_last_verification_ok") == 1
    first = metric(page, "mcp_audit_last_verification_timestamp_seconds")
    assert exposed_names(page) == documented_names("MCP server")
    assert abs(first - time.time()) < 60
    until(lambda: metric(scrape(server), "mcp_audit_last_verification_timestamp_seconds") > first,
          "a later verification (AUDIT_VERIFY_INTERVAL=0.2)")
    # someone with write access to the database edits a row
    with closing(sqlite3.connect(server.app.state.security.db_path)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("UPDATE audit_log SET detail = 'nothing to see' WHERE id = (SELECT min(id) FROM audit_log)")
        conn.commit()
    until(lambda: metric(scrape(server), "mcp_audit_last_verification_ok") == 0, "the broken chain to be seen")
