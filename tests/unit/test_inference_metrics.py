"""The inference service's GenAI metrics, driven by real requests to the bundled model and read from /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.stack.figures import from_page
from tests.support.asgi import wait_ready
from tests.support.metrics import documented_names, exposed_names, metric
from tests.unit.test_inference_api import make_settings, running
from tests.unit.test_inference_queue import poll

COUNT = {"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 8, "temperature": 0}
LONG = {"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 32, "temperature": 0}
GEN_AI = "gen_ai_server_"


async def test_a_generation_moves_every_gen_ai_metric(gguf_path: Path) -> None:
    async with running(make_settings(gguf_path, MAX_QUEUE=3)) as client:
        await wait_ready(client)
        before = (await client.get("/metrics")).text
        assert metric(before, f"{GEN_AI}time_to_first_token_seconds_count") == 0
        assert metric(before, f"{GEN_AI}requests_waiting_limit") == 3
        response = await client.post("/v1/completions", json=COUNT)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        page = (await client.get("/metrics")).text
    assert usage["completion_tokens"] == 8
    for histogram in ("time_to_first_token_seconds", "time_per_output_token_seconds",
                      "request_duration_seconds", "queue_wait_seconds", "context_usage_ratio"):
        assert metric(page, f"{GEN_AI}{histogram}_count") == 1, histogram
    assert metric(page, f"{GEN_AI}prompt_tokens_total") == usage["prompt_tokens"]
    assert metric(page, f"{GEN_AI}generation_tokens_total") == 8
    n_ctx = 1024
    assert metric(page, f"{GEN_AI}context_usage_ratio_sum") == (usage["prompt_tokens"] + 8) / n_ctx
    first = metric(page, f"{GEN_AI}time_to_first_token_seconds_sum")
    total = metric(page, f"{GEN_AI}request_duration_seconds_sum")
    per_token = metric(page, f"{GEN_AI}time_per_output_token_seconds_sum")
    assert 0 < metric(page, f"{GEN_AI}queue_wait_seconds_sum") < first < total
    # the 7 tokens after the first take the rest of the time
    assert abs(first + 7 * per_token - total) < 1e-6
    assert metric(page, f"{GEN_AI}requests_running") == 0 and metric(page, f"{GEN_AI}requests_waiting") == 0
    # `ai-suite status` reads its tok/s from the same histogram
    assert from_page(page).tokens_per_s == 1 / per_token
    assert exposed_names(page) == documented_names("Inference (inference-chat, inference-code)")
    assert metric(page, f"{GEN_AI}cached_prompt_tokens_total") == 0


async def test_a_queued_request_shows_its_wait_and_its_cached_prompt(gguf_path: Path) -> None:
    async with running(make_settings(gguf_path, N_PARALLEL=1, MAX_QUEUE=2)) as client:
        await wait_ready(client)
        ahead = asyncio.create_task(client.post("/v1/completions", json=LONG))
        await poll(lambda: _metric_is(client, f"{GEN_AI}requests_running", 1), "the first request to run")
        behind = asyncio.create_task(client.post("/v1/completions", json=COUNT))
        await poll(lambda: _metric_is(client, f"{GEN_AI}requests_waiting", 1), "the second request to wait")
        assert (await ahead).status_code == 200 and (await behind).status_code == 200
        page = (await client.get("/metrics")).text
    # the second request waited for the whole of the first one's generation (32 tokens)
    waited = metric(page, f"{GEN_AI}queue_wait_seconds_sum")
    assert waited > 10 * metric(page, f"{GEN_AI}time_per_output_token_seconds_sum") / 2
    assert metric(page, f"{GEN_AI}time_to_first_token_seconds_sum") > waited
    # the same prompt twice in the only slot: the second finds all of it but the last token in the prompt cache
    prompt = metric(page, f"{GEN_AI}prompt_tokens_total") / 2
    assert metric(page, f"{GEN_AI}cached_prompt_tokens_total") == prompt - 1
    assert metric(page, f"{GEN_AI}prompt_cache_hits_total") == 1


async def _metric_is(client, name: str, value: float) -> bool:  # type: ignore[no-untyped-def]
    return metric((await client.get("/metrics")).text, name) == value
