"""`ai-suite up p2` natively: real models, real embedded PostgreSQL, embedded Qdrant, real HTTP."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from services.stack.runner import Stack
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

MISSING = [m for m in ("services.rag.__main__", "services.embedding.__main__") if importlib.util.find_spec(m) is None]
POSTGRES = [sys.executable, "-m", "services.stack.postgres"]


def wait_for(check, deadline_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {deadline_s} s")


def pg_env(tmp_path: Path) -> dict[str, str]:
    return {"PGDATA": str(tmp_path / "pg"), "PGPORT": str(free_port()), "POSTGRES_DB": "suite",
            "POSTGRES_USER": "suite_user", "POSTGRES_PASSWORD": "pa ss'word", "LOG_JSON": "false"}


def check(env: dict[str, str]) -> bool:
    return subprocess.run([*POSTGRES, "--check"], env={**os.environ, **env}, capture_output=True).returncode == 0


def start_postgres(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(POSTGRES, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    wait_for(lambda: proc.poll() is not None or check(env), 60, "postgres accepts the configured login")
    assert proc.poll() is None, log.read_text()
    return proc


def test_native_postgres_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    env, log = pg_env(tmp_path), tmp_path / "postgres.log"
    url = (f"postgresql://suite_user:{'pa%20ss%27word'}@127.0.0.1:{env['PGPORT']}/suite")
    proc = start_postgres(env, log)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (body text)")
            conn.execute("INSERT INTO notes VALUES ('kept')")
        assert not check({**env, "POSTGRES_PASSWORD": "wrong"})  # passwords are enforced over TCP
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (tmp_path / "pg" / "postmaster.pid").exists()  # the server itself stopped, not just the wrapper
    assert "database system is shut down" in log.read_text()
    proc = start_postgres(env, log)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)


@pytest.fixture(scope="module")
def p2_stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    if MISSING:
        pytest.skip(f"{', '.join(MISSING)} cannot be imported yet (the service is not written)")
    data = tmp_path_factory.mktemp("p2-data")
    (data / "documents").mkdir()
    (data / "documents" / "mars.md").write_text("# Mars\nOlympus Mons is the tallest volcano on Mars.\n")
    ports = {name: str(free_port()) for name in ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT",
                                                 "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT")}
    env = {**ports, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir), "LOG_JSON": "false",
           "N_THREADS": "1", "EMBEDDING_THREADS": "1", "GATEWAY_COOLDOWN_SECONDS": "2", "RAG_LLM_TIMEOUT": "60"}
    stack = Stack("p2", env=env)
    stack.up()
    try:
        yield stack, env
    finally:
        stack.down()


def url(env: dict[str, str], port: str) -> str:
    return f"http://127.0.0.1:{env[port]}"


def test_p2_runs_natively_health_gated(p2_stack: tuple[Stack, dict[str, str]]) -> None:
    stack, env = p2_stack
    rows = {row.name: row for row in stack.status()}
    assert set(rows) == {"inference-chat", "inference-code", "api-gateway", "embedding", "postgres", "rag"}
    assert all(row.state == "running" and row.health == "healthy" for row in rows.values()), rows
    health = httpx.get(f"{url(env, 'RAG_PORT')}/health", timeout=10, trust_env=False)
    assert health.status_code == 200, health.text
    for dependency in ("qdrant", "postgres", "embedding", "gateway"):
        assert dependency in health.text
    # embedded Qdrant lives where the docker volume would be; only rag holds it open
    assert (Path(env["DATA_DIR"]) / "vectors").is_dir()
    assert (Path(env["DATA_DIR"]) / "postgresql" / "PG_VERSION").is_file()
    body = {"model": "code-7b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    answer = httpx.post(f"{url(env, 'API_GATEWAY_PORT')}/v1/chat/completions", json=body, timeout=60,
                        trust_env=False)
    assert answer.status_code == 200 and answer.headers["x-ai-suite-model"] == "code-7b"


def test_indexed_documents_survive_a_full_restart(p2_stack: tuple[Stack, dict[str, str]]) -> None:
    stack, env = p2_stack
    rag = url(env, "RAG_PORT")
    report = httpx.post(f"{rag}/index", json={"collection": "space", "paths": ["mars.md"]}, timeout=120,
                        trust_env=False)
    assert report.status_code == 200, report.text
    assert [d["path"] for d in report.json()["documents"]] == ["mars.md"]
    stack.down()
    assert stack.status() and all(row.state == "stopped" for row in stack.status())
    assert not (Path(env["DATA_DIR"]) / "postgresql" / "postmaster.pid").exists()
    stack.up()
    listed = httpx.get(f"{rag}/collections/space/documents", timeout=30, trust_env=False)
    assert listed.status_code == 200, listed.text
    assert "mars.md" in listed.text
    found = httpx.post(f"{rag}/search", json={"query": "tallest volcano", "collection": "space"}, timeout=60,
                       trust_env=False)
    assert found.status_code == 200 and found.json()["results"][0]["document"] == "mars.md", found.text
