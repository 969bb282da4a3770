"""The embedding service in process with the real bundled MiniLM: health, /embed, limits, errors, metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from services.common.models import ModelMissing
from services.embedding.app import create_app
from services.embedding.engine import EmbeddingEngine, plan_batches
from services.embedding.settings import EmbeddingSettings
from tests.support.asgi import in_process, wait_ready
from tests.support.metrics import metric

READ_FILE = "How do I read a text file in Python?"
READ_FILE_2 = "Reading the contents of a file with Python's open() function."
WEATHER = "Heavy rain and strong winds are expected tomorrow afternoon."


def make_settings(models_dir: Path, **env: object) -> EmbeddingSettings:
    """Settings without the vector cache: these tests watch the model's own batches and counts."""
    env = {"EMBEDDING_CACHE": False, **env}
    return EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir, **env)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> EmbeddingEngine:
    """One real model for the module; each test still builds its own app and lifespan around it."""
    return EmbeddingEngine.load(make_settings(models_dir))


@asynccontextmanager
async def running(settings: EmbeddingSettings, **kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(settings, **kwargs), "http://embedding", timeout=60) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
async def client(models_dir: Path, engine: EmbeddingEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_settings(models_dir), loader=lambda _: engine) as client:
        await wait_ready(client)
        yield client


async def embed(client: httpx.AsyncClient, texts: list[str]) -> np.ndarray:
    response = await client.post("/embed", json={"texts": texts})
    assert response.status_code == 200, response.text
    return np.array(response.json()["embeddings"])


async def test_real_load_reports_loading_then_ready(models_dir: Path) -> None:
    async with running(make_settings(models_dir, EMBEDDING_THREADS=1)) as client:
        body = (await wait_ready(client)).json()
    assert body["dependencies"] == {"model": "ok"}
    assert body["dim"] == 384 and body["threads"] == 1 and body["batch_size"] == 64


async def test_health_is_503_until_the_loader_returns(models_dir: Path, engine: EmbeddingEngine) -> None:
    release = threading.Event()

    def gated(_: EmbeddingSettings) -> EmbeddingEngine:
        release.wait(30)
        return engine

    async with running(make_settings(models_dir), loader=gated) as client:
        loading = await client.get("/health")
        refused = await client.post("/embed", json={"texts": ["hi"]})
        release.set()
        ready = await wait_ready(client)
    assert loading.status_code == 503 and loading.headers["retry-after"]
    assert loading.json()["status"] == "loading" and loading.json()["dependencies"] == {"model": "loading"}
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_loading"
    assert refused.headers["retry-after"]
    assert ready.json()["model"] == "sentence-transformers/all-MiniLM-L6-v2"


async def test_a_failed_load_is_named_by_health_and_requests(models_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()  # the folder exists, but holds no model.onnx or tokenizer
    async with running(make_settings(models_dir, EMBEDDING_MODEL_DIR=str(broken))) as client:
        deadline = time.monotonic() + 60
        while (health := await client.get("/health")).json()["dependencies"]["model"] == "loading":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        refused = await client.post("/embed", json={"texts": ["hi"]})
    assert health.status_code == 503 and health.json()["dependencies"]["model"].startswith("failed: ")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_load_failed"


async def test_a_missing_model_folder_fails_the_start_with_the_fetch_command(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    with pytest.raises(ModelMissing, match="ai-suite models fetch"):
        async with LifespanManager(app):
            pass


async def test_embed_returns_unit_vectors_with_sensible_similarity(client: httpx.AsyncClient) -> None:
    response = await client.post("/embed", json={"texts": [READ_FILE, READ_FILE_2, WEATHER]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert body["dim"] == 384 and body["truncated"] == []
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.6 and unrelated < 0.3, (similar, unrelated)


async def test_order_is_kept_and_a_text_embeds_alike_alone_or_in_a_batch(client: httpx.AsyncClient) -> None:
    batch = await embed(client, [WEATHER, "파일을 읽는 방법", READ_FILE, "짧은 문장"])
    alone = await embed(client, [READ_FILE])
    assert float(batch[2] @ alone[0]) > 0.99
    assert float(batch[0] @ alone[0]) < 0.3
    korean = await embed(client, ["파일을 읽는 방법"])
    assert float(batch[1] @ korean[0]) > 0.99


async def test_long_texts_are_cut_and_reported(models_dir: Path, engine: EmbeddingEngine) -> None:
    long_text = "Rivers carry sediment to the sea. " + "Mountains erode slowly over millions of years."
    async with running(make_settings(models_dir, EMBEDDING_MAX_CHARS=33), loader=lambda _: engine) as client:
        await wait_ready(client)
        response = await client.post("/embed", json={"texts": ["short", long_text, "also short"]})
        cut = await embed(client, [long_text[:33]])
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200 and response.json()["truncated"] == [1]
    vectors = np.array(response.json()["embeddings"])
    assert float(vectors[1] @ cut[0]) > 0.99  # the model saw only the first 33 characters
    assert metric(metrics, "embedding_truncated_texts_total") == 1


async def test_texts_over_the_limit_give_413_and_the_limit_itself_is_served(
    models_dir: Path, engine: EmbeddingEngine, client: httpx.AsyncClient
) -> None:
    too_many = await client.post("/embed", json={"texts": ["a"] * 1025})
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "payload_too_large" and "1024" in too_many.json()["error"]["message"]
    async with running(make_settings(models_dir, EMBEDDING_MAX_TEXTS=5), loader=lambda _: engine) as small:
        await wait_ready(small)
        at_limit = await small.post("/embed", json={"texts": ["a"] * 5})
        over = await small.post("/embed", json={"texts": ["a"] * 6})
    assert at_limit.status_code == 200 and len(at_limit.json()["embeddings"]) == 5
    assert over.status_code == 413


@pytest.mark.parametrize(
    ("texts", "param"),
    [([], "texts"), (["fine", ""], "texts.1"), (["fine", "ok", " \n\t "], "texts.2"), (["\ud800"], "texts.0")],
)
async def test_empty_or_unencodable_texts_give_422_naming_the_index(
    client: httpx.AsyncClient, texts: list[str], param: str
) -> None:
    # json.dumps keeps a lone surrogate as the escape "\ud800", as a client could send it.
    response = await client.post("/embed", content=json.dumps({"texts": texts}),
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["param"] == param
    if param != "texts":
        assert f"texts[{param.split('.')[1]}]" in error["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b'{"texts": "one string"}', "texts"), (b'{"texts": [1, 2]}', "texts.0"),
     (b'{"text": ["a"]}', "texts")],
)
async def test_malformed_bodies_give_400(client: httpx.AsyncClient, content: bytes, message: str) -> None:
    response = await client.post("/embed", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_a_full_queue_answers_503_with_retry_after(models_dir: Path, engine: EmbeddingEngine) -> None:
    app = create_app(make_settings(models_dir, EMBEDDING_MAX_QUEUE=0), loader=lambda _: engine)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedding", timeout=60) as client:
            await wait_ready(client)
            state = app.state.embedding
            async with state.gate:  # hold the model, as a long batch would
                first = asyncio.create_task(client.post("/embed", json={"texts": ["first"]}))
                deadline = time.monotonic() + 10
                while state.pending < 1:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.005)
                second = await client.post("/embed", json={"texts": ["second"]})
            assert (await first).status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert second.json()["error"]["code"] == "queue_full"


async def test_metrics_count_texts_and_time_batches(client: httpx.AsyncClient) -> None:
    await embed(client, [READ_FILE, WEATHER, "third"])
    await embed(client, ["fourth"])
    text = (await client.get("/metrics")).text
    assert metric(text, "embedding_texts_total") == 4
    assert metric(text, "embedding_batch_seconds_count") == 2
    assert metric(text, "embedding_batch_seconds_sum") > 0


async def test_metrics_show_onnx_batch_sizes_and_tokens(client: httpx.AsyncClient, engine: EmbeddingEngine) -> None:
    # the long texts cannot all share one run within EMBEDDING_BATCH_TOKENS; the short ones can
    texts = ["falcon tower " * 150] * 6 + ["short", "also short", "three"]
    lengths = engine.token_lengths(texts)
    sizes = [len(batch) for batch in plan_batches(lengths, engine.batch_size, engine.batch_tokens)]
    assert len(sizes) >= 2 and max(sizes) < len(texts) and len(set(sizes)) > 1
    await embed(client, texts)
    text = (await client.get("/metrics")).text
    assert metric(text, "embedding_batch_texts_count") == len(sizes)
    assert metric(text, "embedding_batch_texts_sum") == len(texts)
    for bound in (1, 2, 4, 8, 16, 32, 64):
        assert metric(text, f'embedding_batch_texts_bucket{{le="{float(bound)}"}}') == sum(s <= bound for s in sizes)
    assert metric(text, "embedding_tokens_total") == sum(lengths)


def test_memory_arena_setting_reaches_onnx_runtime_and_keeps_the_vectors(
    models_dir: Path, engine: EmbeddingEngine
) -> None:
    lean = EmbeddingEngine.load(make_settings(models_dir, EMBEDDING_MEMORY_ARENA="false", EMBEDDING_THREADS=1))
    assert lean.model.model.model.get_session_options().enable_cpu_mem_arena is False
    assert engine.model.model.model.get_session_options().enable_cpu_mem_arena is True
    same = lean.embed([WEATHER]).vectors[0] @ engine.embed([WEATHER]).vectors[0]
    assert same > 0.999
