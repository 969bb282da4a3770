"""The stock LiteLLM proxy (GATEWAY_ENGINE=litellm) runs our generated config: aliases, `auto`, fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_openai import FakeBackend
from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def litellm_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeBackend, FakeBackend]]:
    chat, code = FakeBackend("chat").start(), FakeBackend("code").start()
    port = free_port()
    data = tmp_path_factory.mktemp("litellm")
    env = {"GATEWAY_ENGINE": "litellm", "API_GATEWAY_PORT": str(port), "CHAT_API_BASE": chat.api_base,
           "CODE_API_BASE": code.api_base, "DATA_DIR": str(data), "GATEWAY_MAX_RETRIES": "0",
           "LLM_REQUEST_TIMEOUT": "10"}
    service = Service("litellm", python_module("services.gateway"), env,
                      f"http://127.0.0.1:{port}/health/liveliness", data / "litellm.log")
    service.start(deadline_s=120)
    try:
        yield f"http://127.0.0.1:{port}", chat, code
    finally:
        service.stop()
        chat.stop()
        code.stop()
    assert Path(data / "gateway" / "litellm.yaml").exists()


def ask(base: str, model: str, content: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 1}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30, trust_env=False)


Gateway = tuple[str, FakeBackend, FakeBackend]


def test_alias_reaches_chat(litellm_gateway: Gateway) -> None:
    base, chat, _ = litellm_gateway
    response = ask(base, "qwen2.5-14b-instruct", "hello")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "chat:chat-7b"


def test_auto_routes_a_coding_prompt_to_code_and_small_talk_to_chat(litellm_gateway: Gateway) -> None:
    base, chat, code = litellm_gateway
    seen_chat = len(chat.behaviour.seen)
    coding = ask(base, "auto", "fix this python function: def f(x): return x +")
    assert coding.status_code == 200, coding.text
    assert coding.json()["choices"][0]["message"]["content"] == "code:code-7b"
    assert len(chat.behaviour.seen) == seen_chat
    talk = ask(base, "auto", "What should I cook tonight?")
    assert talk.json()["choices"][0]["message"]["content"] == "chat:chat-7b"


def test_alias_falls_back_to_code_when_chat_fails(litellm_gateway: Gateway) -> None:
    base, chat, _ = litellm_gateway
    chat.behaviour.status = 500
    response = ask(base, "gpt-3.5-turbo", "tell me a joke")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "code:code-7b"
