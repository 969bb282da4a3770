"""Continuous batching with the real bundled model over real HTTP: slots run together and stay apart."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.metrics import metric
from tests.unit.test_inference_api import make_settings
from tests.unit.test_inference_queue import LONG, metrics_of, poll, served

# Four prompts whose greedy answers all differ: a slot that read another slot's KV cache, or got another
# slot's logits or tokens, answers differently from the same prompt run alone.
WORDS = ("apple", "river", "seven", "green")


def repeated(word: str) -> dict:
    return {"prompt": " ".join([word] * 24), "max_tokens": 16, "temperature": 0}


async def one_at_a_time(gguf_path: Path, path: str, bodies: list[dict]) -> list[Streamed]:
    """Each body run alone, on a fresh service (so no answer comes from a prompt cache)."""
    async with served(make_settings(gguf_path, N_PARALLEL=len(bodies))) as client:
        return [await stream(client, path, body) for body in bodies]


@dataclass
class Streamed:
    """One streamed completion as the client saw it."""

    text: str = ""
    finish: str | None = None
    usage: dict = field(default_factory=dict)
    first_at: float = 0.0
    done_at: float = 0.0


async def stream(client: httpx.AsyncClient, path: str, body: dict, started: asyncio.Event | None = None) -> Streamed:
    """Stream `body` on a connection of its own; `started` is set at the first text."""
    result = Streamed()
    async with httpx.AsyncClient(base_url=client.base_url, timeout=120) as own:
        request = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with own.stream("POST", path, json=request) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[len("data: "):])
                if chunk.get("usage"):
                    result.usage = chunk["usage"]
                for choice in chunk["choices"]:
                    piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                    if piece and not result.text:
                        result.first_at = time.monotonic()
                        if started is not None:
                            started.set()
                    result.text += piece
                    result.finish = choice.get("finish_reason") or result.finish
    result.done_at = time.monotonic()
    return result


def assert_ran_together(results: list[Streamed]) -> None:
    """Every generation had produced text before the first one finished: they shared the model."""
    assert max(r.first_at for r in results) < min(r.done_at for r in results), [
        (r.first_at, r.done_at) for r in results]


async def test_concurrent_prompts_answer_as_if_each_ran_alone(gguf_path: Path) -> None:
    bodies = [repeated(word) for word in WORDS]
    alone = await one_at_a_time(gguf_path, "/v1/completions", bodies)
    async with served(make_settings(gguf_path, N_PARALLEL=4)) as client:
        results = await asyncio.gather(*(stream(client, "/v1/completions", body) for body in bodies))
        text = await metrics_of(client)
    assert_ran_together(results)
    assert len({r.text for r in alone}) == 4  # the four answers differ, so a swap would show
    assert [r.text for r in results] == [r.text for r in alone]
    assert all(r.usage["completion_tokens"] == 16 for r in results)
    assert metric(text, "gen_ai_server_generation_tokens_total") == 4 * 16
    assert metric(text, "inference_slots_total") == 4


async def test_sampling_settings_are_per_request_inside_one_batch(gguf_path: Path) -> None:
    [reference] = await one_at_a_time(gguf_path, "/v1/completions", [repeated("green")])
    stop = reference.text.split()[2]
    story = {"prompt": "Once upon a time, in a small village,", "max_tokens": 24,
             "temperature": 1.5, "top_p": 1.0, "min_p": 0.0}
    bodies = [{**story, "seed": 7}, {**story, "seed": 7}, {**story, "seed": 8},
              {**repeated("green"), "max_tokens": 3}, {**repeated("green"), "stop": [stop]}]
    async with served(make_settings(gguf_path, N_PARALLEL=5)) as client:
        seeded, same_seed, other_seed, short, stopped = await asyncio.gather(
            *(stream(client, "/v1/completions", body) for body in bodies))
    assert_ran_together([seeded, same_seed, other_seed, short, stopped])
    # Each slot samples from its own seeded chain: one seed gives one answer, another seed another.
    assert seeded.text == same_seed.text
    assert seeded.text != other_seed.text
    assert short.usage["completion_tokens"] == 3 and short.finish == "length"
    assert short.text == reference.text[:len(short.text)] and short.text
    assert stopped.finish == "stop" and stopped.text == reference.text[:reference.text.index(stop)]


async def test_one_stream_leaving_a_batch_stops_only_itself(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, N_PARALLEL=4)) as client:
        started = [asyncio.Event() for _ in range(4)]
        bodies = [{**repeated(word), "max_tokens": 48} for word in WORDS[:3]] + [{**LONG, "max_tokens": 400}]
        tasks = [asyncio.create_task(stream(client, "/v1/chat/completions" if "messages" in body else "/v1/completions",
                                            body, event))
                 for body, event in zip(bodies, started, strict=True)]
        # All four are generating together before one of them hangs up.
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 60)
        leaver = tasks[3]
        assert not any(task.done() for task in tasks)
        leaver.cancel()
        stayed = await asyncio.wait_for(asyncio.gather(*tasks[:3]), 120)
        await poll(lambda: _idle(client), "every slot to be free")
        text = await metrics_of(client)
        health = (await client.get("/health")).json()
    assert all(r.finish == "length" and r.usage["completion_tokens"] == 48 for r in stayed)
    assert metric(text, "inference_cancelled_generations_total") == 1
    # The leaver stopped within a few tokens of hanging up, far short of its 400.
    assert metric(text, "gen_ai_server_generation_tokens_total") < 3 * 48 + 200
    assert metric(text, "gen_ai_server_requests_running") == 0
    assert health["slots"] == {"total": 4, "running": 0}
    # the gateway's /v1/status reads these flat fields: the speed is the last finished generation's
    assert health["waiting"] == 0 and health["running"] == 0
    assert health["last_tokens_per_second"] > 0  # the decode speed of a stream that stayed


async def test_queue_bound_counts_waiting_requests_beyond_the_busy_slots(gguf_path: Path) -> None:
    async with served(make_settings(gguf_path, N_PARALLEL=2, MAX_QUEUE=1)) as client:
        started = [asyncio.Event() for _ in range(2)]
        running = [asyncio.create_task(stream(client, "/v1/chat/completions", {**LONG, "max_tokens": 300}, event))
                   for event in started]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 60)
        waiting = asyncio.create_task(client.post("/v1/completions", json={**repeated("seven"), "max_tokens": 2}))
        await poll(lambda: _waiting(client, 1), "one request waiting")
        refused = await client.post("/v1/completions", json={**repeated("green"), "max_tokens": 2})
        health = (await client.get("/health")).json()
        for task in running:
            task.cancel()
        queued = await asyncio.wait_for(waiting, 60)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "queue_full"
    assert health["slots"] == {"total": 2, "running": 2} and health["queue_depth"] == 1
    assert health["waiting"] == 1 and health["running"] == 2
    assert queued.status_code == 200 and queued.json()["choices"][0]["text"]


async def _idle(client: httpx.AsyncClient) -> bool:
    return metric(await metrics_of(client), "gen_ai_server_requests_running") == 0


async def _waiting(client: httpx.AsyncClient, depth: int) -> bool:
    return (await client.get("/health")).json()["queue_depth"] == depth
