"""Prompt-cache reuse: each slot keeps its KV cache, and a conversation's next turn goes back to its slot."""

from __future__ import annotations

from pathlib import Path

from tests.support.metrics import metric
from tests.unit.test_inference_api import make_settings, running, wait_ready

TOPICS = ("the sea", "a mountain", "a library", "a train")


async def test_interleaved_conversations_each_reuse_their_own_cached_history(gguf_path: Path) -> None:
    async with running(make_settings(gguf_path, N_PARALLEL=4)) as client:
        await wait_ready(client)
        histories: list[list[dict[str, str]]] = []
        first_prompts = []
        for topic in TOPICS:
            messages = [{"role": "user", "content": f"Write two sentences about {topic}."}]
            body = (await client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 24,
                                                                     "temperature": 0})).json()
            first_prompts.append(body["usage"]["prompt_tokens"])
            histories.append([*messages, body["choices"][0]["message"]])
        before = metric((await client.get("/metrics")).text, "gen_ai_server_cached_prompt_tokens_total")
        cached = []
        for history in histories:  # the second turns, in the same interleaved order
            messages = [*history, {"role": "user", "content": "Now one more sentence."}]
            body = (await client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 4,
                                                                     "temperature": 0})).json()
            cached.append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
        text = (await client.get("/metrics")).text
    # Each second turn found at least its whole first prompt (and most of the answer) in its slot.
    assert all(hit >= prompt for hit, prompt in zip(cached, first_prompts, strict=True)), (cached, first_prompts)
    assert metric(text, "gen_ai_server_cached_prompt_tokens_total") - before == sum(cached)
    assert metric(text, "gen_ai_server_prompt_cache_hits_total") >= 4
