"""Queueing and cancellation over real HTTP (uvicorn in process), with the real bundled model."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn

from services.inference.app import create_app
from services.inference.scheduler import TextRelay
from services.inference.settings import InferenceSettings
from tests.unit.test_inference_api import HELLO, make_settings, metric, wait_ready

LONG = {"messages": [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}],
        "max_tokens": 900, "temperature": 0}


@asynccontextmanager
async def served(settings: InferenceSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn socket on a free port; yields a client for it."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            await wait_ready(client)
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


async def poll(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def metrics_of(client: httpx.AsyncClient) -> str:
    return (await client.get("/metrics")).text


@asynccontextmanager
async def long_stream(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """A streamed generation that is under way; leaving the block hangs up on it."""
    async with httpx.AsyncClient(base_url=client.base_url, timeout=120) as own:
        async with own.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as response:
            assert response.status_code == 200
            # Keep the line iterator referenced: a dropped, half-read iterator closes the connection.
            lines = response.aiter_lines()
            while not ('"content":"' in (line := await anext(lines)) and '"content":""' not in line):
                pass
            yield


async def test_full_queue_answers_503_with_retry_after(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, MAX_QUEUE=1, N_PARALLEL=1)) as client:
        async with long_stream(client):
            waiting = asyncio.create_task(
                client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3}))
            await poll(lambda: _depth_is(client, 1), "one request waiting")
            refused = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3})
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "queue_full"
        # Hanging up on the stream frees the model for the queued request.
        queued = await asyncio.wait_for(waiting, 60)
        assert queued.status_code == 200, queued.text
        assert queued.json()["choices"][0]["message"]["content"]
        text = await metrics_of(client)
    assert metric(text, "gen_ai_server_requests_rejected_total") == 1
    assert metric(text, "inference_cancelled_generations_total") == 1
    assert metric(text, "gen_ai_server_requests_waiting") == 0


async def test_a_request_that_waits_past_max_queue_wait_is_told_to_come_back(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, MAX_QUEUE=4, N_PARALLEL=1, MAX_QUEUE_WAIT=1)) as client:
        async with long_stream(client):
            started = time.monotonic()
            refused = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3})
            waited = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "queue_timeout"
            assert "MAX_QUEUE_WAIT" in refused.json()["error"]["message"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert 0.9 <= waited < 10
            assert await _depth_is(client, 0)  # it left the queue
            text = await metrics_of(client)
        await poll(lambda: _idle(client), "the cancelled stream to release the model")
        # the slot it gave up is not lost: the next request runs
        assert (await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})).status_code == 200
    assert metric(text, "gen_ai_server_requests_rejected_total") == 1
    assert metric(text, "gen_ai_server_requests_waiting") == 0


async def test_max_queue_zero_refuses_anything_behind_the_running_request(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, MAX_QUEUE=0, N_PARALLEL=1)) as client:
        async with long_stream(client):
            refused = await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
            assert refused.status_code == 503 and refused.headers["Retry-After"]
        await poll(lambda: _idle(client), "the cancelled stream to release the model")
        assert (await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})).status_code == 200


async def test_stream_disconnect_stops_generation_early(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path)) as client:
        async with long_stream(client):
            pass
        await poll(lambda: _cancelled(client, 1), "the stream's generation to stop")
        generated = metric(await metrics_of(client), "gen_ai_server_generation_tokens_total")
        assert generated < LONG["max_tokens"] / 2
        started = time.monotonic()
        follow_up = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3})
        assert follow_up.status_code == 200
        assert time.monotonic() - started < 30


async def test_non_streamed_disconnect_stops_generation(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path)) as client:
        async with httpx.AsyncClient(base_url=client.base_url, timeout=120) as own:
            request = asyncio.create_task(own.post("/v1/chat/completions", json=LONG))
            await poll(lambda: _active(client), "the generation to start")
            request.cancel()  # closes the connection mid-request
            with contextlib.suppress(asyncio.CancelledError):
                await request
        await poll(lambda: _cancelled(client, 1), "the generation to stop")
        text = await metrics_of(client)
        assert metric(text, "gen_ai_server_generation_tokens_total") < LONG["max_tokens"] / 2
        assert metric(text, "gen_ai_server_requests_running") == 0
        follow_up = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3})
        assert follow_up.status_code == 200


async def test_queued_client_that_leaves_never_runs(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, MAX_QUEUE=2, N_PARALLEL=1)) as client:
        async with long_stream(client), httpx.AsyncClient(base_url=client.base_url, timeout=120) as own:
            queued = asyncio.create_task(own.post("/v1/completions", json={"prompt": "Queued", "max_tokens": 2}))
            await poll(lambda: _depth_is(client, 1), "the request to queue")
            queued.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await queued
            await poll(lambda: _depth_is(client, 0), "the queue to empty")
        await poll(lambda: _cancelled(client, 1), "the stream to stop")
        await poll(lambda: _idle(client), "the model to be free")
        text = await metrics_of(client)
    # Only the long stream ever reached the model: one generation observed, one cancelled.
    assert metric(text, "gen_ai_server_request_duration_seconds_count") == 1


async def _depth_is(client: httpx.AsyncClient, depth: int) -> bool:
    return (await client.get("/health")).json()["queue_depth"] == depth


async def _active(client: httpx.AsyncClient) -> bool:
    return metric(await metrics_of(client), "gen_ai_server_requests_running") == 1


async def _idle(client: httpx.AsyncClient) -> bool:
    return not await _active(client)


async def _cancelled(client: httpx.AsyncClient, count: int) -> bool:
    return metric(await metrics_of(client), "inference_cancelled_generations_total") == count


async def test_text_relay_sends_the_first_piece_at_once_and_coalesces_the_rest() -> None:
    relay = TextRelay(asyncio.get_running_loop(), interval=3600)
    await asyncio.to_thread(lambda: [relay.push(p) for p in ("He", "llo", " wor", "ld")] and relay.close())
    assert [await relay.queue.get() for _ in range(3)] == ["He", "llo world", None]

    eager = TextRelay(asyncio.get_running_loop(), interval=0)
    await asyncio.to_thread(lambda: [eager.push(p) for p in ("a", "b")] and eager.close())
    assert [await eager.queue.get() for _ in range(3)] == ["a", "b", None]
