"""The gateway app in process, in front of real HTTP backends that speak the OpenAI protocol."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.gateway.app import create_app
from services.gateway.proxy import BackendFailed
from services.gateway.settings import GatewaySettings
from tests.support.fake_openai import Behaviour, FakeBackend, ThreadedServer
from tests.support.procs import free_port

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, FakeBackend]]:
    started = {"chat": FakeBackend("chat").start(), "code": FakeBackend("code").start()}
    yield started
    for backend in started.values():
        backend.stop()


@pytest.fixture
def chat_b(backends: dict[str, FakeBackend]) -> Behaviour:
    backends["chat"].behaviour.__init__(name="chat")  # fresh behaviour for every test
    return backends["chat"].behaviour


@pytest.fixture
def code_b(backends: dict[str, FakeBackend]) -> Behaviour:
    backends["code"].behaviour.__init__(name="code")
    return backends["code"].behaviour


def make_settings(chat_base: str, code_base: str, **env: object) -> GatewaySettings:
    values: dict[str, object] = {"CHAT_API_BASE": chat_base, "CODE_API_BASE": code_base, "LLM_REQUEST_TIMEOUT": 5,
                                 "GATEWAY_MAX_RETRIES": 1, "GATEWAY_COOLDOWN_SECONDS": 30}
    return GatewaySettings(_env_file=None, **{**values, **env})


@asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield client


@pytest.fixture
async def gw(
    backends: dict[str, FakeBackend], chat_b: Behaviour, code_b: Behaviour
) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(make_settings(backends["chat"].api_base, backends["code"].api_base)) as client:
        yield client


def sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


async def test_models_lists_every_name(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/v1/models")
    assert response.status_code == 200
    ids = {m["id"] for m in response.json()["data"]}
    assert ids == {"chat-7b", "code-7b", "auto", "gpt-3.5-turbo", "qwen2.5-14b-instruct"}


@pytest.mark.parametrize(
    ("model", "served_by", "backend_model"),
    [("chat-7b", "chat", "chat-7b"), ("code-7b", "code", "code-7b"), ("gpt-3.5-turbo", "chat", "chat-7b"),
     ("qwen2.5-14b-instruct", "chat", "chat-7b")],
)
async def test_names_reach_their_backend_under_its_own_name(
    gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour, model: str, served_by: str, backend_model: str
) -> None:
    response = await gw.post("/v1/chat/completions", json={"model": model, "messages": HI, "max_tokens": 1})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == f"{served_by}:{backend_model}"
    assert response.headers["x-ai-suite-model"] == backend_model
    seen = (chat_b if served_by == "chat" else code_b).seen
    assert seen[-1]["messages"] == HI and seen[-1]["max_tokens"] == 1


async def test_auto_sends_a_coding_prompt_to_code_and_says_why(gw: httpx.AsyncClient, code_b: Behaviour) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "이 함수가 왜 느린지 알려줘"}]}
    response = await gw.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-ai-suite-model"] == "code-7b"
    reason = unquote(response.headers["x-ai-suite-route-reason"])
    assert reason.startswith("auto: keyword") and "함수" in reason
    assert code_b.seen[-1]["model"] == "code-7b"


async def test_auto_keeps_small_talk_on_chat_and_works_for_completions(gw: httpx.AsyncClient) -> None:
    chat = await gw.post("/v1/chat/completions",
                         json={"model": "auto", "messages": [{"role": "user", "content": "Any tips for sleeping?"}]})
    assert chat.headers["x-ai-suite-model"] == "chat-7b"
    completion = await gw.post("/v1/completions", json={"model": "auto", "prompt": "def fib(n):", "max_tokens": 2})
    assert completion.status_code == 200
    assert completion.json()["choices"][0]["text"] == "code:code-7b"


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{oops", 400, "invalid_json"),
        (b'"just a string"', 400, "invalid_request"),
        (b'{"model": "chat-7b", "messages": []}', 400, "invalid_request"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', 400,
         "invalid_request"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 99999999999}', 400,
         "invalid_request"),
        (b'{"model": "llama-70b", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
    ],
)
async def test_bad_input_gets_an_openai_error_and_reaches_no_backend(
    gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour, content: bytes, status: int, code: str
) -> None:
    response = await gw.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert chat_b.seen == [] and code_b.seen == []


async def test_unknown_model_lists_the_valid_names(gw: httpx.AsyncClient) -> None:
    response = await gw.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": HI})
    assert response.status_code == 404
    assert "chat-7b" in response.json()["error"]["message"] and "auto" in response.json()["error"]["message"]


async def test_oversized_body_is_refused(backends: dict[str, FakeBackend], chat_b: Behaviour) -> None:
    settings = make_settings(backends["chat"].api_base, backends["code"].api_base, MAX_BODY_BYTES=2048)
    big = {"model": "chat-7b", "messages": [{"role": "user", "content": "x" * 5000}]}
    async with gateway(settings) as client:
        response = await client.post("/v1/chat/completions", json=big)

        async def chunked() -> AsyncIterator[bytes]:
            yield json.dumps(big).encode()

        streamed = await client.post("/v1/chat/completions", content=chunked())
    assert response.status_code == 413 and streamed.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert chat_b.seen == []


async def test_stream_passes_every_event_through(gw: httpx.AsyncClient) -> None:
    body = {"model": "chat-7b", "messages": HI, "stream": True}
    response = await gw.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-ai-suite-model"] == "chat-7b"
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    assert [json.loads(d)["choices"][0]["delta"]["content"] for d in data[:-1]] == [
        "chat:chat-7b#0 ", "chat:chat-7b#1 ", "chat:chat-7b#2 "
    ]


async def test_a_stream_broken_midway_ends_with_an_in_band_error(gw: httpx.AsyncClient, chat_b: Behaviour) -> None:
    chat_b.break_after, chat_b.chunks = 1, 5
    response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI, "stream": True})
    assert response.status_code == 200
    data = sse_data(response.text)
    assert json.loads(data[0])["choices"][0]["delta"]["content"] == "chat:chat-7b#0 "
    assert json.loads(data[1])["error"]["code"] == "upstream_stream_broken"
    assert data[2:] == ["[DONE]"]


async def test_backend_client_errors_pass_through_without_failover(
    gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour
) -> None:
    chat_b.status = 422
    for stream in (False, True):
        response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI, "stream": stream})
        assert response.status_code == 422
        assert response.json()["error"]["message"] == "chat says 422"
    assert len(chat_b.seen) == 2 and code_b.seen == []


async def test_server_errors_retry_then_fail_over(gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour) -> None:
    chat_b.status = 500
    reasons = []
    for stream in (False, True):
        response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI, "stream": stream})
        assert response.status_code == 200
        assert response.headers["x-ai-suite-model"] == "code-7b"
        reasons.append(unquote(response.headers["x-ai-suite-route-reason"]))
    assert reasons == ["requested; fallback from chat-7b (HTTP 500: chat says 500)",
                       "requested; fallback from chat-7b (in cooldown)"]
    # First request: 1 try + 1 retry (GATEWAY_MAX_RETRIES=1); second: chat is cooling down, tried after code.
    assert len(chat_b.seen) == 2
    assert [body["model"] for body in code_b.seen] == ["code-7b", "code-7b"]


async def test_a_refused_backend_fails_over_and_takes_traffic_again_after_cooldown(
    backends: dict[str, FakeBackend], code_b: Behaviour
) -> None:
    revived = FakeBackend("revived", port=free_port())
    settings = make_settings(revived.api_base, backends["code"].api_base, GATEWAY_COOLDOWN_SECONDS=0.5)
    body = {"model": "gpt-3.5-turbo", "messages": HI}
    async with gateway(settings) as client:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.headers["x-ai-suite-model"] == "code-7b"
        assert "connection refused" in unquote(response.headers["x-ai-suite-route-reason"])
        revived.start()
        try:
            cooling = await client.post("/v1/chat/completions", json=body)
            assert cooling.headers["x-ai-suite-model"] == "code-7b"  # still cooling: the healthy backend first
            assert revived.behaviour.seen == []
            deadline = time.monotonic() + 10
            while (answer := await client.post("/v1/chat/completions", json=body)).headers[
                "x-ai-suite-model"
            ] != "chat-7b":
                assert time.monotonic() < deadline, "chat backend never took traffic back"
        finally:
            revived.stop()
    assert answer.json()["choices"][0]["message"]["content"] == "revived:chat-7b"


async def test_all_backends_down_is_a_quick_503_naming_them() -> None:
    chat_base, code_base = (f"http://127.0.0.1:{free_port()}/v1" for _ in range(2))
    async with gateway(make_settings(chat_base, code_base, GATEWAY_MAX_RETRIES=2)) as client:
        for stream in (False, True):
            start = time.monotonic()
            response = await client.post("/v1/chat/completions",
                                         json={"model": "auto", "messages": HI, "stream": stream})
            assert time.monotonic() - start < 3
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1
            message = response.json()["error"]["message"]
            assert chat_base in message and code_base in message and "connection refused" in message
        health = await client.get("/health")
        assert health.status_code == 200  # liveness never depends on a backend


async def test_hanging_backends_time_out_within_the_request_timeout(
    backends: dict[str, FakeBackend], chat_b: Behaviour, code_b: Behaviour
) -> None:
    chat_b.delay_s = code_b.delay_s = 3
    settings = make_settings(backends["chat"].api_base, backends["code"].api_base, LLM_REQUEST_TIMEOUT=0.5)
    async with gateway(settings) as client:
        for stream in (False, True):
            start = time.monotonic()
            response = await client.post("/v1/chat/completions",
                                         json={"model": "chat-7b", "messages": HI, "stream": stream})
            assert time.monotonic() - start < 1.5
            assert response.status_code == 504
            message = response.json()["error"]["message"]
            # The first request times out on chat; the second tries code first, since chat now cools down.
            assert "LLM_REQUEST_TIMEOUT=0.5s" in message and "/v1: timed out (1 try)" in message


async def test_backend_503_retry_after_is_kept(gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour) -> None:
    chat_b.status = code_b.status = 503
    response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert "chat says 503" in response.json()["error"]["message"]


async def test_failed_attempts_leave_no_garbage_cycles(gw: httpx.AsyncClient, chat_b: Behaviour,
                                                      code_b: Behaviour) -> None:
    """A backend's 503 is the common answer under load: nothing of a failed attempt (its exception, frames, the
    upstream response) may wait for the cyclic garbage collector, or a burst of them raises the memory high-water."""
    chat_b.status = code_b.status = 503
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for stream in (False, True):
            response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI,
                                                                   "stream": stream})
            assert response.status_code == 503
        gc.collect()
        ours = [o for o in gc.garbage if isinstance(o, BackendFailed)
                or (isinstance(o, types.FrameType) and "services/gateway" in o.f_code.co_filename)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not ours, [getattr(o, "f_code", o) for o in ours][:5]


async def test_readiness_names_the_backend_that_is_down(backends: dict[str, FakeBackend], chat_b: Behaviour) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    async with gateway(make_settings(backends["chat"].api_base, down)) as client:
        response = await client.get("/health/readiness")
        assert response.status_code == 503
        deps = response.json()["dependencies"]
        assert deps["chat-7b"] == "ok"
        assert deps["code-7b"].startswith("unavailable: connection refused")
        chat_b.health_status = 503
        assert (await client.get("/health/readiness")).json()["dependencies"]["chat-7b"].startswith(
            "unavailable: HTTP 503"
        )
    async with gateway(make_settings(backends["chat"].api_base, backends["code"].api_base)) as client:
        chat_b.health_status = 200
        assert (await client.get("/health/readiness")).status_code == 200


async def test_api_key_guards_the_gateway_and_is_sent_to_backends(
    backends: dict[str, FakeBackend], chat_b: Behaviour
) -> None:
    settings = make_settings(backends["chat"].api_base, backends["code"].api_base, API_KEY="k1")
    async with gateway(settings) as client:
        body = {"model": "chat-7b", "messages": HI}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 401
        ok = await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer k1"})
        assert ok.status_code == 200
        assert (await client.get("/health")).status_code == 200
    assert chat_b.seen_headers[-1]["authorization"] == "Bearer k1"


async def test_client_disconnect_closes_the_backend_stream(backends: dict[str, FakeBackend], chat_b: Behaviour) -> None:
    chat_b.chunks, chat_b.chunk_delay_s = 200, 0.02
    settings = make_settings(backends["chat"].api_base, backends["code"].api_base)
    server = ThreadedServer(lambda: create_app(settings), lifespan="on").start()
    try:
        body = {"model": "chat-7b", "messages": HI, "stream": True}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as client:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        break  # walk away after the first token
        deadline = time.monotonic() + 5
        while chat_b.streams_abandoned == 0:
            assert time.monotonic() < deadline, "the backend kept generating after the client left"
            await asyncio.sleep(0.02)
    finally:
        server.stop()
