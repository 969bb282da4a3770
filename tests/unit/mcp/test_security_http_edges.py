"""HTTP edges of the MCP server: credential schemes, who may end a session, and who may read /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from services.mcp_server.gate import db
from tests.unit.mcp.security_support import LiveServer, live_server, make_settings

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "edge-test", "version": "1"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    settings = make_settings(tmp_path_factory.mktemp("edges"))
    with live_server(settings) as running:
        with closing(db.connect(settings.security_db_path())) as conn:
            keys = {"owner": settings.owner_key_path().read_text().strip(),
                    "mallory": db.create_user(conn, "mallory", "developer"),
                    "owner-laptop": db.issue_key(conn, "owner")}
        yield running, keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def open_session(base: str, headers: dict[str, str]) -> str:
    """Initialize an MCP session over plain HTTP; returns its id."""
    opened = httpx.post(f"{base}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=10)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    done = httpx.post(f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers={**MCP_HEADERS, **headers, "mcp-session-id": session}, timeout=10)
    assert done.status_code == 202, done.text
    return session


def list_tools(base: str, headers: dict[str, str], session: str) -> httpx.Response:
    return httpx.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                      headers={**MCP_HEADERS, **headers, "mcp-session-id": session}, timeout=10)


@pytest.mark.parametrize("header", ["Basic b3duZXI6cGFzcw==", "Token abc", "Digest username=owner", "Bearer",
                                    "Negotiate", "aik_a-key-without-a-scheme"])
def test_an_authorization_header_of_any_other_scheme_is_refused(
    server: tuple[LiveServer, dict[str, str]], header: str
) -> None:
    running, _ = server
    answer = httpx.post(f"{running.url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": header},
                        timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    listed = httpx.get(f"{running.url}/api/approvals", headers={"Authorization": header}, timeout=10)
    assert listed.status_code == 401


def test_only_its_own_caller_can_end_a_session(server: tuple[LiveServer, dict[str, str]]) -> None:
    running, keys = server
    session = open_session(running.url, bearer(keys["owner"]))
    # another user, no key, another header, and even the same user's other key: a session is its key's
    for other in (bearer(keys["mallory"]), {}, {"X-API-Key": keys["mallory"]}, bearer(keys["owner-laptop"])):
        ended = httpx.delete(f"{running.url}/mcp", headers={**other, "mcp-session-id": session}, timeout=10)
        assert ended.status_code == 404, other
        assert list_tools(running.url, other, session).status_code == 404  # nor use it
    assert list_tools(running.url, bearer(keys["owner"]), session).status_code == 200
    ended = httpx.delete(f"{running.url}/mcp", headers={**bearer(keys["owner"]), "mcp-session-id": session},
                         timeout=10)
    assert ended.status_code == 200
    assert list_tools(running.url, bearer(keys["owner"]), session).status_code == 404


def test_a_session_of_a_keyless_caller_is_not_open_to_a_keyed_one(server: tuple[LiveServer, dict[str, str]]) -> None:
    running, keys = server
    session = open_session(running.url, {})
    ended = httpx.delete(f"{running.url}/mcp", headers={**bearer(keys["mallory"]), "mcp-session-id": session},
                         timeout=10)
    assert ended.status_code == 404
    assert list_tools(running.url, {}, session).status_code == 200


def test_metrics_are_keyless_on_loopback(server: tuple[LiveServer, dict[str, str]]) -> None:
    running, _ = server
    assert httpx.get(f"{running.url}/metrics", timeout=10).status_code == 200


def test_metrics_need_a_key_off_loopback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, BIND_HOST="0.0.0.0", API_KEY="unused")
    with live_server(settings) as running:
        owner = settings.owner_key_path().read_text().strip()
        keyless = httpx.get(f"{running.url}/metrics", timeout=10)
        assert keyless.status_code == 401
        assert "mcp_tool" not in keyless.text
        assert httpx.get(f"{running.url}/metrics", headers=bearer("aik_wrong"), timeout=10).status_code == 401
        keyed = httpx.get(f"{running.url}/metrics", headers=bearer(owner), timeout=10)
        assert keyed.status_code == 200 and "mcp_tool_calls_total" in keyed.text
        assert httpx.get(f"{running.url}/health", timeout=10).status_code == 200  # probes stay keyless
