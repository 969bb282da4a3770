"""Chaos on a supervised p3 suite: hard kills under steady load lose nothing that was acknowledged."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.stack.runner import Stack
from tests.load.suite import PORTS, ai_suite
from tests.support.chaos import SteadyLoad, Suite, missing
from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# every native process of p3, each killed once; the supervisor must bring each back
SERVICES = ("postgres", "embedding", "inference-chat", "inference-code", "rag", "api-gateway", "mcp-server")
# The goal is 30 s; the test allows twice that, because a shared 2-core machine slows every start
# (the times are printed; docs/reliability.md gives measured ones). It is a bound, not a measurement.
BACK_WITHIN_S = 60


DISK_MIB = 400  # the data disk: room for postgres, the stores and the logs, small enough to fill quickly


def small_disk(folder: Path) -> bool:
    """Mount a tmpfs of DISK_MIB on `folder` (root only; CHAOS_SMALL_DISK=0 turns it off); False where this
    machine does not allow it."""
    mount = shutil.which("mount")
    if os.environ.get("CHAOS_SMALL_DISK", "1") != "1" or os.geteuid() != 0 or mount is None:
        return False
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0700", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def suite(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    data, work = tmp_path_factory.mktemp("chaos-data"), tmp_path_factory.mktemp("chaos-work")
    mounted = small_disk(data)
    (data / "documents").mkdir()
    env = {**{name: str(free_port()) for name in PORTS}, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir),
           "LOG_JSON": "false", "N_THREADS": "1", "EMBEDDING_THREADS": "1", "MCP_ALLOWED_ROOTS": str(work),
           "RAG_LLM_TIMEOUT": "60", "N_CTX": "1024",
           "CONVERSATION_CHECKPOINT_SECONDS": "0.1"}
    ai_suite(env, "up", "p3")
    try:
        developer = ai_suite(env, "mcp", "user", "add", "chaos", "--role", "developer").strip().splitlines()[-1]
        owner = (data / "security" / "owner.key").read_text().strip()
        yield Suite(env, Stack("p3", env=env), data, work, developer, owner, small_disk=mounted)
    finally:
        ai_suite(env, "down", timeout=120)
        if mounted:
            # lazily: a process that has just exited may still hold the folder for a moment
            subprocess.run([shutil.which("umount") or "umount", "--lazy", str(data)], check=False)


def test_each_service_killed_under_load_comes_back_and_nothing_acknowledged_is_lost(suite: Suite) -> None:
    load = SteadyLoad(suite)
    load.start()
    back: dict[str, float] = {}
    try:
        for name in SERVICES:
            before = len(load.ack.conversations) + len(load.ack.documents) + len(load.ack.written)
            back[name] = suite.wait_back(name, suite.kill(name), seconds=BACK_WITHIN_S)
            # the load gets through again once the service is back
            deadline = time.monotonic() + 60
            while len(load.ack.conversations) + len(load.ack.documents) + len(load.ack.written) <= before + 2:
                assert time.monotonic() < deadline, f"no progress after {name} came back: {load.failures[-5:]}"
                time.sleep(0.5)
    finally:
        ack = load.stop()
    print("seconds until healthy again:", {n: round(s, 1) for n, s in back.items()})  # noqa: T201 - shown with -s
    assert ack.conversations and ack.documents and ack.written and ack.approvals
    assert missing(suite, ack) == []
    assert set(back) == set(SERVICES)
    for name in SERVICES:
        assert suite.rows()[name].restarts >= 1
    verified = ai_suite(suite.env, "audit", "verify")
    assert "intact" in verified


def agree(suite: Suite, collection: str) -> dict[str, int]:
    """Documents, chunks (postgres) and vectors (Qdrant) of `collection` as RAG lists them."""
    rows = httpx.get(f"{suite.url('RAG_PORT')}/collections", timeout=60, trust_env=False).json()["collections"]
    row = next(r for r in rows if r["name"] == collection)
    listed = httpx.get(f"{suite.url('RAG_PORT')}/collections/{collection}/documents", timeout=60,
                       trust_env=False).json()["documents"]
    return {"documents": row["documents"], "listed": len(listed), "chunks": row["chunks"],
            "chunks_listed": sum(d["chunks"] for d in listed), "vectors": row["vectors"]}


def test_postgres_killed_during_an_index_run_leaves_no_orphans(suite: Suite) -> None:
    folder = suite.data / "documents" / "bulk"
    folder.mkdir()
    for n in range(40):
        (folder / f"doc-{n}.md").write_text(f"# Bulk {n}\n" + " ".join(f"word{n}x{k}" for k in range(400)) + "\n")
    outcome: dict[str, httpx.Response | Exception] = {}

    def index() -> None:
        try:
            outcome["answer"] = httpx.post(f"{suite.url('RAG_PORT')}/index", json={"collection": "bulk",
                                           "paths": ["bulk"]}, timeout=600, trust_env=False)
        except httpx.HTTPError as exc:
            outcome["answer"] = exc

    runner = threading.Thread(target=index)
    runner.start()
    # once the run has written some documents, postgres dies under it
    deadline = time.monotonic() + 120
    while True:
        listed = httpx.get(f"{suite.url('RAG_PORT')}/collections", timeout=60, trust_env=False).json()
        if any(r["name"] == "bulk" and r["documents"] >= 2 for r in listed["collections"]):
            break
        assert time.monotonic() < deadline and runner.is_alive(), "the index run never got going"
        time.sleep(0.1)
    suite.wait_back("postgres", suite.kill("postgres"))
    runner.join(timeout=600)
    answer = outcome["answer"]
    # a clean end: either it retried through the outage, or it failed with a 503 that says why
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code in (200, 503), answer.text
    if answer.status_code == 503:
        assert answer.headers.get("Retry-After"), answer.headers
    # afterwards the stores agree (a repair after a failed write may take a few seconds)
    deadline = time.monotonic() + 60
    counts = agree(suite, "bulk")
    while counts["vectors"] != counts["chunks"] and time.monotonic() < deadline:
        time.sleep(1)
        counts = agree(suite, "bulk")
    assert counts["documents"] == counts["listed"] and counts["chunks"] == counts["chunks_listed"], counts
    assert counts["vectors"] == counts["chunks"], counts
    # and a second run completes what the first did not
    again = httpx.post(f"{suite.url('RAG_PORT')}/index", json={"collection": "bulk", "paths": ["bulk"]},
                       timeout=600, trust_env=False)
    assert again.status_code == 200, again.text
    final = agree(suite, "bulk")
    assert final["documents"] == 40 and final["vectors"] == final["chunks"] == final["chunks_listed"], final


def test_gateway_killed_mid_stream_gives_a_clean_error_and_keeps_the_partial_answer(suite: Suite) -> None:
    gateway = suite.url("API_GATEWAY_PORT")
    created = httpx.post(f"{gateway}/v1/conversations", json={}, timeout=60, trust_env=False)
    conversation = created.json()["id"]
    body = {"model": "chat-7b", "messages": [{"role": "user", "content": "Write a long story about a cat who "
                                                                          "travels around the world."}],
            "max_tokens": 400, "temperature": 0, "stream": True, "conversation": conversation}
    received = ""
    error: Exception | None = None
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body, timeout=120, trust_env=False) as answer:
        assert answer.status_code == 200
        killed = False
        try:
            for line in answer.iter_lines():
                if line.startswith("data:") and line != "data: [DONE]":
                    for choice in json.loads(line[5:]).get("choices", []):
                        received += (choice.get("delta") or {}).get("content") or ""
                if len(received) > 40 and not killed:  # a few checkpoints (0.1 s apart) have passed
                    old = suite.kill("api-gateway")
                    killed = True
        except httpx.HTTPError as exc:
            error = exc
    assert killed, f"the stream ended before it could be cut: {received!r}"
    # the client sees the stream break (a transport error), not a hang or a made-up end
    assert isinstance(error, httpx.RemoteProtocolError | httpx.ReadError), error
    suite.wait_back("api-gateway", old)
    items = httpx.get(f"{gateway}/v1/conversations/{conversation}/items", params={"order": "asc"}, timeout=60,
                      trust_env=False).json()["data"]
    assert [item["role"] for item in items] == ["user", "assistant"], items
    answer_item = items[1]
    assert answer_item["status"] == "incomplete"
    kept = answer_item["content"][0]["text"]
    assert kept and received.startswith(kept[:10]), (kept, received)


def fill(path: Path) -> int:
    """Write `path` until the disk is full; returns the bytes written."""
    written = 0
    block = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as handle:  # unbuffered: a write fails itself, closing has nothing to flush
        while len(block) >= 512:
            try:
                handle.write(block)
                handle.flush()
                written += len(block)
            except OSError:
                block = block[: len(block) // 2]
    return written


def test_a_full_data_disk_gets_clear_errors_and_nothing_is_corrupted(suite: Suite) -> None:
    if not suite.small_disk:
        pytest.skip("needs DATA_DIR on a small filesystem of its own: a tmpfs, mounted when the tests run as root "
                    "(and CHAOS_SMALL_DISK is not 0)")
    gateway, rag = suite.url("API_GATEWAY_PORT"), suite.url("RAG_PORT")
    http = httpx.Client(timeout=120, trust_env=False)
    kept = http.post(f"{gateway}/v1/conversations", json={"items": [
        {"type": "message", "role": "user", "content": "written before the disk filled"}]}).json()["id"]
    (suite.data / "documents" / "full").mkdir()
    (suite.data / "documents" / "full" / "late.md").write_text("# Late\nThis note arrives on a full disk.\n")
    filler = suite.data / "filler"
    assert fill(filler) > 0
    accepted: list[tuple[str, str]] = []
    try:
        # A write may still fit in room the database file or its WAL already holds; every write is either
        # acknowledged (and must then be kept) or refused with 507, never a 500. Soon one is refused.
        for n in range(400):
            text = f"no room for this {n} " + "x" * 65536
            answer = http.post(f"{gateway}/v1/conversations", json={"items": [
                {"type": "message", "role": "user", "content": text}]})
            if answer.status_code != 200:
                break
            accepted.append((answer.json()["id"], text))
        assert answer.status_code == 507 and answer.json()["error"]["code"] == "disk_full", answer.text
        assert answer.headers.get("Retry-After")
        indexed = http.post(f"{rag}/index", json={"collection": "full", "paths": ["full/late.md"]})
        assert indexed.status_code in (503, 507), indexed.text
        assert indexed.headers.get("Retry-After")
    finally:
        filler.unlink()
    # space is back: the same writes succeed, and what was there before is intact
    for name in ("postgres", "rag", "api-gateway", "mcp-server"):
        row = suite.rows()[name]
        assert row.state in ("running", "starting"), row
    deadline = time.monotonic() + 60
    while True:
        again = http.post(f"{rag}/index", json={"collection": "full", "paths": ["full/late.md"]})
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert again.status_code == 200, again.text
    counts = agree(suite, "full")
    assert counts["documents"] == 1 and counts["vectors"] == counts["chunks"] > 0, counts
    assert http.post(f"{gateway}/v1/conversations", json={}).status_code == 200
    items = http.get(f"{gateway}/v1/conversations/{kept}/items").json()["data"]
    assert items[0]["content"][0]["text"] == "written before the disk filled"
    for conversation, text in accepted:  # acknowledged on the full disk, so kept
        stored = http.get(f"{gateway}/v1/conversations/{conversation}/items").json()["data"]
        assert stored[0]["content"][0]["text"] == text
    for db in (suite.data / "conversations" / "conversations.db", suite.data / "security" / "security.db"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "intact" in ai_suite(suite.env, "audit", "verify")
