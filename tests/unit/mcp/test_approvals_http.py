"""Deciding approval requests over HTTP (the chat app's Approvals page): origin, role, self-approval, audit."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import ApprovalStore
from services.mcp_server.gate.audit_verify import verify
from services.web.app import create_app as web_app
from tests.support.asgi import in_process
from tests.support.web import web_settings
from tests.unit.mcp.security_support import LiveServer, live_server, make_settings

APP = "http://127.0.0.1:3000"


@dataclass
class Approvals:
    server: LiveServer
    db_path: Path
    keys: dict[str, str]

    def pending(self, user: str, command: str) -> str:
        """A request of `user`'s as the gate makes it when a call needs approval."""
        store = ApprovalStore(self.db_path, 60)
        try:
            gate = store.gate(user, "run_command", {"command": command})
        finally:
            store.close()
        assert not gate.run
        return gate.request.id

    def decide(self, request_id: str, decision: str, user: str | None = "admin", origin: str | None = APP,
               body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[user]}"} if user else {}
        if origin:
            headers["Origin"] = origin
        return httpx.post(f"{self.server.url}/api/approvals/{request_id}/{decision}", headers=headers,
                          json=body if body is not None else {}, timeout=10)

    def status(self, request_id: str) -> str:
        store = ApprovalStore(self.db_path, 60)
        try:
            found = store.get(request_id)
        finally:
            store.close()
        assert found is not None
        return found.state()

    def audit_rows(self, request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        with closing(sqlite3.connect(self.db_path)) as conn:
            rows = conn.execute("SELECT user_name, status, args FROM audit_log WHERE request_id = ? ORDER BY id",
                                (request_id,)).fetchall()
        return [(user, status, json.loads(args)) for user, status, args in rows]


@pytest.fixture(scope="module")
def approvals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Approvals]:
    tmp = tmp_path_factory.mktemp("approvals")
    settings = make_settings(tmp)
    with live_server(settings) as server:
        path = settings.security_db_path()
        conn = db.connect(path)
        keys = {"owner": settings.owner_key_path().read_text().strip(),
                "alice": db.create_user(conn, "alice", "developer"), "admin": db.issue_key(conn, "admin")}
        conn.close()
        yield Approvals(server, path, keys)


def test_an_approver_approves_from_the_app(approvals: Approvals) -> None:
    request_id = approvals.pending("owner", "make deploy")
    response = approvals.decide(request_id, "approve", body={"reason": "looks fine"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "approved" and body["decided_by"] == "admin" and body["reason"] == "looks fine"
    assert approvals.status(request_id) == "approved"
    assert approvals.audit_rows(request_id) == [
        ("admin", "approved", {"request_id": request_id, "decision": "approve", "reason": "looks fine"})]
    assert verify(approvals.db_path).ok


def test_reject_and_a_second_decision(approvals: Approvals) -> None:
    request_id = approvals.pending("owner", "rm -rf build")
    assert approvals.decide(request_id, "reject", body={"reason": "not today"}).json()["status"] == "rejected"
    again = approvals.decide(request_id, "approve")
    assert again.status_code == 409 and "already rejected" in again.json()["error"]["message"]
    assert approvals.status(request_id) == "rejected"


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:3001", "null", None])
def test_a_decision_from_another_origin_is_refused(approvals: Approvals, origin: str | None) -> None:
    request_id = approvals.pending("owner", f"from {origin}")
    response = approvals.decide(request_id, "approve", origin=origin)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert approvals.status(request_id) == "pending"


def test_approving_ones_own_request_is_refused_and_audited(approvals: Approvals) -> None:
    request_id = approvals.pending("admin", "my own thing")
    response = approvals.decide(request_id, "approve", user="admin")
    assert response.status_code == 403 and response.json()["error"]["code"] == "self_approval"
    assert approvals.status(request_id) == "pending"
    assert [(user, status) for user, status, _ in approvals.audit_rows(request_id)] == [("admin", "denied")]


@pytest.mark.parametrize("user", [None, "alice", "owner"])
def test_users_who_may_not_decide_are_refused(approvals: Approvals, user: str | None) -> None:
    request_id = approvals.pending("alice" if user != "alice" else "owner", f"by {user}")
    response = approvals.decide(request_id, "approve", user=user)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_approver"
    assert approvals.status(request_id) == "pending"


def test_unknown_ids_bad_keys_and_bad_bodies(approvals: Approvals) -> None:
    assert approvals.decide("no-such-request", "approve").status_code == 404
    approvals.keys["wrong"] = "not-a-key"
    assert approvals.decide("no-such-request", "approve", user="wrong").status_code == 401
    request_id = approvals.pending("owner", "bodies")
    assert approvals.decide(request_id, "approve", body={"reason": 5}).status_code == 400
    assert approvals.decide(request_id, "approve", body={"reason": "x" * 1001}).status_code == 400
    assert approvals.decide(request_id, "maybe").status_code == 404
    assert approvals.status(request_id) == "pending"


async def test_through_the_chat_apps_proxy(approvals: Approvals, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    request_id = approvals.pending("owner", "via the app")
    settings = web_settings(tmp_path, "http://127.0.0.1:9", WEB_MCP_URL=approvals.server.url)
    admin = {"Authorization": f"Bearer {approvals.keys['admin']}", "Origin": APP}
    async with in_process(web_app(settings), APP) as web:
        listed = await web.get("/mcp/approvals", headers=admin)
        assert listed.status_code == 200
        assert request_id in {r["request_id"] for r in listed.json()["requests"]}
        assert (await web.get("/mcp/approvals", headers={"Origin": APP})).status_code == 403  # guest
        forged = await web.post(f"/mcp/approvals/{request_id}/approve", json={},
                                headers={**admin, "Origin": "http://evil.example"})
        assert forged.status_code == 403
        decided = await web.post(f"/mcp/approvals/{request_id}/approve", json={"reason": "ok"}, headers=admin)
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
