"""The audit chain against someone who can write the database and its head file, but cannot read the key."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from services.mcp_server import admin_cli
from services.mcp_server.gate import db
from services.mcp_server.gate.audit import AuditEntry, append_now, head_path, verify
from services.mcp_server.gate.audit_chain import Head, row_digest, write_head
from services.mcp_server.gate.redact import redact
from tests.unit.mcp.security_support import make_settings

ROOT = Path(__file__).resolve().parents[3]
COLUMNS = "id, ts, user_name, role, tool, args, status, duration_ms, detail, request_id"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database with six rows under DATA_DIR=tmp_path, as `ai-suite audit verify` finds it."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECURITY_DB_PATH", raising=False)
    monkeypatch.delenv("AUDIT_KEY_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repository
    path = db.initialize(make_settings(tmp_path))
    append_now(path, [AuditEntry(f"user{i}", "developer", "write_file", {"path": f"/f{i}", "pad": "p" * 300},
                                 "allowed", 1.0 + i) for i in range(6)])
    return path


def run_verify() -> int:
    parser = argparse.ArgumentParser(prog="ai-suite")
    parser.add_argument("--env-file", type=Path)
    admin_cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return admin_cli.dispatch(parser.parse_args(["audit", "verify"]))


def key_path(path: Path) -> Path:
    return path.parent / "audit.key"


def rebuild(path: Path, change: Callable[[sqlite3.Connection], None]) -> None:
    """The attack of issue 10: drop the guards, change rows, recompute every later hash and the head file.

    The attacker knows the code, so the hashes are computed exactly as an unkeyed chain computes them.
    """
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        change(conn)
        prev = "0" * 64
        for row in conn.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY id").fetchall():
            digest = hashlib.sha256(json.dumps([*row, prev], separators=(",", ":"), ensure_ascii=False)
                                    .encode()).hexdigest()
            conn.execute("UPDATE audit_log SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, digest, row[0]))
            prev = digest
        count = conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        conn.commit()
    head_path(path).write_text(json.dumps({"id": count, "row_hash": prev}).ljust(128))


def test_an_edited_row_with_every_later_hash_and_the_head_recomputed_is_found(env: Path) -> None:
    rebuild(env, lambda conn: conn.execute("UPDATE audit_log SET user_name = 'someone' WHERE id = 3"))
    result = verify(env)
    assert not result.ok
    assert run_verify() == 1


def test_a_cut_tail_with_a_rewritten_head_is_found(env: Path) -> None:
    rebuild(env, lambda conn: conn.execute("DELETE FROM audit_log WHERE id > 4"))
    assert not verify(env).ok
    assert run_verify() == 1


def test_every_row_and_the_head_deleted_is_found(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with closing(sqlite3.connect(env)) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit_log")
        conn.commit()
    head_path(env).unlink()
    assert not verify(env).ok
    assert run_verify() == 1
    assert "head checkpoint" in capsys.readouterr().out


def test_a_database_file_cut_in_half_is_reported_as_damaged(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = env.stat().st_size
    assert size > 8 * 4096, "the rows must span pages for the cut to reach them"
    with open(env, "r+b") as handle:
        handle.truncate(size // 2)
    assert run_verify() == 1
    assert "the audit database is damaged" in capsys.readouterr().out


def test_a_dropped_table_is_reported(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with closing(sqlite3.connect(env)) as conn:
        conn.execute("DROP TABLE audit_log")
        conn.commit()
    assert run_verify() == 1
    assert "the audit_log table is missing" in capsys.readouterr().out


def test_a_wrong_key_does_not_verify(env: Path) -> None:
    key = key_path(env)
    key.unlink(missing_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32).hex().encode() + b"\n")
    os.close(fd)
    assert not verify(env).ok
    assert run_verify() == 1


def test_a_missing_key_cannot_verify(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path(env).unlink(missing_ok=True)
    assert not verify(env).ok
    assert run_verify() == 2
    assert "audit.key" in capsys.readouterr().out


def test_a_key_readable_by_others_is_refused_by_verify_and_start(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = key_path(env)
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    assert run_verify() == 2
    assert "chmod 600" in capsys.readouterr().out
    with pytest.raises(db.SecurityDbError, match="too open"):
        db.initialize(make_settings(env.parent.parent))


def test_large_arguments_are_kept_as_a_digest_and_a_length() -> None:
    content = "line of the file\n" * 1000
    digest = hashlib.sha256(content.encode()).hexdigest()
    out = redact({"path": "notes.txt", "content": content, "code": "ü" * 10})
    assert out["path"] == "notes.txt"
    assert out["content"] == f"sha256:{digest}; {len(content.encode())} bytes"
    assert out["code"] == f"sha256:{hashlib.sha256(('ü' * 10).encode()).hexdigest()}; 20 bytes"


def test_an_attacker_who_runs_the_code_with_a_key_of_their_own_is_found(env: Path) -> None:
    own = os.urandom(32)
    with closing(sqlite3.connect(env)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit_log SET user_name = 'someone' WHERE id = 3")
        prev = conn.execute("SELECT row_hash FROM audit_log WHERE id = 2").fetchone()[0]
        for row in conn.execute(f"SELECT {COLUMNS} FROM audit_log WHERE id >= 3 ORDER BY id").fetchall():
            digest = row_digest(own, row, prev)
            conn.execute("UPDATE audit_log SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, digest, row[0]))
            prev = digest
        conn.commit()
    genuine = head_path(env).read_bytes()
    result = verify(env)
    assert not result.ok and result.bad_row == 3 and "HMAC" in result.reason
    write_head(head_path(env), Head(6, prev, 0), own)
    assert "not signed by the audit key" in verify(env).reason
    head_path(env).write_bytes(genuine)


def test_a_head_that_lags_the_rows_verifies(env: Path) -> None:
    """The head is signed after each commit, so a crash between the two leaves it behind; that is no tampering."""
    earlier = head_path(env).read_bytes()
    append_now(env, [AuditEntry("late", "developer", "read_file", {}, "allowed")])
    head_path(env).write_bytes(earlier)
    result = verify(env)
    assert result.ok and result.rows == 7
    append_now(env, [AuditEntry("later", "developer", "read_file", {}, "allowed")])  # and the writer goes on
    assert verify(env).rows == 8


def test_a_deleted_key_stops_start_up_and_verify(env: Path) -> None:
    key_path(env).unlink()
    with pytest.raises(db.SecurityDbError, match="missing, but the audit chain was keyed with it"):
        db.initialize(make_settings(env.parent.parent))
    assert not key_path(env).exists()  # no new key was made over the old chain


def test_the_key_can_live_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "keys" / "chain.key"
    settings = make_settings(tmp_path / "data", AUDIT_KEY_PATH=str(elsewhere))
    path = db.initialize(settings)
    assert elsewhere.stat().st_mode & 0o777 == 0o600 and not key_path(path).exists()
    append_now(path, [AuditEntry("u", "guest", "read_file", {}, "allowed")], elsewhere)
    assert verify(path, elsewhere).ok
    assert verify(path).verdict == "unchecked"  # the default place holds no key


def test_the_server_refuses_to_start_with_a_key_others_can_read(env: Path) -> None:
    key_path(env).chmod(0o640)
    started = subprocess.run([sys.executable, "-m", "services.mcp_server"], capture_output=True, text=True,
                             timeout=60, cwd=ROOT, env={**os.environ, "DATA_DIR": str(env.parent.parent),
                                                        "MCP_PORT": "0", "LOG_LEVEL": "WARNING"})
    assert started.returncode == 1
    assert "mcp-server: the audit key" in started.stderr and "too open" in started.stderr
    assert "Traceback" not in started.stderr


def _unkeyed_database(tmp: Path, rows: int) -> Path:
    """A security database as the code before keys left it: SHA-256 rows and an unsigned head."""
    path = db.initialize(make_settings(tmp, AUDIT_ENABLED=False))
    prev = "0" * 64
    with closing(sqlite3.connect(path)) as conn:
        for i in range(1, rows + 1):
            values = (i, "2025-01-01T00:00:00.000+00:00", "old", "developer", "read_file",
                      json.dumps({"path": f"/o{i}"}), "allowed", 1.0, "", None)
            digest = row_digest(None, values, prev)
            conn.execute(f"INSERT INTO audit_log ({COLUMNS}, prev_hash, row_hash) VALUES "
                         f"({', '.join('?' * 12)})", (*values, prev, digest))
            prev = digest
        conn.commit()
    head_path(path).write_text(json.dumps({"id": rows, "row_hash": prev}).ljust(128))
    return path


def test_an_unkeyed_chain_is_sealed_by_the_first_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = _unkeyed_database(tmp_path, 3)
    assert verify(path).ok and not verify(path).keyed
    db.initialize(make_settings(tmp_path))
    assert key_path(path).stat().st_mode & 0o777 == 0o600
    append_now(path, [AuditEntry("new", "developer", "read_file", {}, "allowed") for _ in range(2)])
    result = verify(path)
    assert result.ok and result.keyed and (result.rows, result.legacy) == (5, 3)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert run_verify() == 0
    assert "rows 1..3 predate the key" in capsys.readouterr().out
    # An old row, edited with its unkeyed hashes recomputed, no longer fits the first keyed row.
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit_log SET user_name = 'someone' WHERE id = 2")
        prev = conn.execute("SELECT row_hash FROM audit_log WHERE id = 1").fetchone()[0]
        for row in conn.execute(f"SELECT {COLUMNS} FROM audit_log WHERE id IN (2, 3) ORDER BY id").fetchall():
            digest = row_digest(None, row, prev)
            conn.execute("UPDATE audit_log SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, digest, row[0]))
            prev = digest
        conn.commit()
    assert verify(path).bad_row == 4


def test_an_unkeyed_chain_that_does_not_verify_is_not_sealed(tmp_path: Path) -> None:
    path = _unkeyed_database(tmp_path, 3)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit_log SET status = 'denied' WHERE id = 2")
        conn.commit()
    with pytest.raises(db.SecurityDbError, match=r"cannot be keyed.*row 2.*Keep it as evidence"):
        db.initialize(make_settings(tmp_path))
    assert not key_path(path).exists()
    assert verify(path).bad_row == 2
