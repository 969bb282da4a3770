"""RBAC: the seeded matrix over every role and catalog tool, enforced by the middleware, and cache refresh."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.catalog import TOOLS, Risk
from services.mcp_server.gate import db
from services.mcp_server.gate.rbac import AuthCache
from services.mcp_server.server import build_server
from services.mcp_server.settings import McpSettings
from tests.unit.mcp.security_support import make_settings

ROLES = ("guest", "developer", "admin")
GUEST_TOOLS = {"list_files", "read_file", "search_files", "get_system_info", "git_status", "git_diff", "git_log",
               "notion_search", "rag_query"}


def expected(role: str, tool: str) -> bool:
    return role != "guest" or tool in GUEST_TOOLS


def every_catalog_tool(mcp: FastMCP, settings: McpSettings) -> None:
    """A stub for every catalog name, so the matrix runs through the real middleware."""
    for name in TOOLS:
        def stub(name: str = name) -> str:
            return f"ran {name}"

        mcp.tool(stub, name=name, description=f"stub of {name}")


@pytest.fixture(scope="module")
def matrix_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return db.initialize(make_settings(tmp_path_factory.mktemp("rbac")))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_seeded_matrix(matrix_db: Path, role: str, tool: str) -> None:
    cache = AuthCache(matrix_db)
    assert cache.may_call(role, tool) is expected(role, tool)
    cache.close()


def test_guest_tools_are_exactly_the_read_only_low_ones() -> None:
    assert GUEST_TOOLS == {n for n, s in TOOLS.items() if s.read_only and s.risk == Risk.LOW}


def test_only_admin_bypasses_and_decides(matrix_db: Path) -> None:
    cache = AuthCache(matrix_db)
    assert [r for r in ROLES if cache.has(r, db.PERM_BYPASS)] == ["admin"]
    assert [r for r in ROLES if cache.has(r, db.PERM_DECIDE)] == ["admin"]
    cache.close()


@pytest.mark.parametrize("role", ROLES)
async def test_middleware_enforces_the_matrix(tmp_path: Path, role: str) -> None:
    """Every tool called as each role (the local owner takes MCP_OWNER_ROLE): allowed runs, denied names the gap."""
    settings = make_settings(tmp_path, MCP_OWNER_ROLE=role, APPROVAL_WORKFLOW_ENABLED=False)
    mcp, layer = build_server(settings, [every_catalog_tool])
    async with Client(mcp) as client:
        for tool in TOOLS:
            if expected(role, tool):
                assert (await client.call_tool(tool, {})).data == f"ran {tool}"
            else:
                with pytest.raises(ToolError) as err:
                    await client.call_tool(tool, {})
                assert str(err.value) == f"role 'guest' lacks permission 'tool:{tool}'"
    rows = sqlite3.connect(layer.db_path).execute("SELECT tool, status, role FROM audit_log").fetchall()
    assert sorted(rows) == sorted((t, "allowed" if expected(role, t) else "denied", role) for t in TOOLS)


async def test_approval_applies_to_high_and_critical_only(tmp_path: Path) -> None:
    # git_commit's approval is bound to the staged tree, so the root must be a repository for the rule to read.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    mcp, _ = build_server(make_settings(tmp_path), [every_catalog_tool])
    async with Client(mcp) as client:
        for tool, spec in TOOLS.items():
            if spec.risk < Risk.HIGH:
                assert (await client.call_tool(tool, {})).data == f"ran {tool}"
                continue
            with pytest.raises(ToolError) as err:
                await client.call_tool(tool, {})
            body: dict[str, Any] = json.loads(str(err.value))
            assert body["approval_required"] is True and body["status"] == "pending"
            assert set(body) == {"approval_required", "request_id", "expires_at", "status", "message"}


async def test_admin_owner_skips_approval(tmp_path: Path) -> None:
    mcp, _ = build_server(make_settings(tmp_path, MCP_OWNER_ROLE="admin"), [every_catalog_tool])
    async with Client(mcp) as client:
        assert (await client.call_tool("execute_python", {})).data == "ran execute_python"


async def test_rbac_switched_off_lets_guest_write(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MCP_OWNER_ROLE="guest", RBAC_ENABLED=False)
    mcp, _ = build_server(settings, [every_catalog_tool])
    async with Client(mcp) as client:
        assert (await client.call_tool("write_file", {})).data == "ran write_file"


def test_cache_sees_grants_revocations_and_new_keys(matrix_db: Path) -> None:
    cache = AuthCache(matrix_db)
    conn = db.connect(matrix_db)
    conn.execute("DELETE FROM role_permissions WHERE role = 'developer' AND permission = 'tool:git_commit'")
    cache.refresh(force=True)
    assert not cache.may_call("developer", "git_commit")
    conn.execute("INSERT INTO role_permissions VALUES ('developer', 'tool:git_commit')")
    key = db.create_user(conn, "carol", "guest")
    # An unknown key forces a reload at once: a key made a moment ago by `ai-suite mcp user add` works.
    principal = cache.principal_for(db.hash_key(key))
    assert principal is not None and (principal.user, principal.role) == ("carol", "guest")
    assert cache.may_call("developer", "git_commit")
    conn.execute("UPDATE api_keys SET revoked = 1 WHERE user_name = 'carol'")
    cache.refresh(force=True)
    assert cache.principal_for(db.hash_key(key)) is None
    conn.close()
    cache.close()


def test_seed_is_idempotent_and_keeps_revoked_grants(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = db.initialize(settings)
    conn = db.connect(path)
    conn.execute("DELETE FROM role_permissions WHERE role = 'developer' AND permission = 'tool:write_file'")
    key = settings.owner_key_path().read_text().strip()
    db.initialize(make_settings(tmp_path, MCP_OWNER_ROLE="admin"))
    assert not db.role_has(conn, "developer", "tool:write_file")
    assert db.user_role(conn, "owner") == "admin"  # MCP_OWNER_ROLE stays authoritative
    assert conn.execute("SELECT COUNT(*) FROM api_keys WHERE key_hash = ?", (db.hash_key(key),)).fetchone()[0] == 1
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] >= 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_owner_key_file_is_private_and_only_hashed_in_the_db(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = db.initialize(settings)
    key_file = settings.owner_key_path()
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    for stored in path.parent.iterdir():
        if stored != key_file:
            assert key.encode() not in stored.read_bytes(), stored


def test_unknown_owner_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(db.SecurityDbError, match="unknown role"):
        db.initialize(make_settings(tmp_path, MCP_OWNER_ROLE="superuser"))


def test_two_migrations_with_one_number_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two branches that each add migration 0002 must not merge into a database that silently skips one."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in sorted(db.MIGRATIONS.glob("*.sql")):
        (folder / path.name).write_text(path.read_text())
    (folder / "0002_from_another_branch.sql").write_text("CREATE TABLE other (id INTEGER);\n")
    monkeypatch.setattr(db, "MIGRATIONS", folder)
    with pytest.raises(db.SecurityDbError, match="share a number"):
        db.initialize(make_settings(tmp_path / "data"))


def test_a_session_owner_token_is_read_by_fastmcp_without_conversion() -> None:
    """FastMCP reads the caller's token several times per tool call (telemetry, component auth, sessions); a
    token of its own type is used as it is, where an SDK token would be dumped and rebuilt on every read."""
    from fastmcp.server.auth import AccessToken

    from services.mcp_server.gate.http import session_owner
    from services.mcp_server.gate.rbac import Identity

    owner = session_owner(Identity("alice", "developer"), "aik_secret")
    assert owner is not None and isinstance(owner.access_token, AccessToken)
    assert owner.access_token.client_id == "alice" and owner.access_token.subject == db.hash_key("aik_secret")
    assert session_owner(Identity("anonymous", "guest"), None) is None
