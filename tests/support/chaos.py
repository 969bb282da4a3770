"""A supervised p3 suite for chaos tests, a steady light load that records what the suite acknowledged, and checks."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.stack.runner import ServiceStatus, Stack


class Mcp:
    """A minimal streamable-HTTP MCP client (JSON-RPC over POST), usable from a plain thread."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = f"{url}/mcp", key
        self.session: str | None = None
        self.ids = itertools.count(1)
        self.http = httpx.Client(timeout=60, trust_env=False)

    def _post(self, message: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json, text/event-stream"}
        if self.session:
            headers["mcp-session-id"] = self.session
        return self.http.post(self.url, json=message, headers=headers)

    def open(self) -> None:
        self.session = None
        answer = self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "chaos", "version": "1"}}})
        answer.raise_for_status()
        self.session = answer.headers.get("mcp-session-id")
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """The tool's result (content, isError); raises when the call got no JSON-RPC result."""
        if self.session is None:
            self.open()
        answer = self._post({"jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call",
                             "params": {"name": tool, "arguments": args}})
        if answer.status_code in (400, 404):  # the server restarted: its sessions are gone
            self.session = None
        answer.raise_for_status()
        body = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            body = next(line[5:].strip() for line in body.splitlines() if line.startswith("data:"))
        message = json.loads(body)
        if "result" not in message:
            raise RuntimeError(f"no result: {message}")
        return message["result"]


@dataclass
class Acknowledged:
    """What the suite answered as done: it must all still be there after any crash."""

    conversations: dict[str, str] = field(default_factory=dict)  # id -> the stored message
    documents: dict[str, int] = field(default_factory=dict)  # path in the collection -> chunks added
    written: list[str] = field(default_factory=list)  # write_file paths (an audit row each)
    approvals: list[str] = field(default_factory=list)  # pending request ids


@dataclass
class Suite:
    env: dict[str, str]
    stack: Stack
    data: Path
    work: Path
    developer: str
    owner: str
    small_disk: bool = False  # DATA_DIR is a small filesystem of its own (a tmpfs)

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.env[port]}"

    def rows(self) -> dict[str, ServiceStatus]:
        return {row.name: row for row in self.stack.status()}

    def kill(self, name: str) -> int:
        pid = self.rows()[name].pid
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_back(self, name: str, old_pid: int, seconds: float = 30) -> float:
        """Seconds until `name` runs again under a new pid and is healthy; fails after `seconds`."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            row = self.rows()[name]
            if row.state == "running" and row.pid not in (None, old_pid) and row.health == "healthy":
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{name} not back within {seconds} s: {self.rows()[name]}")


class SteadyLoad(threading.Thread):
    """A few operations a second, round robin: a conversation, an indexed document, an MCP write, an approval.

    Only what the suite acknowledged (a 2xx answer, a tool result that is not an error) is recorded.
    """

    def __init__(self, suite: Suite, collection: str = "chaos") -> None:
        super().__init__(daemon=True)
        self.suite, self.collection = suite, collection
        self.ack = Acknowledged()
        self.failures: list[str] = []
        self.stop_event = threading.Event()
        self.http = httpx.Client(timeout=60, trust_env=False)
        self.developer = Mcp(suite.url("MCP_PORT"), suite.developer)
        self.owner = Mcp(suite.url("MCP_PORT"), suite.owner)
        (suite.data / "documents" / collection).mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        steps = itertools.cycle((self.conversation, self.document, self.write, self.approval))
        for n in itertools.count():
            if self.stop_event.is_set():
                return
            step = next(steps)
            try:
                step(n)
            except (httpx.HTTPError, RuntimeError, KeyError, ValueError, StopIteration) as exc:
                self.failures.append(f"{step.__name__}: {type(exc).__name__}: {exc}"[:300])
            time.sleep(0.2)

    def stop(self) -> Acknowledged:
        self.stop_event.set()
        self.join(timeout=120)
        return self.ack

    def conversation(self, n: int) -> None:
        text = f"remember the number {n}"
        answer = self.http.post(f"{self.suite.url('API_GATEWAY_PORT')}/v1/conversations",
                                json={"items": [{"type": "message", "role": "user", "content": text}]})
        answer.raise_for_status()
        self.ack.conversations[answer.json()["id"]] = text

    def document(self, n: int) -> None:
        path = f"{self.collection}/note-{n}.md"
        (self.suite.data / "documents" / path).write_text(f"# Note {n}\nThe chaos note number {n} is kept.\n")
        answer = self.http.post(f"{self.suite.url('RAG_PORT')}/index",
                                json={"collection": self.collection, "paths": [path]}, timeout=120)
        answer.raise_for_status()
        self.ack.documents[path] = answer.json()["chunks_added"]

    def write(self, n: int) -> None:
        path = str(self.suite.work / f"written-{n}.txt")
        result = self.developer.call("write_file", {"path": path, "content": f"written {n}"})
        if result.get("isError"):
            raise RuntimeError(str(result)[:200])
        self.ack.written.append(path)

    def approval(self, n: int) -> None:
        result = self.owner.call("run_command", {"command": f"echo approval-{n}", "working_dir": str(self.suite.work)})
        pending = json.loads(result["content"][0]["text"])
        if pending.get("status") != "pending":
            raise RuntimeError(str(pending)[:200])
        self.ack.approvals.append(pending["request_id"])


def missing(suite: Suite, ack: Acknowledged, collection: str = "chaos") -> list[str]:
    """What was acknowledged but is gone: conversations, documents (and their chunks), audit rows, approvals."""
    lost: list[str] = []
    http = httpx.Client(timeout=60, trust_env=False)
    for conversation, text in ack.conversations.items():
        items = http.get(f"{suite.url('API_GATEWAY_PORT')}/v1/conversations/{conversation}/items")
        if items.status_code != 200 or text not in json.dumps(items.json()):
            lost.append(f"conversation {conversation}")
    if ack.documents:
        listed = http.get(f"{suite.url('RAG_PORT')}/collections/{collection}/documents").json()["documents"]
        chunks = {row["path"]: row["chunks"] for row in listed}
        for path, added in ack.documents.items():
            if path not in chunks or chunks[path] < added:
                lost.append(f"document {path}")
    db = sqlite3.connect(f"file:{suite.data / 'security' / 'security.db'}?mode=ro", uri=True)
    try:
        audited = "\n".join(row[0] for row in db.execute("SELECT args FROM audit_log WHERE tool = 'write_file'"))
        lost += [f"audit row of write_file {path}" for path in ack.written if path not in audited]
        requests = {row[0] for row in db.execute("SELECT id FROM approval_requests")}
        lost += [f"approval {rid}" for rid in ack.approvals if rid not in requests]
    finally:
        db.close()
    return lost
