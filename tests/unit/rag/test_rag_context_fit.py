"""A context too long for the answering model shrinks until it fits, instead of failing the question."""

from __future__ import annotations

import json

from tests.support.rag import index_corpus


async def test_query_drops_low_ranked_sources_until_the_prompt_fits(rag, gateway) -> None:
    client, _ = rag
    await index_corpus(client)
    body = {"query": "How long should coffee steep in a French press?", "collection": "docs", "top_k": 4}
    full = (await client.post("/query", json=body)).json()
    assert len(full["sources"]) > 1
    longest_source = max(len(s["text"]) for s in full["sources"])
    gateway.behaviour.max_prompt_chars = longest_source + 600
    try:
        fitted = await client.post("/query", json=body)
    finally:
        gateway.behaviour.max_prompt_chars = None
    assert fitted.status_code == 200, fitted.text
    sources = fitted.json()["sources"]
    assert 1 <= len(sources) < len(full["sources"])
    assert sources[0]["document"] == full["sources"][0]["document"] == "coffee.txt"


async def test_streamed_query_announces_only_the_sources_that_fit(rag, gateway) -> None:
    client, _ = rag
    await index_corpus(client)
    body = {"query": "How long should coffee steep in a French press?", "collection": "docs", "top_k": 4,
            "stream": True}
    gateway.behaviour.max_prompt_chars = 900
    try:
        response = await client.post("/query", json=body)
    finally:
        gateway.behaviour.max_prompt_chars = None
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert "sources" in events[0] and "error" not in events[-1], events[-1]
    assert 1 <= len(events[0]["sources"]) < 4
    assert "answer" in events[-1]


async def test_a_model_window_too_small_for_any_source_is_a_clear_error(rag, gateway) -> None:
    client, _ = rag
    await index_corpus(client)
    gateway.behaviour.max_prompt_chars = 10
    try:
        response = await client.post("/query", json={"query": "coffee", "collection": "docs"})
    finally:
        gateway.behaviour.max_prompt_chars = None
    assert response.status_code == 502
    assert "context" in response.json()["error"]["message"]
