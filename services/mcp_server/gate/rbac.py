"""The permission matrix and key table, held in memory and reloaded only when the database says they changed."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.mcp_server.gate.db import connect, tool_permission

# How stale a cached answer may be before the generation counter is read again (one tiny SELECT).
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Identity:
    """Who is calling, and the role their calls are checked against."""

    user: str
    role: str


@dataclass
class Snapshot:
    generation: int = -1
    permissions: dict[str, frozenset[str]] = field(default_factory=dict)
    keys: dict[str, Identity] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)


class AuthCache:
    """Answers "may role R do P" and "whose key is this" from memory; the hot path never touches SQLite."""

    def __init__(self, db_path: Path) -> None:
        self._conn: sqlite3.Connection = connect(db_path)
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._checked_at = 0.0
        self.refresh(force=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def refresh(self, force: bool = False) -> None:
        """Reload everything if the generation counter moved (at most once a second unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked_at < RECHECK_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            generation = self._conn.execute("SELECT value FROM auth_generation WHERE id = 1").fetchone()[0]
            if generation != self._snapshot.generation:
                self._snapshot = self._load(generation)

    def _load(self, generation: int) -> Snapshot:
        grants: dict[str, set[str]] = {}
        for role, permission in self._conn.execute("SELECT role, permission FROM role_permissions"):
            grants.setdefault(role, set()).add(permission)
        for (role,) in self._conn.execute("SELECT name FROM roles"):
            grants.setdefault(role, set())
        users = {row[0]: row[1] for row in self._conn.execute("SELECT name, role FROM users WHERE disabled = 0")}
        keys = {
            key_hash: Identity(user, users[user])
            for key_hash, user in self._conn.execute("SELECT key_hash, user_name FROM api_keys WHERE revoked = 0")
            if user in users
        }
        return Snapshot(generation, {role: frozenset(p) for role, p in grants.items()}, keys, users)

    def principal_for(self, key_hash: str) -> Identity | None:
        """The user behind a key hash; an unknown hash forces one reload, since the key may be brand new."""
        self.refresh()
        principal = self._snapshot.keys.get(key_hash)
        if principal is None:
            self.refresh(force=True)
            principal = self._snapshot.keys.get(key_hash)
        return principal

    def role_of(self, user: str) -> str | None:
        self.refresh()
        return self._snapshot.users.get(user)

    def has(self, role: str, permission: str) -> bool:
        self.refresh()
        return permission in self._snapshot.permissions.get(role, frozenset())

    def may_call(self, role: str, tool: str) -> bool:
        return self.has(role, tool_permission(tool))
