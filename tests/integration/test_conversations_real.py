"""Conversations on the real phase-1 stack: the official openai client, the bundled model, a 1,024-token context."""

from __future__ import annotations

import os
import signal

import httpx
import openai
import pytest

from tests.support.metrics import metric
from tests.support.procs import Service

pytestmark = pytest.mark.integration


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="local", max_retries=0, timeout=120)


def test_create_add_list_chat_and_delete_with_the_openai_client(client: openai.OpenAI, gateway_url: str) -> None:
    conversation = client.conversations.create(
        metadata={"source": "test"}, items=[{"type": "message", "role": "system", "content": "Answer in one line."}])
    client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "user", "content": "My name is Ada."},
        {"type": "message", "role": "assistant", "content": "Nice to meet you, Ada."}])
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is my name?"}], max_tokens=24, temperature=0,
        extra_body={"conversation": conversation.id})
    answer = raw.parse().choices[0].message.content or ""
    assert answer.strip()
    assert raw.headers["x-ai-suite-history-omitted"] == "0" and raw.headers["x-ai-suite-model"] == "chat-7b"

    stream = client.chat.completions.create(
        model="chat-7b", messages=[{"role": "user", "content": "Say it again."}], max_tokens=16, temperature=0,
        stream=True, extra_body={"conversation": conversation.id})
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [(i.role, i.content[0].text) for i in items] == [
        ("system", "Answer in one line."), ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"), ("assistant", answer), ("user", "Say it again."), ("assistant", streamed)]
    assert items[4].model_extra["model"] == "chat-7b"
    assert items[4].model_extra["route_reason"].startswith("auto:")

    listed = httpx.get(f"{gateway_url}/v1/conversations", timeout=30).json()
    assert listed["data"][0]["id"] == conversation.id and listed["data"][0]["title"] == "My name is Ada."
    found = httpx.get(f"{gateway_url}/v1/conversations", params={"query": "name is ada"}, timeout=30).json()
    assert conversation.id in [c["id"] for c in found["data"]]

    assert client.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conversation.id)
    found = httpx.get(f"{gateway_url}/v1/conversations", params={"query": "name is ada"}, timeout=30).json()
    assert conversation.id not in [c["id"] for c in found["data"]]


LONG_TURNS = [
    "Tell me about the history of the printing press and how it changed the spread of knowledge in Europe. " * 3,
    "파일을 읽는 방법과 한국어 문장을 토큰으로 나누는 방법을 자세히 설명해 주세요. 오늘 날씨도 알려 주세요. " * 3,
    "Here are my order numbers: 1234567890, 9876543210, 5555512345, 3141592653, 2718281828. Which is largest? " * 2,
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nExplain this code and its complexity. " * 3,
]


def test_a_long_conversation_never_outgrows_the_context(own_gateway: Service) -> None:
    """Far more than 1,024 tokens of English, Korean, digits and code: every turn is answered, old turns give way."""
    url = own_gateway.health_url.removesuffix("/health")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0, timeout=300)
    conversation = client.conversations.create(items=[{"type": "message", "role": "system", "content": "Be brief."}])
    omitted = []
    for n in range(8):
        raw = client.chat.completions.with_raw_response.create(
            model="chat-7b", messages=[{"role": "user", "content": LONG_TURNS[n % len(LONG_TURNS)]}],
            max_tokens=16, temperature=0, stream=n % 3 == 2, extra_body={"conversation": conversation.id})
        assert raw.status_code == 200
        omitted.append(int(raw.headers["x-ai-suite-history-omitted"]))
        if n % 3 == 2:
            assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices).strip()
        else:
            assert (raw.parse().choices[0].message.content or "").strip()
    # Each turn is 200 to 700 tokens, 2,500 together: only the newest few fit beside the new question.
    assert omitted[0] == 0 and omitted[-1] >= 3
    stored = list(client.conversations.items.list(conversation.id, order="asc", limit=100))
    assert len(stored) == 1 + 2 * 8 and stored[0].role == "system"  # the store keeps everything
    page = httpx.get(f"{url}/metrics", timeout=10).text
    assert metric(page, "gateway_conversation_turns_omitted_total") == sum(omitted)


def test_an_acknowledged_item_survives_kill_9(own_gateway: Service) -> None:
    url = own_gateway.health_url.removesuffix("/health")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0, timeout=120)
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "remember 42"}])
    client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "assistant", "content": "I will remember 42."}])
    client.chat.completions.create(model="chat-7b", messages=[{"role": "user", "content": "What number?"}],
                                   max_tokens=8, extra_body={"conversation": conversation.id})
    stream = client.chat.completions.create(model="chat-7b", messages=[{"role": "user", "content": "Again?"}],
                                            max_tokens=8, stream=True, extra_body={"conversation": conversation.id})
    assert [chunk for chunk in stream]  # read to [DONE]: the exchange is acknowledged
    before = [(i.id, i.role, i.content[0].text) for i in client.conversations.items.list(conversation.id)]
    assert len(before) == 6

    assert own_gateway.proc is not None
    os.killpg(own_gateway.proc.pid, signal.SIGKILL)
    own_gateway.proc.wait(10)
    own_gateway.start(60)

    after = [(i.id, i.role, i.content[0].text) for i in client.conversations.items.list(conversation.id)]
    assert after == before
    assert client.conversations.retrieve(conversation.id).id == conversation.id
