"""The conversation store's SQLite schema and how a connection to it is opened (docs/adr/0008)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Each entry moves the database one version on (PRAGMA user_version); never edit a released one.
MIGRATIONS = (
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        auto_title TEXT,
        -- bumped by every change the RAG mirror must see; rag_version is the one it holds
        version INTEGER NOT NULL DEFAULT 1,
        rag_version INTEGER NOT NULL DEFAULT 0,
        rag_document_id TEXT
    );
    CREATE INDEX conversations_by_update ON conversations (updated_at DESC);
    CREATE INDEX conversations_rag_dirty ON conversations (id) WHERE version <> rag_version;
    CREATE TABLE items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        content TEXT NOT NULL,
        text TEXT NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX items_by_conversation ON items (conversation_id, seq);
    -- trigram: finds any substring of 3+ characters, so Korean words match inside inflected forms
    CREATE VIRTUAL TABLE items_fts USING fts5 (text, content = 'items', content_rowid = 'seq',
                                               tokenize = 'trigram');
    CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
        INSERT INTO items_fts (rowid, text) VALUES (new.seq, new.text);
    END;
    CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    END;
    -- RAG documents still to remove: written in the same transaction as the delete, so none is forgotten
    CREATE TABLE rag_deletions (
        document_id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL
    );
    """,
    # An item's text can change (a streamed answer is stored as it comes): the full-text index follows it,
    # and is rebuilt once for rows that changed before this trigger existed.
    """
    CREATE TRIGGER items_fts_update AFTER UPDATE OF text ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text) VALUES ('delete', old.seq, old.text);
        INSERT INTO items_fts (rowid, text) VALUES (new.seq, new.text);
    END;
    INSERT INTO items_fts (items_fts) VALUES ('rebuild');
    """,
)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it if needed) and migrate the store; WAL with synchronous=FULL so a commit is durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in the store.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; the version bump is part of the same script, so a crash
        # between the two cannot leave a half-migrated database marked as done.
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
