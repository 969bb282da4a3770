"""The embedding service's vector cache, in process with the real bundled MiniLM: hits, misses, the disk tier
across restarts, and a cache that cannot work degrading to none."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.embedding.app import create_app
from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from tests.support.asgi import in_process, wait_ready
from tests.support.embedding import CountingEngine

CORPUS = [
    "How do I read a text file in Python?",
    "Heavy rain and strong winds are expected tomorrow afternoon.",
    "Steep coarse ground coffee in a French press for four minutes.",
    "파일을 읽는 방법을 알려 주세요.",
]


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> EmbeddingEngine:
    return EmbeddingEngine.load(EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir))  # type: ignore[call-arg]


def settings(models_dir: Path, data_dir: Path, **env: object) -> EmbeddingSettings:
    return EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir, DATA_DIR=data_dir, **env)  # type: ignore[arg-type]


@asynccontextmanager
async def service(config: EmbeddingSettings, counting: CountingEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config, loader=lambda _: counting)  # type: ignore[arg-type, return-value]
    async with in_process(app, "http://embedding") as client:
        await wait_ready(client)
        yield client


async def embed(client: httpx.AsyncClient, texts: list[str]) -> np.ndarray:
    response = await client.post("/embed", json={"texts": texts})
    assert response.status_code == 200, response.text
    return np.array(response.json()["embeddings"], dtype=np.float32)


def cache_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("embedding_cache_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_a_repeated_text_is_a_hit_and_a_changed_text_misses(
    models_dir: Path, tmp_path: Path, engine: EmbeddingEngine
) -> None:
    counting = CountingEngine(engine)
    async with service(settings(models_dir, tmp_path), counting) as client:
        cold = await embed(client, CORPUS[:2])
        warm = await embed(client, CORPUS[:2])
        changed = await embed(client, [CORPUS[0] + "!", CORPUS[1]])
        page = (await client.get("/metrics")).text
    assert counting.calls == [CORPUS[:2], [CORPUS[0] + "!"]]  # the repeat ran no model; only the changed text did
    np.testing.assert_array_equal(warm, cold)
    np.testing.assert_array_equal(changed[1], cold[1])
    assert not np.array_equal(changed[0], cold[0])
    values = cache_metrics(page)
    assert values['embedding_cache_hits_total{tier="memory"}'] == 3
    assert values["embedding_cache_misses_total"] == 3


async def test_texts_repeated_within_a_request_are_embedded_once(
    models_dir: Path, tmp_path: Path, engine: EmbeddingEngine
) -> None:
    counting = CountingEngine(engine)
    async with service(settings(models_dir, tmp_path), counting) as client:
        vectors = await embed(client, [CORPUS[2], CORPUS[3], CORPUS[2]])
    assert counting.calls == [[CORPUS[2], CORPUS[3]]]
    np.testing.assert_array_equal(vectors[0], vectors[2])


async def test_openai_usage_counts_the_tokens_of_cached_texts_too(
    models_dir: Path, tmp_path: Path, engine: EmbeddingEngine
) -> None:
    counting = CountingEngine(engine)
    async with service(settings(models_dir, tmp_path), counting) as client:
        first = (await client.post("/v1/embeddings", json={"input": CORPUS})).json()
        second = (await client.post("/v1/embeddings", json={"input": CORPUS})).json()
    assert counting.texts == len(CORPUS)
    assert second["usage"] == first["usage"] and first["usage"]["prompt_tokens"] > len(CORPUS)
    assert [row["embedding"] for row in second["data"]] == [row["embedding"] for row in first["data"]]


async def test_reindexing_an_unchanged_corpus_after_a_restart_runs_no_model(
    models_dir: Path, tmp_path: Path, engine: EmbeddingEngine
) -> None:
    first = CountingEngine(engine)
    async with service(settings(models_dir, tmp_path), first) as client:
        indexed = await embed(client, CORPUS)
    assert first.texts == len(CORPUS)
    again = CountingEngine(engine)  # a new process: an empty memory tier, the same DATA_DIR
    async with service(settings(models_dir, tmp_path), again) as client:
        reindexed = np.concatenate([await embed(client, [text]) for text in CORPUS])
        health = (await client.get("/health")).json()
        page = (await client.get("/metrics")).text
    assert again.calls == []
    np.testing.assert_array_equal(reindexed, indexed)
    assert health["cache"]["disk"] == "ok" and health["cache"]["disk_entries"] == len(CORPUS)
    assert cache_metrics(page)['embedding_cache_hits_total{tier="disk"}'] == len(CORPUS)


async def test_the_disk_tier_stays_within_its_size(models_dir: Path, tmp_path: Path, engine: EmbeddingEngine) -> None:
    counting = CountingEngine(engine)
    # 1 MiB holds about 650 vectors of 384 float32 (1.6 KiB a row with its key)
    config = settings(models_dir, tmp_path, EMBEDDING_CACHE_DISK_MB=1, EMBEDDING_CACHE_ENTRIES=0)
    async with service(config, counting) as client:
        for start in range(0, 900, 300):
            await embed(client, [f"note number {i}" for i in range(start, start + 300)])
        health = (await client.get("/health")).json()
        await embed(client, ["note number 899", "note number 0"])  # the newest is kept, the oldest went first
    assert 0 < health["cache"]["disk_entries"] <= 1024 * 1024 // (384 * 4)
    assert counting.calls[-1] == ["note number 0"]


@pytest.mark.parametrize("damage", ["corrupt", "unwritable"])
async def test_a_broken_cache_folder_degrades_to_no_disk_cache(
    models_dir: Path, tmp_path: Path, engine: EmbeddingEngine, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    if damage == "corrupt":
        cache.mkdir()
        (cache / "embeddings.sqlite3").write_bytes(b"this is not a database " * 200)
    else:
        cache.write_text("a file where the cache folder should be")  # mkdir fails: not a directory
    counting = CountingEngine(engine)
    with caplog.at_level(logging.ERROR, logger="services.embedding.cache"):
        async with service(settings(models_dir, tmp_path), counting) as client:
            first = await embed(client, CORPUS[:2])
            second = await embed(client, CORPUS[:2])
            health = (await client.get("/health")).json()
    np.testing.assert_array_equal(first, second)
    assert counting.calls == [CORPUS[:2]]  # the memory tier still works
    assert health["status"] == "ok" and health["cache"]["disk"].startswith("error: ")
    assert "embedding disk cache off" in caplog.text


async def test_the_cache_can_be_switched_off(models_dir: Path, tmp_path: Path, engine: EmbeddingEngine) -> None:
    counting = CountingEngine(engine)
    async with service(settings(models_dir, tmp_path, EMBEDDING_CACHE=False), counting) as client:
        await embed(client, CORPUS[:1])
        await embed(client, CORPUS[:1])
        health = (await client.get("/health")).json()
    assert len(counting.calls) == 2 and health["cache"] == "off"
    assert not (tmp_path / "cache" / "embeddings.sqlite3").exists()
