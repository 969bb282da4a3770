"""Schemathesis over the MCP server's own HTTP routes (health, approvals), with and without a key."""

from __future__ import annotations

from pathlib import Path

from services.mcp_server.gate import db
from tests.support.fuzz import fuzz
from tests.unit.mcp.security_support import live_server, make_settings

ROUTES = {"GET /health", "GET /api/approvals", "GET /api/approvals/{request_id}/status",
          "POST /api/approvals/{request_id}/{decision}"}


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with live_server(settings) as server:
        conn = db.connect(db.initialize(settings))
        try:
            key = db.create_user(conn, "fuzzer", "admin")
        finally:
            conn.close()
        keyed = fuzz(server.url, ROUTES, headers={"Authorization": f"Bearer {key}"})
        keyless = fuzz(server.url, ROUTES, examples=10)
    # with a key the generated ids reach the "no such request" path; without one, guest callers are answered
    assert 200 in keyed and 404 in keyed
    assert 200 in keyless
