"""The security database: SQLite (WAL) with versioned migrations, seeded roles and users, and hashed API keys."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from services.mcp_server.catalog import TOOLS, Risk, ToolSpec
from services.mcp_server.gate.audit_key import AuditKeyError
from services.mcp_server.gate.audit_verify import prepare_chain
from services.mcp_server.settings import McpSettings

MIGRATIONS = Path(__file__).with_name("migrations")
OWNER = "owner"
ADMIN = "admin"
BUILTIN_ROLES = {
    "guest": "read-only LOW tools",
    "developer": "every tool; HIGH and CRITICAL calls wait for another user's approval",
    "admin": "every tool without approval; decides approval requests",
}
PERM_BYPASS = "approvals:bypass"
PERM_DECIDE = "approvals:decide"
ROLE_EXTRAS = {"admin": (PERM_BYPASS, PERM_DECIDE)}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class SecurityDbError(Exception):
    """A user, role or key operation that cannot be done (unknown role, duplicate user, unusable audit key)."""


def tool_permission(tool: str) -> str:
    """The permission a role needs to call `tool`."""
    return f"tool:{tool}"


def default_grant(role: str, spec: ToolSpec) -> bool:
    """Whether a built-in role gets a catalog tool by default."""
    if role == "guest":
        return spec.read_only and spec.risk == Risk.LOW
    return role in ("developer", "admin")


def hash_key(key: str) -> str:
    """The stored form of an API key: only its sha256 ever reaches the database."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "aik_" + secrets.token_urlsafe(32)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, foreign keys on."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _statements(script: str) -> list[str]:
    """Split a migration into statements; `complete_statement` keeps trigger bodies whole."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append((int(number), name, path))
    numbers = [number for number, _, _ in found]
    # `migrate` applies a number once; a second file with the same number (two branches merged) would be skipped.
    if len(numbers) != len(set(numbers)):
        raise SecurityDbError(f"two security migrations share a number in {MIGRATIONS}: {sorted(numbers)}")
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database, each in one transaction; returns the version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    version = 0
    for number, name, path in _migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if number > current:
                for statement in _statements(path.read_text(encoding="utf-8")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (number, name, now_iso()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = number
    return version


def seed(conn: sqlite3.Connection, settings: McpSettings) -> None:
    """Create the built-in roles, grant new catalog tools, and make sure `owner` and `admin` exist."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for role, description in BUILTIN_ROLES.items():
            created = conn.execute(
                "INSERT OR IGNORE INTO roles (name, description) VALUES (?, ?)", (role, description)
            ).rowcount
            if created:
                conn.executemany(
                    "INSERT OR IGNORE INTO role_permissions VALUES (?, ?)",
                    [(role, perm) for perm in ROLE_EXTRAS.get(role, ())],
                )
        known = {row[0] for row in conn.execute("SELECT name FROM tools")}
        for spec in TOOLS.values():
            if spec.name in known:
                continue  # grants of known tools are the admin's to change; never re-grant them
            conn.execute(
                "INSERT INTO tools VALUES (?, ?, ?, ?)", (spec.name, spec.family, spec.risk.name, int(spec.read_only))
            )
            conn.executemany(
                "INSERT OR IGNORE INTO role_permissions VALUES (?, ?)",
                [(role, tool_permission(spec.name)) for role in BUILTIN_ROLES if default_grant(role, spec)],
            )
        _require_role(conn, settings.owner_role)
        for user, role in ((OWNER, settings.owner_role), (ADMIN, "admin")):
            conn.execute("INSERT OR IGNORE INTO users (name, role, created_at) VALUES (?, ?, ?)",
                         (user, role, now_iso()))
        # MCP_OWNER_ROLE stays authoritative for the owner after the first start.
        conn.execute("UPDATE users SET role = ? WHERE name = ? AND role != ?",
                     (settings.owner_role, OWNER, settings.owner_role))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _require_role(conn: sqlite3.Connection, role: str) -> None:
    if conn.execute("SELECT 1 FROM roles WHERE name = ?", (role,)).fetchone() is None:
        raise SecurityDbError(f"unknown role {role!r}")


def ensure_owner_key(conn: sqlite3.Connection, path: Path) -> None:
    """Write the owner's key file (0600) once; re-register its hash if the database was recreated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="utf-8").strip()
    else:
        key = new_key()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
    conn.execute(
        "INSERT OR IGNORE INTO api_keys (key_hash, user_name, label, created_at) VALUES (?, ?, 'owner key file', ?)",
        (hash_key(key), OWNER, now_iso()),
    )


def initialize(settings: McpSettings) -> Path:
    """Create, migrate and seed the database, the owner key and the audit key; returns the database path."""
    path = settings.security_db_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.security_db is None:
        # Our own folder: keep the WAL, key file and checkpoint away from other local users.
        os.chmod(path.parent, 0o700)
    fresh = not path.exists()
    conn = connect(path)
    try:
        if fresh:
            os.chmod(path, 0o600)
        migrate(conn)
        seed(conn, settings)
        ensure_owner_key(conn, settings.owner_key_path())
        if settings.audit_enabled:
            try:
                prepare_chain(conn, path, settings.audit_key_path())
            except AuditKeyError as exc:
                raise SecurityDbError(str(exc)) from None
    finally:
        conn.close()
    return path


def create_user(conn: sqlite3.Connection, name: str, role: str) -> str:
    """Add a user with a role and return their first API key (shown once, stored hashed)."""
    if not USER_NAME.match(name):
        raise SecurityDbError(f"invalid user name {name!r} (letters, digits, _ . @ -; at most 64)")
    _require_role(conn, role)
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise SecurityDbError(f"user {name!r} already exists")
    conn.execute("INSERT INTO users (name, role, created_at) VALUES (?, ?, ?)", (name, role, now_iso()))
    return issue_key(conn, name)


def issue_key(conn: sqlite3.Connection, user: str, label: str = "") -> str:
    """Give an existing user a new API key; returns the key."""
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
        raise SecurityDbError(f"unknown user {user!r}")
    key = new_key()
    conn.execute("INSERT INTO api_keys (key_hash, user_name, label, created_at) VALUES (?, ?, ?, ?)",
                 (hash_key(key), user, label, now_iso()))
    return key


def list_users(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Users with their role and number of live keys."""
    return conn.execute(
        "SELECT u.name, u.role, u.disabled, u.created_at, "
        "(SELECT COUNT(*) FROM api_keys k WHERE k.user_name = u.name AND k.revoked = 0) AS keys "
        "FROM users u ORDER BY u.name"
    ).fetchall()


def user_role(conn: sqlite3.Connection, user: str) -> str | None:
    row = conn.execute("SELECT role FROM users WHERE name = ? AND disabled = 0", (user,)).fetchone()
    return row[0] if row else None


def role_has(conn: sqlite3.Connection, role: str, permission: str) -> bool:
    query = "SELECT 1 FROM role_permissions WHERE role = ? AND permission = ?"
    return conn.execute(query, (role, permission)).fetchone() is not None
