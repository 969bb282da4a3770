"""Locust scenarios for the suite: chat (short and streamed), /v1/models, conversations, RAG and MCP read tools.

Targets come from the environment, loopback only: LOAD_GATEWAY_URL, LOAD_RAG_URL, LOAD_MCP_URL with LOAD_MCP_KEY
(a developer key), LOAD_MCP_DIR (a folder the MCP server may read), LOAD_COLLECTION. LOAD_SCENARIOS picks a
comma-separated subset (default: all), LOAD_PROFILE a shape from tests/load/profiles.py, LOAD_RESULT_FILE where
the final statistics go as JSON (tests/load/stats.py), LOAD_WAIT_S the think time ("min,max" seconds).
A 503 or 429 with Retry-After is "shed": the client waits as told (capped) and tries again, so every task ends
in an answer or in an error that is not load shedding.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from locust import HttpUser, LoadTestShape, between, events, task
from locust.env import Environment

from tests.load.profiles import profile, stages_at
from tests.load.stats import SHED, write_results

GATEWAY = os.environ.get("LOAD_GATEWAY_URL", "http://127.0.0.1:8000")
RAG = os.environ.get("LOAD_RAG_URL", "")
MCP = os.environ.get("LOAD_MCP_URL", "")
MCP_KEY = os.environ.get("LOAD_MCP_KEY", "")
MCP_DIR = os.environ.get("LOAD_MCP_DIR", "")
COLLECTION = os.environ.get("LOAD_COLLECTION", "load")
SCENARIOS = {s.strip() for s in os.environ.get("LOAD_SCENARIOS", "all").split(",") if s.strip()}
PROFILE = os.environ.get("LOAD_PROFILE", "short")
STAGES = profile(PROFILE)
RETRY_CAP_S = float(os.environ.get("LOAD_RETRY_CAP_S", "5"))
MAX_TRIES = int(os.environ.get("LOAD_MAX_TRIES", "20"))
QUESTIONS = ("Which moon of Mars is larger?", "How do I read a file in Python?", "When do backups run?",
             "What is the capital of France?")
_counter = itertools.count()
TOLD_RETRY = re.compile(r"retry in ([0-9.]+) s")

for url in (GATEWAY, RAG, MCP):
    if url and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"load tests run on loopback only, not {url}")


def wanted(name: str) -> bool:
    return "all" in SCENARIOS or name in SCENARIOS


def retry_after(response: Any) -> float | None:
    """Seconds to wait when the answer sheds load (503/429 with a numeric Retry-After), else None."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), RETRY_CAP_S)
    except ValueError:
        return None


class SuiteUser(HttpUser):
    """One client using the suite the way a person at the workstation does, with a little think time."""

    host = GATEWAY
    wait_time = between(*(float(x) for x in os.environ.get("LOAD_WAIT_S", "0.5,1.5").split(",")))

    def send(self, method: str, url: str, name: str, *, stream: bool = False,
             check: Any = None, **kwargs: Any) -> Any:
        """One request (retried after a shed answer, as Retry-After says); returns the final response or None."""
        for _ in range(MAX_TRIES):
            started = time.perf_counter()
            with self.client.request(method, url, name=name, stream=stream, catch_response=True,
                                     timeout=180, **kwargs) as response:
                wait = retry_after(response)
                if wait is not None:
                    # kept apart (NAME [shed]) so the route's latencies are those of real answers
                    response.request_meta["name"] = f"{name} {SHED}"
                    response.failure(f"{SHED} {response.status_code} Retry-After {response.headers['Retry-After']}")
                    time.sleep(wait)
                    continue
                if not response.status_code:  # no HTTP answer at all: refused, reset or timed out
                    response.failure(f"no answer: {type(response.error).__name__}: {response.error}"[:200])
                    return None
                if response.status_code >= 400:
                    response.failure(f"HTTP {response.status_code}: {response.text[:120]}")
                    return None
                try:
                    problem = check(response) if check else None
                except Exception as exc:  # noqa: BLE001 - any broken body is this request's failure
                    problem = (f"bad body (HTTP {response.status_code}, {response.text[:60]!r}): "
                               f"{type(exc).__name__}: {exc}")
                if stream:  # the whole stream, not only its headers
                    response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                told = TOLD_RETRY.search(problem or "")
                if problem and problem.startswith(SHED) and told:
                    response.request_meta["name"] = f"{name} {SHED}"
                    response.failure(problem)
                    time.sleep(min(float(told.group(1)), RETRY_CAP_S))
                    continue
                if problem:
                    response.failure(problem)
                    return None
                response.success()
                return response
        return None

    def chat_body(self, stream: bool, **extra: Any) -> dict[str, Any]:
        question = QUESTIONS[next(_counter) % len(QUESTIONS)]
        return {"model": "chat-7b", "messages": [{"role": "user", "content": question}], "max_tokens": 8,
                "temperature": 0, "stream": stream, **extra}

    @task(2)
    def models(self) -> None:
        if wanted("models"):
            self.send("GET", f"{GATEWAY}/v1/models", "GET /v1/models",
                      check=lambda r: None if r.json()["data"] else "no models")

    @task(2)
    def chat(self) -> None:
        if wanted("chat"):
            self.send("POST", f"{GATEWAY}/v1/chat/completions", "POST /v1/chat/completions",
                      json=self.chat_body(False), check=lambda r: None if r.json()["choices"] else "no choices")

    @task(2)
    def chat_stream(self) -> None:
        if wanted("chat_stream"):
            self.send("POST", f"{GATEWAY}/v1/chat/completions", "POST /v1/chat/completions (stream)",
                      stream=True, json=self.chat_body(True), check=stream_done)

    @task(1)
    def conversation(self) -> None:
        if not wanted("conversations"):
            return
        created = self.send("POST", f"{GATEWAY}/v1/conversations", "POST /v1/conversations",
                            json={"metadata": {"source": "load"}})
        if created is None:
            return
        conversation = created.json()["id"]
        answered = self.send("POST", f"{GATEWAY}/v1/chat/completions", "POST /v1/chat/completions (conversation)",
                             json=self.chat_body(False, conversation=conversation))
        if answered is None:  # refused or failed (counted there): nothing was meant to be stored
            return
        self.send("GET", f"{GATEWAY}/v1/conversations/{conversation}/items", "GET /v1/conversations/{id}/items",
                  check=lambda r: None if len(r.json()["data"]) >= 2 else "the exchange was not stored")

    @task(3)
    def rag_search(self) -> None:
        if RAG and wanted("search"):
            self.send("POST", f"{RAG}/search", "POST /search", json={
                "query": QUESTIONS[next(_counter) % len(QUESTIONS)], "collection": COLLECTION, "top_k": 3},
                check=lambda r: None if r.json()["results"] else "no results")

    @task(1)
    def rag_query(self) -> None:
        if RAG and wanted("query"):
            self.send("POST", f"{RAG}/query", "POST /query", json={
                "query": QUESTIONS[next(_counter) % len(QUESTIONS)], "collection": COLLECTION, "top_k": 2},
                check=lambda r: None if "answer" in r.json() else "no answer")

    @task(2)
    def mcp_read(self) -> None:
        if not (MCP and MCP_KEY and wanted("mcp")):
            return
        session = getattr(self, "_mcp_session", None)
        if session is None:
            session = self._mcp_session = self.mcp_open()
            if session is None:
                return
        tool, args = (("list_files", {"path": MCP_DIR}) if next(_counter) % 2 else
                      ("read_file", {"path": os.path.join(MCP_DIR, "readme.md")}))
        self.send("POST", f"{MCP}/mcp", f"MCP {tool}", headers=self.mcp_headers(session),
                  json={"jsonrpc": "2.0", "id": next(_counter), "method": "tools/call",
                        "params": {"name": tool, "arguments": args}}, check=mcp_result)

    def mcp_headers(self, session: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {MCP_KEY}", "Accept": "application/json, text/event-stream"}
        if session:
            headers["mcp-session-id"] = session
        return headers

    def mcp_open(self) -> str | None:
        """The MCP handshake (initialize, then initialized); the session id, or None."""
        opened = self.send("POST", f"{MCP}/mcp", "MCP initialize", headers=self.mcp_headers(), json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "locust", "version": "1"}}}, check=mcp_result)
        if opened is None:
            return None
        session = opened.headers.get("mcp-session-id")
        self.client.post(f"{MCP}/mcp", name="MCP initialized", headers=self.mcp_headers(session),
                         json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        return session


def stream_done(response: Any) -> str | None:
    text = ""
    done = False
    for line in response.iter_lines():
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        payload = json.loads(data)
        if "error" in payload:
            return f"stream error: {payload['error']}"
        for choice in payload.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    return None if done else "the stream ended without [DONE]"


def mcp_result(response: Any) -> str | None:
    """A JSON-RPC answer (plain JSON or one SSE event) that is not an error."""
    body = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        body = next((line[5:].strip() for line in body.splitlines() if line.startswith("data:")), "{}")
    message = json.loads(body)
    if "error" in message:
        return f"MCP error: {message['error']}"
    result = message.get("result") or {}
    if result.get("isError"):
        text = "".join(item.get("text", "") for item in result.get("content", []))
        # the gate's rate limit says when to come back ("retry in 0.02 s"): the MCP form of 429 + Retry-After
        return f"{SHED} MCP {text[:120]}" if TOLD_RETRY.search(text) else f"MCP tool error: {text[:120]}"
    return None


class Profile(LoadTestShape):
    """The stages of LOAD_PROFILE: (until_second, users, spawn_rate) each; the run stops after the last."""

    def tick(self) -> tuple[int, float] | None:
        return stages_at(STAGES, self.get_run_time())


@events.quitting.add_listener
def _save(environment: Environment, **_: Any) -> None:
    path = os.environ.get("LOAD_RESULT_FILE")
    if path:
        write_results(environment, path, profile=PROFILE, run_id=uuid.uuid4().hex)
