"""`ai-suite backup` of a running p3 suite, and `ai-suite restore` of it into a fresh DATA_DIR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack.backup import BackupError, backup, restore
from services.stack.runner import Stack
from tests.support.mcp_http import call, session
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

QUESTIONS = ("Which moon of Mars is larger?", "When do backups run?")


def suite_env(data: Path, models_dir: Path, ports: dict[str, str], work: Path) -> dict[str, str]:
    return {**ports, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir), "LOG_JSON": "false",
            "N_THREADS": "1", "EMBEDDING_THREADS": "1", "MCP_ALLOWED_ROOTS": str(work)}


def search(env: dict[str, str], query: str) -> list[tuple[str, str]]:
    answer = httpx.post(f"http://127.0.0.1:{env['RAG_PORT']}/search", timeout=60,
                        json={"query": query, "collection": "notes", "top_k": 3})
    assert answer.status_code == 200, answer.text
    return [(hit["document"], hit["text"]) for hit in answer.json()["results"]]


def verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "services.stack", "audit", "verify"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


async def test_a_backup_restores_into_a_fresh_data_dir_with_the_same_answers(
        models_dir: Path, tmp_path: Path) -> None:
    first, second, work = tmp_path / "first", tmp_path / "second", tmp_path / "work"
    work.mkdir()
    (first / "documents").mkdir(parents=True)
    (first / "documents" / "mars.md").write_text("# Mars\nPhobos is the larger moon of Mars; Deimos is smaller.\n")
    (first / "documents" / "ops.md").write_text("# Ops\nDatabase backups run every night at 02:00.\n")
    ports = {name: str(free_port()) for name in ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT",
                                                 "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT", "MCP_PORT")}
    env = suite_env(first, models_dir, ports, work)
    stack = Stack("p3", env=env)
    stack.up()
    try:
        indexed = httpx.post(f"http://127.0.0.1:{ports['RAG_PORT']}/index", json={"collection": "notes"}, timeout=300)
        assert indexed.status_code == 200, indexed.text
        before = {query: search(env, query) for query in QUESTIONS}
        owner = (first / "security" / "owner.key").read_text().strip()
        async with session(f"http://127.0.0.1:{ports['MCP_PORT']}", owner) as client:
            await call(client, "write_file", {"path": str(work / "kept.md"), "content": "in the audit trail"})
        assert verify(env).returncode == 0
        folder = backup(stack, tmp_path / "backup")
        with pytest.raises(BackupError, match="still running"):
            restore(stack, folder)
    finally:
        stack.down()

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parts"]["rag"]["collections"] == {"notes": indexed.json()["chunks_added"]}
    assert {"security/security.db", "security/audit.key", "documents/mars.md", "rag/postgres.dump"} <= set(
        manifest["files"])
    moved = {**env, "DATA_DIR": str(second)}
    restored = Stack("p3", env=moved)
    restore(restored, folder)
    with pytest.raises(BackupError, match="already holds suite data"):
        restore(restored, folder)
    restored.up()
    try:
        assert {query: search(moved, query) for query in QUESTIONS} == before
        checked = verify(moved)
        assert checked.returncode == 0 and "intact" in checked.stdout, checked.stdout + checked.stderr
        # the restored security database knows the keys it knew: the old owner key still works
        async with session(f"http://127.0.0.1:{ports['MCP_PORT']}", owner) as client:
            assert "in the audit trail" in json.dumps(await call(client, "read_file", {"path": str(work / "kept.md")}))
        assert verify(moved).returncode == 0
    finally:
        restored.down()


def test_a_changed_backup_file_is_refused(tmp_path: Path) -> None:
    from services.stack.backup import verify_backup

    folder = tmp_path / "b"
    (folder / "documents").mkdir(parents=True)
    (folder / "documents" / "a.md").write_text("one")
    from services.common.snapshots import sha256_of

    manifest: dict[str, Any] = {"format": 1, "parts": {}, "files": {
        "documents/a.md": {"sha256": sha256_of(folder / "documents" / "a.md"), "bytes": 3}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert verify_backup(folder)["files"]
    (folder / "documents" / "a.md").write_text("two")
    with pytest.raises(BackupError, match="missing or changed"):
        verify_backup(folder)
    with pytest.raises(BackupError, match="not a backup"):
        verify_backup(tmp_path)
