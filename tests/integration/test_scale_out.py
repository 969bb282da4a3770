"""The gateway in front of two real inference services (bundled model), the second one registered as an
external OpenAI-compatible backend of the chat model through CHAT_API_BASES."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from services.stack.runner import Stack
from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration

REPLICA_NAME = "chat-replica"  # what the second service calls its model, so its answers say who answered


def inference(name: str, alias: str, models_dir: Path, work: Path) -> Service:
    port = free_port()
    env = {"INFERENCE_PORT": str(port), "MODEL_ALIAS": alias, "MODELS_DIR": str(models_dir), "DATA_DIR": str(work),
           "N_THREADS": "1", "N_CTX": "512", "LOG_JSON": "false"}
    return Service(name, python_module("services.inference"), env, f"http://127.0.0.1:{port}/health",
                   work / f"{name}.log")


@pytest.fixture(scope="module")
def pool(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Service]]:
    work = tmp_path_factory.mktemp("scale-out")
    first = inference("inference-chat", "chat-7b", models_dir, work).start()
    replica = inference("inference-chat-2", REPLICA_NAME, models_dir, work).start()
    port = free_port()
    base = first.health_url.replace("/health", "/v1")
    env = {"API_GATEWAY_PORT": str(port), "DATA_DIR": str(work), "LOG_JSON": "false",
           "CHAT_API_BASE": base, "CODE_API_BASE": base,
           "CHAT_API_BASES": f"{replica.health_url.replace('/health', '/v1')}|model={REPLICA_NAME}",
           "GATEWAY_COOLDOWN_SECONDS": "30", "GATEWAY_MAX_RETRIES": "0", "LLM_REQUEST_TIMEOUT": "120"}
    gateway = Service("api-gateway", python_module("services.gateway"), env,
                      f"http://127.0.0.1:{port}/health/liveliness", work / "api-gateway.log").start()
    try:
        yield f"http://127.0.0.1:{port}", replica
    finally:
        for service in (gateway, replica, first):
            service.stop()


def ask(base_url: str) -> httpx.Response:
    body = {"model": "chat-7b", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8,
            "temperature": 0}
    with httpx.Client(base_url=base_url, timeout=180, trust_env=False) as client:
        return client.post("/v1/chat/completions", json=body)


def test_concurrent_requests_are_answered_by_both_services(pool: tuple[str, Service]) -> None:
    base_url, _ = pool
    with ThreadPoolExecutor(4) as threads:
        responses = list(threads.map(lambda _: ask(base_url), range(4)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert all(r.json()["choices"][0]["message"]["content"].strip() for r in responses)
    assert {r.headers["x-ai-suite-model"] for r in responses} == {"chat-7b"}
    assert {r.json()["model"] for r in responses} == {"chat-7b", REPLICA_NAME}


def test_a_stopped_replica_is_failed_over(pool: tuple[str, Service]) -> None:
    base_url, replica = pool
    replica.stop()
    with ThreadPoolExecutor(2) as threads:
        responses = list(threads.map(lambda _: ask(base_url), range(2)))
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert {r.json()["model"] for r in responses} == {"chat-7b"}
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as client:
        readiness = client.get("/health/readiness").json()
    assert readiness["dependencies"]["chat-7b"] == "ok"
    assert readiness["backends"]["chat-7b"][replica.health_url.replace("/health", "/v1")].startswith("unavailable")


def completions_served(base_url: str) -> float:
    """The chat completions an inference service answered, from its /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=30, trust_env=False).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_requests_total{") and 'handler="/v1/chat/completions"' in line)


def test_native_replicas_share_the_requests(models_dir: Path, tmp_path: Path) -> None:
    gateway_port, inference_port = free_port(), free_port()
    env = {"API_GATEWAY_PORT": str(gateway_port), "INFERENCE_PORT": str(inference_port),
           "DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(models_dir), "LLM_REQUEST_TIMEOUT": "120",
           "LOG_JSON": "false", "N_CTX": "512", "N_THREADS": "1"}
    stack = Stack("p1", env=env, replicas={"inference-chat": 2})
    replica_port = stack.services["inference-chat-2"].ports[0].port
    stack.up()
    try:
        with ThreadPoolExecutor(4) as threads:
            responses = list(threads.map(lambda _: ask(f"http://127.0.0.1:{gateway_port}"), range(4)))
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        served = [completions_served(f"http://127.0.0.1:{port}") for port in (inference_port, replica_port)]
        assert sum(served) == 4 and min(served) >= 1, served
    finally:
        stack.down()
