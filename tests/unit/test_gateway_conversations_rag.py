"""Conversation search through the real RAG service (real postgres, the real embedding service, embedded Qdrant)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.rag.app import create_app as create_rag
from tests.support.fake_openai import FakeBackend, ThreadedServer
from tests.support.gateway import gateway_client, gateway_settings
from tests.support.pg import shared_postgres
from tests.support.rag import rag_settings, shared_embedding

FILE_QUESTION = "파일을 읽는 방법을 알려 주세요"
WEATHER = "오늘 서울 날씨가 정말 좋네요"


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackend]:
    started = FakeBackend("chat").start()
    yield started
    started.stop()


class Rag:
    """The RAG app on a port, restartable on the same port and the same data."""

    def __init__(self, tmp_path: Path, models_dir: Path) -> None:
        database_url = shared_postgres().database("conversations")
        self.settings = rag_settings(tmp_path / "rag", models_dir, database_url, shared_embedding(models_dir),
                                     "http://127.0.0.1:9")
        self.server = ThreadedServer(lambda: create_rag(self.settings), lifespan="on")
        self.url = f"http://127.0.0.1:{self.server.port}"

    def start(self) -> Rag:
        self.server.start(deadline_s=60)
        return self

    def documents(self) -> list[dict]:
        response = httpx.get(f"{self.url}/collections/conversations/documents", timeout=30)
        return response.json()["documents"] if response.status_code == 200 else []

    def search(self, query: str) -> list[str]:
        body = {"query": query, "collection": "conversations", "top_k": 10}
        response = httpx.post(f"{self.url}/search", json=body, timeout=30)
        return [hit["text"] for hit in response.json()["results"]] if response.status_code == 200 else []


@pytest.fixture
def rag(tmp_path: Path, models_dir: Path) -> Iterator[Rag]:
    service = Rag(tmp_path, models_dir).start()
    yield service
    service.server.stop()


async def eventually(check, what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.1)


async def test_rag_finds_what_the_text_search_misses_and_forgets_deleted_conversations(
    backend: FakeBackend, rag: Rag, tmp_path: Path
) -> None:
    settings = gateway_settings(backend.api_base, backend.api_base, tmp_path, RAG_URL=rag.url)
    async with gateway_client(settings) as client:
        ids = {}
        for key, text in (("file", FILE_QUESTION), ("weather", WEATHER)):
            created = await client.post("/v1/conversations", json={"items": [{"role": "user", "content": text}]})
            ids[key] = created.json()["id"]
        await eventually(lambda: len(rag.documents()) == 2, "both conversations mirrored")

        # 읽기 is not a substring of 읽는, so only RAG's morphemes (읽 + 기) connect them.
        found = (await client.get("/v1/conversations", params={"query": "파일 읽기"})).json()
        assert found["engines"] == ["text", "rag"]
        assert [c["id"] for c in found["data"]][:1] == [ids["file"]]
        assert found["data"][0]["match"]["engines"] == ["rag"] and "파일" in found["data"][0]["match"]["snippet"]
        both = (await client.get("/v1/conversations", params={"query": "날씨"})).json()
        assert both["data"][0]["id"] == ids["weather"] and both["data"][0]["match"]["engines"] == ["text", "rag"]

        assert (await client.delete(f"/v1/conversations/{ids['file']}")).status_code == 200
        await eventually(lambda: len(rag.documents()) == 1, "the deleted conversation's document removed")
        assert not any("파일" in text for text in rag.search("파일 읽기"))
        # RAG keeps a copy of each upload, and deleting the document deletes that copy too
        copy = rag.settings.documents_root() / "uploads" / "conversations" / f"{ids['file']}.md"
        assert not copy.exists()
        after = (await client.get("/v1/conversations", params={"query": "파일 읽기"})).json()
        assert ids["file"] not in [c["id"] for c in after["data"]]


async def test_without_rag_search_answers_from_text_and_the_mirror_catches_up(
    backend: FakeBackend, tmp_path: Path, models_dir: Path
) -> None:
    rag = Rag(tmp_path, models_dir)  # configured, not started yet
    settings = gateway_settings(backend.api_base, backend.api_base, tmp_path, RAG_URL=rag.url,
                                CONVERSATIONS_RAG_RETRY_SECONDS=0.2)
    async with gateway_client(settings) as client:
        created = await client.post("/v1/conversations", json={"items": [{"role": "user", "content": WEATHER}]})
        started = time.monotonic()
        found = (await client.get("/v1/conversations", params={"query": "날씨"})).json()
        assert time.monotonic() - started < 2
        assert found["engines"] == ["text"] and found["data"][0]["id"] == created.json()["id"]
        assert "unavailable" in (await client.get("/health/readiness")).json()["conversation_search"]
        rag.start()
        try:
            await eventually(lambda: len(rag.documents()) == 1, "the mirror caught up once RAG came")
            assert (await client.get("/v1/conversations", params={"query": "날씨"})).json()["engines"] == [
                "text", "rag"]
        finally:
            rag.server.stop()
