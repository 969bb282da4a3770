"""A dependency that stays down gives 503 with Retry-After, never 500; when it returns, no restart is needed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from qdrant_client import AsyncQdrantClient

from services.rag.state import RagState
from tests.support.pg import private_postgres
from tests.support.procs import free_port
from tests.support.rag import index_corpus, rag_settings, running_rag

QUESTION = {"query": "How long should coffee steep in a French press?", "collection": "docs"}


def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "service_unavailable"
    assert dependency in error["message"]


async def until_ok(client: httpx.AsyncClient, deadline_s: float = 20) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        response = await client.post("/search", json=QUESTION)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


async def test_postgres_stopped_then_restarted(tmp_path: Path, models_dir, embedding_url, gateway_url,
                                              corpus) -> None:
    server = private_postgres()
    settings = rag_settings(tmp_path, models_dir, server.database("outage"), embedding_url, gateway_url)
    async with server.running(), running_rag(settings) as (client, _):
        await index_corpus(client)
        server.stop()
        try:
            for route, body in (("/search", QUESTION), ("/query", QUESTION), ("/index", {"collection": "docs"})):
                assert_unavailable(await client.post(route, json=body), "postgres")
            assert_unavailable(await client.get("/collections"), "postgres")
            health = await client.get("/health")
            assert health.status_code == 503
            assert health.json()["dependencies"]["postgres"].startswith("unavailable")
            assert health.json()["dependencies"]["qdrant"] == "ok"
        finally:
            server.start()
        response = await until_ok(client)
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["document"] == "coffee.txt"
        assert (await client.post("/query", json=QUESTION)).status_code == 200
        assert (await client.post("/index", json={"collection": "docs"})).status_code == 200


async def test_service_starts_while_postgres_is_down_and_migrates_when_it_comes(
        tmp_path: Path, models_dir, embedding_url, gateway_url, corpus) -> None:
    server = private_postgres()
    url = server.database("late")
    server.stop()
    settings = rag_settings(tmp_path, models_dir, url, embedding_url, gateway_url)
    async with server.running(), running_rag(settings) as (client, _):
        assert_unavailable(await client.post("/index", json={"collection": "docs"}), "postgres")
        server.start()
        deadline = time.monotonic() + 20
        while (response := await client.post("/index", json={"collection": "docs"})).status_code != 200:
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            await asyncio.sleep(0.2)
        assert (await until_ok(client)).status_code == 200


async def test_qdrant_server_unreachable_is_503(tmp_path: Path, models_dir, database_url, embedding_url,
                                               gateway_url, corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url,
                            QDRANT_URL=f"http://127.0.0.1:{free_port()}", QDRANT_TIMEOUT=2)
    async with running_rag(settings) as (client, _):
        assert_unavailable(await client.post("/index", json={"collection": "docs"}), "qdrant")
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["dependencies"]["qdrant"].startswith("unavailable")
        assert health.json()["qdrant_mode"] == "server"


async def test_embedded_qdrant_taken_away_then_given_back(rag) -> None:
    client, app = rag
    await index_corpus(client)
    state: RagState = app.state.rag
    # another process opening the same folder is what makes embedded Qdrant unavailable in practice
    await state.vectors.close()
    new_file = state.settings.documents_root() / "new.md"
    new_file.write_text("Indexing this file needs Qdrant.", encoding="utf-8")
    intruder = AsyncQdrantClient(path=str(state.settings.vectors_path()))
    try:
        for route, body in (("/search", QUESTION), ("/query", QUESTION), ("/index", {"collection": "docs"})):
            assert_unavailable(await client.post(route, json=body), "qdrant")
        assert (await client.get("/health")).json()["dependencies"]["qdrant"].startswith("unavailable")
    finally:
        await intruder.close()
    response = await client.post("/search", json=QUESTION)
    assert response.status_code == 200
    assert response.json()["results"][0]["document"] == "coffee.txt"
    assert (await client.post("/query", json=QUESTION)).status_code == 200


async def test_embedding_service_down_is_503(tmp_path: Path, models_dir, database_url, gateway_url,
                                             corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, f"http://127.0.0.1:{free_port()}", gateway_url)
    async with running_rag(settings) as (client, _):
        assert_unavailable(await client.post("/index", json={"collection": "docs"}), "embedding")
        # only embedding is down: postgres answers (its 2 s health probe can miss once on a loaded machine)
        deadline = time.monotonic() + 30
        while True:
            health = (await client.get("/health")).json()
            assert health["dependencies"]["embedding"].startswith("unavailable")
            if health["dependencies"]["postgres"] == "ok" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert health["dependencies"]["postgres"] == "ok"


async def test_gateway_down_fails_query_with_503_but_search_works(tmp_path: Path, models_dir, database_url,
                                                                  embedding_url, corpus) -> None:
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, f"http://127.0.0.1:{free_port()}")
    async with running_rag(settings) as (client, _):
        await index_corpus(client)
        assert (await client.post("/search", json=QUESTION)).status_code == 200
        assert_unavailable(await client.post("/query", json=QUESTION), "gateway")
        assert (await client.get("/health")).json()["dependencies"]["gateway"].startswith("unavailable")
