"""Failover between two real inference processes (bundled model) behind the real gateway."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration

COOLDOWN_S = 2.0
MODEL_HEADER = "x-ai-suite-model"


@dataclass
class Suite:
    chat: Service
    code: Service
    gateway_url: str
    work: Path
    spares: list[Service] = field(default_factory=list)

    def restart(self, old: Service) -> Service:
        """A fresh process for a stopped backend, on the same port and with the same settings."""
        new = Service(old.name, old.argv, old.env, old.health_url, old.log_path)
        self.spares.append(new)
        return new.start()


def inference(name: str, alias: str, models_dir: Path, work: Path) -> Service:
    port = free_port()
    env = {"INFERENCE_PORT": str(port), "MODEL_ALIAS": alias, "MODELS_DIR": str(models_dir), "DATA_DIR": str(work),
           "N_THREADS": "1", "N_CTX": "1024", "LOG_JSON": "false"}
    return Service(name, python_module("services.inference"), env, f"http://127.0.0.1:{port}/health",
                   work / f"{name}.log")


@pytest.fixture(scope="module")
def suite(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    work = tmp_path_factory.mktemp("failover")
    chat = inference("inference-chat", "chat-7b", models_dir, work).start()
    code = inference("inference-code", "code-7b", models_dir, work).start()
    port = free_port()
    env = {"API_GATEWAY_PORT": str(port), "DATA_DIR": str(work), "LOG_JSON": "false",
           "CHAT_API_BASE": chat.health_url.replace("/health", "/v1"),
           "CODE_API_BASE": code.health_url.replace("/health", "/v1"),
           "GATEWAY_COOLDOWN_SECONDS": str(COOLDOWN_S), "GATEWAY_MAX_RETRIES": "1", "LLM_REQUEST_TIMEOUT": "60"}
    gateway = Service("api-gateway", python_module("services.gateway"), env,
                      f"http://127.0.0.1:{port}/health/liveliness", work / "api-gateway.log").start()
    result = Suite(chat, code, f"http://127.0.0.1:{port}", work)
    try:
        yield result
    finally:
        for service in (gateway, chat, code, *result.spares):
            service.stop()


def ask(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
            "temperature": 0}
    return client.post("/v1/chat/completions", json=body)


class SteadyStream:
    """Sequential requests from a background thread, each one's status and answering model recorded."""

    def __init__(self, base_url: str, model: str, count: int) -> None:
        self.model, self.count = model, count
        self.results: list[tuple[int, str, str]] = []
        self.client = httpx.Client(base_url=base_url, timeout=60, trust_env=False)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self.count):
            try:
                response = ask(self.client, self.model)
                self.results.append((response.status_code, response.headers.get(MODEL_HEADER, ""),
                                     response.text[:300]))
            except httpx.HTTPError as exc:  # recorded, so the test names the failure instead of hanging
                self.results.append((0, "", repr(exc)))

    def wait_for(self, done: int, deadline_s: float = 60) -> None:
        end = time.monotonic() + deadline_s
        while len(self.results) < done and self.thread.is_alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert len(self.results) >= done, f"only {len(self.results)} of {done} requests answered: {self.results}"

    def __enter__(self) -> SteadyStream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(120)
        self.client.close()


def serves_again(base_url: str, model: str, expected: str, deadline_s: float) -> list[tuple[int, str]]:
    """Ask until `expected` answers; every answer on the way must still succeed."""
    seen: list[tuple[int, str]] = []
    end = time.monotonic() + deadline_s
    with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client:
        while time.monotonic() < end:
            response = ask(client, model)
            seen.append((response.status_code, response.headers.get(MODEL_HEADER, "")))
            assert response.status_code == 200, response.text
            if seen[-1][1] == expected:
                return seen
            time.sleep(0.2)
    raise AssertionError(f"{expected} did not take its traffic back within {deadline_s} s: {seen}")


@pytest.mark.parametrize(("stopped", "model", "standby"), [("chat", "chat-7b", "code-7b"),
                                                           ("code", "code-7b", "chat-7b")])
def test_steady_requests_survive_a_stopped_model(suite: Suite, stopped: str, model: str, standby: str) -> None:
    total, before_stop = 14, 3
    with SteadyStream(suite.gateway_url, model, total) as stream:
        stream.wait_for(before_stop)
        victim = suite.chat if stopped == "chat" else suite.code
        victim.stop()
        stream.wait_for(total, deadline_s=120)
    failures = [r for r in stream.results if r[0] != 200]
    assert failures == [], failures
    models = [r[1] for r in stream.results]
    assert models[0] == model  # it served its own traffic before it was stopped
    assert models[-1] == standby and models.count(standby) >= total - before_stop - 3, models

    replacement = suite.restart(victim)
    if stopped == "chat":
        suite.chat = replacement
    else:
        suite.code = replacement
    # cooldown only reorders backends, so the restarted one is back within the cooldown (plus a request)
    seen = serves_again(suite.gateway_url, model, model, deadline_s=COOLDOWN_S + 30)
    assert all(status == 200 for status, _ in seen)


def test_stream_broken_after_first_token_ends_with_an_error_event(suite: Suite) -> None:
    body = {"model": "chat-7b", "stream": True, "max_tokens": 600, "temperature": 0,
            "messages": [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]}
    events: list[str] = []
    with httpx.Client(base_url=suite.gateway_url, timeout=30, trust_env=False) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers[MODEL_HEADER] == "chat-7b"
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data:") and '"content"' in line:
                    events.append(line)
                    break
            assert events, "no first token"
            # the backend dies mid-answer (not a graceful stop, which would let the answer finish)
            assert suite.chat.proc is not None
            os.killpg(suite.chat.proc.pid, signal.SIGKILL)
            suite.chat.proc.wait(10)
            started = time.monotonic()
            events += [line for line in lines if line.startswith("data:")]
            elapsed = time.monotonic() - started
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data:").strip())
    assert error["error"]["code"] == "upstream_stream_broken", events[-3:]
    assert not any('"finish_reason": "length"' in e or '"finish_reason":"length"' in e for e in events)
    assert elapsed < 20  # it ended promptly instead of hanging until the client's timeout
    suite.chat = suite.restart(suite.chat)
