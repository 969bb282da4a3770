"""`ai-suite mcp user ...`, `ai-suite audit verify`, `ai-approvals` errors, and the stdio transport as the owner."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from services.mcp_server import admin_cli, approvals_cli
from services.mcp_server.gate import db
from services.mcp_server.gate.audit import AuditEntry, append_now, verify
from services.stack import approvals as approvals_entry
from tests.unit.mcp.security_support import make_settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the commands at a database under `tmp_path`, as DATA_DIR would."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECURITY_DB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repository
    return tmp_path


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ai-suite")
    parser.add_argument("--env-file", type=Path)
    admin_cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return admin_cli.dispatch(parser.parse_args(argv))


def test_user_add_prints_a_working_key_once_and_list_shows_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("mcp", "user", "add", "bob", "--role", "guest") == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("aik_")
    conn = db.connect(env / "security" / "security.db")
    assert conn.execute("SELECT user_name FROM api_keys WHERE key_hash = ?", (db.hash_key(key),)).fetchone()[0] == "bob"
    assert run("mcp", "user", "add", "bob", "--role", "guest") == 1
    assert "already exists" in capsys.readouterr().out
    assert run("mcp", "user", "add", "eve", "--role", "root") == 1
    assert "unknown role" in capsys.readouterr().out
    assert run("mcp", "user", "list") == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("owner", "admin", "bob"))
    assert key not in listing
    assert run("mcp", "key", "add", "admin") == 0
    admin_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert db.hash_key(admin_key) in {r[0] for r in conn.execute("SELECT key_hash FROM api_keys")}
    conn.close()


def test_audit_verify_exit_codes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("audit", "verify") == 2  # no database yet: nothing to check
    path = db.initialize(make_settings(env))
    append_now(path, [AuditEntry("owner", "developer", "read_file", {"path": str(i)}, "allowed") for i in range(4)])
    assert run("audit", "verify") == 0
    assert "4 rows verified" in capsys.readouterr().out
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit_log SET user_name = 'someone' WHERE id = 2")
    conn.commit()
    assert run("audit", "verify") == 1
    assert "row 2" in capsys.readouterr().out


def test_approvals_cli_errors(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert approvals_cli.main(["--list"]) == 1
    assert "no security database" in capsys.readouterr().out
    db.initialize(make_settings(env))
    assert approvals_cli.main(["--list"]) == 0
    assert "no pending" in capsys.readouterr().out
    assert approvals_cli.main(["--approve", "missing"]) == 1
    assert "no approval request 'missing'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        approvals_cli.main(["--approve", "a", "--reject", "b"])


async def test_stdio_runs_as_the_local_owner(tmp_path: Path) -> None:
    """The real server over stdio: no key, the owner's role, and the call lands in the audit chain."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "hello.txt").write_text("hi from stdio")
    env = {"DATA_DIR": str(tmp_path / "data"), "MCP_ALLOWED_ROOTS": str(tmp_path / "files"), "LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    transport = StdioTransport(sys.executable, ["-m", "services.mcp_server", "--stdio"], env=env, cwd=str(tmp_path),
                               keep_alive=False)
    async with Client(transport) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"read_file", "run_command", "rag_query"} <= names
        result = await client.call_tool("read_file", {"path": "hello.txt"})
        assert "hi from stdio" in str(result.data)
    path = tmp_path / "data" / "security" / "security.db"
    rows = sqlite3.connect(path).execute("SELECT user_name, role, tool, status FROM audit_log").fetchall()
    assert rows == [("owner", "developer", "read_file", "allowed")]
    assert verify(path).ok


def test_ai_approvals_finds_the_servers_database_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative DATA_DIR means the suite's folder (as for the native server), never the caller's folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("SECURITY_DB_PATH", raising=False)
    monkeypatch.setenv("DATA_DIR", "suite-data-for-this-test")
    server_dir = Path(approvals_entry.native_environment()["DATA_DIR"])
    assert server_dir.is_absolute() and not server_dir.is_relative_to(tmp_path)
    assert approvals_entry.main(["--list"]) == 1  # no server has run there
    assert str(server_dir / "security" / "security.db") in capsys.readouterr().out.replace("\n", "")
