"""Chat completions with `conversation`: history in front, the exchange stored after, the context never overrun."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_openai import Behaviour, FakeBackend
from tests.support.gateway import gateway_client, gateway_on_port, gateway_settings
from tests.support.metrics import metric


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, FakeBackend]]:
    started = {"chat": FakeBackend("chat").start(), "code": FakeBackend("code").start()}
    yield started
    for backend in started.values():
        backend.stop()


@pytest.fixture
def chat_b(backends: dict[str, FakeBackend]) -> Behaviour:
    backends["chat"].behaviour.__init__(name="chat")
    backends["code"].behaviour.__init__(name="code")
    return backends["chat"].behaviour


def settings_for(backends: dict[str, FakeBackend], tmp_path: Path, **env: object):
    return gateway_settings(backends["chat"].api_base, backends["code"].api_base, tmp_path, **env)


@pytest.fixture
async def gw(backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(settings_for(backends, tmp_path)) as client:
        yield client


async def new_conversation(client: httpx.AsyncClient, *items: dict) -> str:
    response = await client.post("/v1/conversations", json={"items": list(items)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def items_of(client: httpx.AsyncClient, conversation_id: str) -> list[dict]:
    response = await client.get(f"/v1/conversations/{conversation_id}/items", params={"order": "asc", "limit": 100})
    return response.json()["data"]


def text_of(item: dict) -> str:
    return "".join(part["text"] for part in item["content"])


def sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


async def test_the_exchange_is_stored_with_the_model_and_the_reason(gw: httpx.AsyncClient, chat_b: Behaviour) -> None:
    conversation_id = await new_conversation(gw)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a Python loop"}]
    body = {"model": "auto", "conversation": conversation_id, "max_tokens": 5, "messages": messages}
    response = await gw.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-ai-suite-conversation"] == conversation_id
    assert response.headers["x-ai-suite-history-omitted"] == "0"
    stored = await items_of(gw, conversation_id)
    # The request's system message steers this request only; the exchange is what is kept.
    assert [(i["role"], text_of(i)) for i in stored] == [("user", "Write a Python loop"), ("assistant", "code:code-7b")]
    answer = stored[-1]
    assert answer["model"] == "code-7b" and answer["route_reason"] == "auto: keyword 'loop'"
    assert answer["status"] == "incomplete"  # the fake stops at max_tokens ("length")
    second = {"model": "chat-7b", "conversation": {"id": conversation_id},
              "messages": [{"role": "user", "content": "and now?"}]}
    assert (await gw.post("/v1/chat/completions", json=second)).status_code == 200
    assert [m["content"] for m in chat_b.seen[-1]["messages"]] == ["Write a Python loop", "code:code-7b", "and now?"]
    assert (await gw.get("/v1/conversations")).json()["data"][0]["title"] == "Write a Python loop"


async def test_a_stream_passes_unchanged_and_is_stored_before_done(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path
) -> None:
    with gateway_on_port(settings_for(backends, tmp_path)) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            plain = await client.post("/v1/chat/completions", json={
                "model": "chat-7b", "stream": True, "messages": [{"role": "user", "content": "hello"}]})
            conversation_id = await new_conversation(client)
            body = {"model": "chat-7b", "stream": True, "conversation": conversation_id,
                    "messages": [{"role": "user", "content": "hello"}]}
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.headers["x-ai-suite-history-omitted"] == "0"
                assert response.headers["content-type"].startswith("text/event-stream")
                received = b""
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if b"data: [DONE]" in received:
                        # The items are committed before [DONE] leaves the gateway.
                        stored = await items_of(client, conversation_id)
                        break
    assert received == plain.content
    assert [(i["role"], i["status"], text_of(i)) for i in stored] == [
        ("user", "completed", "hello"), ("assistant", "completed", "chat:chat-7b#0 chat:chat-7b#1 chat:chat-7b#2 ")]


async def test_a_stream_broken_by_the_backend_keeps_what_came_as_incomplete(
    gw: httpx.AsyncClient, chat_b: Behaviour
) -> None:
    chat_b.chunks, chat_b.break_after = 5, 2
    conversation_id = await new_conversation(gw)
    response = await gw.post("/v1/chat/completions", json={
        "model": "chat-7b", "stream": True, "conversation": conversation_id,
        "messages": [{"role": "user", "content": "tell me"}]})
    assert json.loads(sse_data(response.text)[-2])["error"]["code"] == "upstream_stream_broken"
    answer = (await items_of(gw, conversation_id))[-1]
    assert (answer["status"], text_of(answer)) == ("incomplete", "chat:chat-7b#0 chat:chat-7b#1 ")


async def test_a_stream_the_client_stops_keeps_what_was_produced(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path
) -> None:
    chat_b.chunks, chat_b.chunk_delay_s = 200, 0.02
    with gateway_on_port(settings_for(backends, tmp_path)) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            conversation_id = await new_conversation(client)
            body = {"model": "chat-7b", "stream": True, "conversation": conversation_id,
                    "messages": [{"role": "user", "content": "a long story"}]}
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                seen = 0
                async for line in response.aiter_lines():
                    seen += line.startswith("data: ")
                    if seen == 3:
                        break  # Stop after three tokens
            # The exchange is stored `in_progress` when the stream starts; the stop finalises the answer.
            deadline = time.monotonic() + 10
            while (len(stored := await items_of(client, conversation_id)) < 2
                   or stored[-1]["status"] == "in_progress"):
                assert time.monotonic() < deadline, "the stopped exchange was not finalised"
                await asyncio.sleep(0.02)
    assert chat_b.streams_abandoned == 1  # the backend was told to stop
    user, answer = stored
    assert text_of(user) == "a long story" and answer["status"] == "incomplete"
    assert text_of(answer).startswith("chat:chat-7b#0 chat:chat-7b#1 chat:chat-7b#2 ")
    assert "#199" not in text_of(answer)


@pytest.mark.parametrize("status", [422, 503])
async def test_a_backend_error_stores_nothing(
    gw: httpx.AsyncClient, chat_b: Behaviour, backends: dict[str, FakeBackend], status: int
) -> None:
    chat_b.status = backends["code"].behaviour.status = status  # 422 passes through, 503 fails over, then 503
    conversation_id = await new_conversation(gw, {"role": "user", "content": "earlier"})
    for stream in (False, True):
        response = await gw.post("/v1/chat/completions", json={
            "model": "chat-7b", "stream": stream, "conversation": conversation_id,
            "messages": [{"role": "user", "content": "lost"}]})
        assert response.status_code == status
    assert [text_of(i) for i in await items_of(gw, conversation_id)] == ["earlier"]


def turn(n: int, words: int = 60) -> list[dict]:
    return [{"role": "user", "content": f"question {n}: " + "lorem ipsum dolor " * words},
            {"role": "assistant", "content": f"answer {n}: " + "sit amet consectetur " * words}]


async def test_old_turns_give_way_and_the_system_prompt_stays(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path
) -> None:
    # A backend that says nothing about its context: the configured default (here small) is the budget.
    settings = settings_for(backends, tmp_path, CONVERSATION_DEFAULT_CONTEXT=1024)
    async with gateway_client(settings) as client:
        items = [{"role": "system", "content": "You are a pirate."}] + [m for n in range(8) for m in turn(n)]
        conversation_id = await new_conversation(client, *items[:17])
        response = await client.post("/v1/chat/completions", json={
            "model": "chat-7b", "conversation": conversation_id, "max_tokens": 100,
            "messages": [{"role": "user", "content": "what did I ask first?"}]})
        assert response.status_code == 200
        omitted = int(response.headers["x-ai-suite-history-omitted"])
        sent = chat_b.seen[-1]["messages"]
        assert sent[0] == {"role": "system", "content": "You are a pirate."}
        assert sent[-1]["content"] == "what did I ask first?"
        kept = [m["content"].split(":")[0] for m in sent[1:-1]]
        assert 0 < omitted < 8 and len(kept) == 2 * (8 - omitted)
        assert kept[-2:] == ["question 7", "answer 7"]  # the newest turns stay, whole and in order
        page = (await client.get("/metrics")).text
        assert metric(page, "gateway_conversation_turns_omitted_total") == omitted
        assert metric(page, "gateway_conversation_trims_total") == 1
        assert len(await items_of(client, conversation_id)) == 17 + 2  # nothing stored is ever dropped


async def test_too_long_for_the_backend_is_sent_again_with_less(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path
) -> None:
    # The budget (default 4096 tokens) lets every turn in, but the backend refuses long prompts, as a model
    # whose tokenizer counts more than the estimate would; streamed or not, the answer still comes.
    chat_b.max_prompt_chars = 3000
    async with gateway_client(settings_for(backends, tmp_path)) as client:
        conversation_id = await new_conversation(client, *[m for n in range(8) for m in turn(n, 20)])
        for stream in (False, True):
            response = await client.post("/v1/chat/completions", json={
                "model": "chat-7b", "conversation": conversation_id, "stream": stream,
                "messages": [{"role": "user", "content": "and?"}]})
            assert response.status_code == 200, response.text
            assert int(response.headers["x-ai-suite-history-omitted"]) > 0
            assert sum(len(m["content"]) for m in chat_b.seen[-1]["messages"]) <= 3000
        assert metric((await client.get("/metrics")).text, "gateway_conversation_context_refits_total") >= 2


async def test_a_new_message_too_long_by_itself_gets_the_backends_400(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path
) -> None:
    chat_b.max_prompt_chars = 100
    async with gateway_client(settings_for(backends, tmp_path)) as client:
        conversation_id = await new_conversation(client, *turn(0, 2))
        response = await client.post("/v1/chat/completions", json={
            "model": "chat-7b", "conversation": conversation_id, "messages": [{"role": "user", "content": "x" * 500}]})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"
        assert len(await items_of(client, conversation_id)) == 2


@pytest.mark.parametrize("usage", [True, False])
async def test_the_real_prompt_size_from_a_usage_chunk_tunes_the_fit(
    backends: dict[str, FakeBackend], chat_b: Behaviour, tmp_path: Path, usage: bool
) -> None:
    # The fake reports 1 prompt token: far below the estimate, so a learned ratio lets more turns in.
    settings = settings_for(backends, tmp_path, CONVERSATION_DEFAULT_CONTEXT=1024)
    async with gateway_client(settings) as client:
        conversation_id = await new_conversation(client, *[m for n in range(8) for m in turn(n)])
        omitted = []
        for _ in range(2):
            body = {"model": "chat-7b", "conversation": conversation_id, "stream": True, "max_tokens": 100,
                    "messages": [{"role": "user", "content": "next?"}]}
            if usage:
                body["stream_options"] = {"include_usage": True}
            response = await client.post("/v1/chat/completions", json=body)
            omitted.append(int(response.headers["x-ai-suite-history-omitted"]))
    assert omitted[0] > 0
    if usage:
        assert omitted[1] < omitted[0]
    else:
        assert omitted[1] >= omitted[0]
