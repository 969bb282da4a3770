"""The embedding service's OpenAI shape: /v1/embeddings and /v1/models, through httpx and the official client."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from asgi_lifespan import LifespanManager

from services.embedding.app import create_app
from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from tests.support.rag import embedding_server

TEXTS = ["How do I read a text file in Python?", "파일을 읽는 방법", "Heavy rain is expected tomorrow."]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def make_settings(models_dir: Path, **env: object) -> EmbeddingSettings:
    """Settings without the vector cache: these tests watch the model's own batches and counts."""
    env = {"EMBEDDING_CACHE": False, **env}
    return EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir, **env)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> EmbeddingEngine:
    return EmbeddingEngine.load(make_settings(models_dir))


@pytest.fixture
async def client(models_dir: Path, engine: EmbeddingEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(models_dir), loader=lambda _: engine)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedding", timeout=60) as client:
            deadline = time.monotonic() + 60
            while (await client.get("/health")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            yield client


@pytest.fixture(scope="module")
def served(models_dir: Path, engine: EmbeddingEngine) -> Iterator[str]:
    """The real app on a real uvicorn port, for the official client."""
    with embedding_server(models_dir, lambda _: engine) as url:
        yield f"{url}/v1"


async def test_float_response_has_the_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/embeddings", json={"input": TEXTS, "model": "text-embedding-ada-002"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL and body["truncated"] == []
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    assert all(len(d["embedding"]) == 384 for d in body["data"])
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > len(TEXTS) * 2  # at least [CLS] and [SEP] each
    direct = (await client.post("/embed", json={"texts": TEXTS})).json()["embeddings"]
    assert np.allclose([d["embedding"] for d in body["data"]], direct, atol=1e-6)


async def test_a_single_string_and_base64_encoding(client: httpx.AsyncClient) -> None:
    floats = await client.post("/v1/embeddings", json={"input": TEXTS[0], "model": "embedding"})
    packed = await client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"})
    assert floats.status_code == packed.status_code == 200
    assert len(floats.json()["data"]) == 1
    decoded = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    assert np.allclose(decoded, floats.json()["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"input": "x", "model": "gpt-4o"}, 404, "model_not_found"),
        ({"input": "x", "dimensions": 128}, 400, "invalid_request"),
        ({"input": [[101, 2023]]}, 400, "invalid_request"),
        ({"input": []}, 422, "invalid_input"),
        ({"input": ["ok", "   "]}, 422, "invalid_input"),
        ({"input": ["a"] * 1025}, 413, "payload_too_large"),
        ({"input": "x", "encoding_format": "int8"}, 400, "invalid_request"),
    ],
)
async def test_bad_requests_get_openai_errors(client: httpx.AsyncClient, body: dict, status: int, code: str) -> None:
    response = await client.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_token_arrays_are_refused_by_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/embeddings", json={"input": [[101, 2023]]})
    assert "token arrays are not supported" in response.json()["error"]["message"]


async def test_models_lists_the_accepted_names(client: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids == [MODEL, "all-MiniLM-L6-v2", "embedding", "text-embedding-ada-002"]


def test_the_official_openai_client_gets_the_same_vectors(served: str) -> None:
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0)
    # The client asks for base64 unless told otherwise, and decodes it itself.
    default = client.embeddings.create(model="text-embedding-ada-002", input=TEXTS)
    floats = client.embeddings.create(model="embedding", input=TEXTS, encoding_format="float")
    assert [d.index for d in default.data] == [0, 1, 2]
    assert all(len(d.embedding) == 384 for d in default.data)
    assert np.allclose([d.embedding for d in default.data], [d.embedding for d in floats.data], atol=1e-6)
    assert default.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-large", input="x")
