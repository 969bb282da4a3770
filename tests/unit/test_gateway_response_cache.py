"""The gateway's opt-in exact-response cache, in front of a real HTTP backend that counts what reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_openai import Behaviour, FakeBackend
from tests.support.gateway import gateway_client, gateway_settings
from tests.support.metrics import metric

HI = [{"role": "user", "content": "hi"}]
DETERMINISTIC = {"model": "chat-7b", "messages": HI, "temperature": 0, "seed": 7, "max_tokens": 8}


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackend]:
    started = FakeBackend("chat").start()
    yield started
    started.stop()


@pytest.fixture
def chat(backend: FakeBackend) -> Behaviour:
    backend.behaviour.__init__(name="chat")  # fresh for every test
    return backend.behaviour


def settings(backend: FakeBackend, tmp_path: Path, **env: object):  # noqa: ANN201 - GatewaySettings
    return gateway_settings(backend.api_base, backend.api_base, tmp_path, GATEWAY_RESPONSE_CACHE=True, **env)


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(
    backend: FakeBackend, chat: Behaviour, tmp_path: Path
) -> None:
    async with gateway_client(settings(backend, tmp_path)) as client:
        first = await client.post("/v1/chat/completions", json=DETERMINISTIC)
        second = await client.post("/v1/chat/completions", json=dict(reversed(list(DETERMINISTIC.items()))))
        changed = await client.post("/v1/chat/completions", json={**DETERMINISTIC, "seed": 8})
        page = (await client.get("/metrics")).text
    assert len(chat.seen) == 2  # the reordered repeat never reached the backend; the new seed did
    assert first.headers["x-ai-suite-cache"] == "miss" and second.headers["x-ai-suite-cache"] == "hit"
    assert changed.headers["x-ai-suite-cache"] == "miss"
    assert second.content == first.content and second.headers["x-ai-suite-model"] == "chat-7b"
    assert second.headers["content-type"] == first.headers["content-type"]
    assert metric(page, "gateway_response_cache_hits_total") == 1
    assert metric(page, "gateway_response_cache_misses_total") == 2


async def test_a_stream_is_replayed_byte_for_byte(backend: FakeBackend, chat: Behaviour, tmp_path: Path) -> None:
    body = {**DETERMINISTIC, "stream": True}
    async with gateway_client(settings(backend, tmp_path)) as client:
        first = await client.post("/v1/chat/completions", json=body)
        second = await client.post("/v1/chat/completions", json=body)
        plain = await client.post("/v1/chat/completions", json=DETERMINISTIC)
    assert len(chat.seen) == 2  # streamed and not streamed are different answers
    assert second.headers["x-ai-suite-cache"] == "hit" and plain.headers["x-ai-suite-cache"] == "miss"
    assert second.content == first.content and second.content.endswith(b"data: [DONE]\n\n")
    assert second.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("variation", [
    {"temperature": 0.7}, {"seed": None}, {"seed": True}, {"n": 2}, {"temperature": False},
])
async def test_requests_that_may_answer_differently_are_never_cached(
    backend: FakeBackend, chat: Behaviour, tmp_path: Path, variation: dict
) -> None:
    body = {key: value for key, value in {**DETERMINISTIC, **variation}.items() if value is not None}
    async with gateway_client(settings(backend, tmp_path)) as client:
        answers = [await client.post("/v1/chat/completions", json=body) for _ in range(2)]
    assert len(chat.seen) == 2
    assert all("x-ai-suite-cache" not in answer.headers for answer in answers)


async def test_a_broken_stream_or_an_error_is_not_kept(backend: FakeBackend, chat: Behaviour, tmp_path: Path) -> None:
    chat.break_after = 1
    async with gateway_client(settings(backend, tmp_path)) as client:
        broken = await client.post("/v1/chat/completions", json={**DETERMINISTIC, "stream": True})
        chat.break_after = None
        chat.status = 400
        refused = await client.post("/v1/chat/completions", json=DETERMINISTIC)
        chat.status = None
        after = [await client.post("/v1/chat/completions", json=body)
                 for body in ({**DETERMINISTIC, "stream": True}, DETERMINISTIC)]
    assert b"upstream_stream_broken" in broken.content and refused.status_code == 400
    assert [answer.headers["x-ai-suite-cache"] for answer in after] == ["miss", "miss"]
    assert len(chat.seen) == 4


async def test_the_cache_is_off_by_default_and_never_holds_conversations(
    backend: FakeBackend, chat: Behaviour, tmp_path: Path
) -> None:
    plain = gateway_settings(backend.api_base, backend.api_base, tmp_path)
    async with gateway_client(plain) as client:
        answers = [await client.post("/v1/chat/completions", json=DETERMINISTIC) for _ in range(2)]
    assert len(chat.seen) == 2 and all("x-ai-suite-cache" not in a.headers for a in answers)
    async with gateway_client(settings(backend, tmp_path / "on")) as client:
        conversation = (await client.post("/v1/conversations", json={})).json()["id"]
        for _ in range(2):
            answer = await client.post("/v1/chat/completions", json={**DETERMINISTIC, "conversation": conversation})
            assert answer.status_code == 200, answer.text
            assert "x-ai-suite-cache" not in answer.headers
    assert len(chat.seen) == 4


async def test_the_cache_stays_within_its_entry_bound(backend: FakeBackend, chat: Behaviour, tmp_path: Path) -> None:
    async with gateway_client(settings(backend, tmp_path, GATEWAY_RESPONSE_CACHE_ENTRIES=2)) as client:
        for seed in (1, 2, 3, 1):  # the third answer pushes out the first
            await client.post("/v1/chat/completions", json={**DETERMINISTIC, "seed": seed})
        page = (await client.get("/metrics")).text
    assert len(chat.seen) == 4 and metric(page, "gateway_response_cache_hits_total") == 0
