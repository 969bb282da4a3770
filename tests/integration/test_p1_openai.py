"""Phase 1 end to end: the official openai client against the gateway of a real native stack."""

from __future__ import annotations

import time

import httpx
import openai
import psutil
import pytest

from tests.integration.conftest import RunningStack
from tests.support.procs import wait_healthy

pytestmark = pytest.mark.integration


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="local", max_retries=0, timeout=60)


def test_models_lists_names_and_aliases(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list().data}
    assert {"chat-7b", "code-7b", "auto", "gpt-3.5-turbo", "qwen2.5-14b-instruct"} <= names


def test_chat_completion_returns_real_tokens(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="chat-7b", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24,
        temperature=0,
    )
    text = resp.choices[0].message.content or ""
    assert text.strip()
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 24
    assert resp.model == "chat-7b"


def test_streamed_chat_completion(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=32,
        stream=True, temperature=0,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces).strip()


def test_auto_routes_a_coding_prompt_to_code(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Write a Python function that adds two numbers"}],
        max_tokens=16,
    )
    assert raw.headers["x-ai-suite-model"] == "code-7b"
    assert raw.parse().choices[0].message.content


def test_auto_keeps_small_talk_on_chat(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hello, how are you?"}], max_tokens=4,
    )
    assert raw.headers["x-ai-suite-model"] == "chat-7b"


def test_legacy_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="chat-7b", prompt="The sky is", max_tokens=8)
    assert resp.choices[0].text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}', 404),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}', 400),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000000}', 400),
        (b'{"model": "chat-7b", "messages": []}', 400),
        (b'{"model": "chat-7b", "messages": [{"role": "wizard", "content": "hi"}]}', 400),
    ],
)
def test_bad_input_gets_openai_style_4xx(gateway_url: str, body: bytes, status: int) -> None:
    resp = httpx.post(f"{gateway_url}/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"]


def test_oversized_body_is_refused(gateway_url: str) -> None:
    big = "x" * (5 * 1024 * 1024)
    resp = httpx.post(f"{gateway_url}/v1/chat/completions", timeout=30,
                      json={"model": "chat-7b", "messages": [{"role": "user", "content": big}]})
    assert resp.status_code == 413


def test_unknown_model_error_through_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_gateway_survives_inference_restart(p1_stack: RunningStack, client: openai.OpenAI) -> None:
    """Inference down: a clear error within the timeout, no hang. Back up: chat works, no gateway restart."""
    stack = p1_stack.stack
    row = next(s for s in stack.status() if s.name == "inference-chat")
    gateway_pid = next(s for s in stack.status() if s.name == "api-gateway").pid
    psutil.Process(row.pid).terminate()
    psutil.Process(row.pid).wait(15)

    start = time.monotonic()
    resp = httpx.post(f"{p1_stack.gateway_url}/v1/chat/completions", timeout=60,
                      json={"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    elapsed = time.monotonic() - start
    assert resp.status_code == 503
    assert "retry-after" in resp.headers
    assert resp.json()["error"]["message"]
    assert elapsed < 20  # LLM_REQUEST_TIMEOUT of this stack

    ready = httpx.get(f"{p1_stack.gateway_url}/health/readiness", timeout=10)
    assert ready.status_code == 503
    assert httpx.get(f"{p1_stack.gateway_url}/health", timeout=10).status_code == 200

    stack.up()  # starts only what is not running
    wait_healthy(f"{p1_stack.inference_url}/health", 60)
    assert next(s for s in stack.status() if s.name == "api-gateway").pid == gateway_pid
    deadline = time.monotonic() + 30  # the failed backend may still be cooling down
    while True:
        try:
            answer = client.chat.completions.create(
                model="chat-7b", messages=[{"role": "user", "content": "Say hello"}], max_tokens=8)
            break
        except openai.APIStatusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert answer.choices[0].message.content
