"""The gateway's /v1/embeddings route in front of the real embedding service on a real port."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from asgi_lifespan import LifespanManager

from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.fake_openai import FakeBackend
from tests.support.procs import free_port, wait_healthy
from tests.support.rag import embedding_server

TEXTS = ["How do I read a text file in Python?", "Heavy rain is expected tomorrow."]


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> EmbeddingEngine:
    return EmbeddingEngine.load(EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def embedding_base(models_dir: Path, engine: EmbeddingEngine) -> Iterator[str]:
    with embedding_server(models_dir, lambda _: engine) as url:
        yield f"{url}/v1"


@asynccontextmanager
async def gateway(embedding_api_base: str | None, **env: object) -> AsyncIterator[httpx.AsyncClient]:
    unused = f"http://127.0.0.1:{free_port()}/v1"
    if embedding_api_base is not None:
        env["EMBEDDING_API_BASE"] = embedding_api_base
    settings = GatewaySettings(_env_file=None, **{"CHAT_API_BASE": unused, "CODE_API_BASE": unused, **env})
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


@pytest.fixture
async def gw(embedding_base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(embedding_base) as client:
        yield client


@pytest.mark.parametrize("model", ["embedding", "text-embedding-ada-002", "sentence-transformers/all-MiniLM-L6-v2",
                                   "all-MiniLM-L6-v2"])
async def test_every_embedding_name_reaches_the_service(gw: httpx.AsyncClient, embedding_base: str,
                                                       model: str) -> None:
    response = await gw.post("/v1/embeddings", json={"model": model, "input": TEXTS})
    assert response.status_code == 200, response.text
    via_gateway = [d["embedding"] for d in response.json()["data"]]
    async with httpx.AsyncClient(trust_env=False) as direct:
        expected = (await direct.post(f"{embedding_base}/embeddings", json={"input": TEXTS})).json()
    assert np.allclose(via_gateway, [d["embedding"] for d in expected["data"]], atol=1e-6)
    assert response.json()["usage"] == expected["usage"]


async def test_the_route_also_answers_without_the_v1_prefix(gw: httpx.AsyncClient) -> None:
    response = await gw.post("/embeddings", json={"model": "embedding", "input": "hello"})
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384


async def test_the_official_async_client_works_through_the_gateway(embedding_base: str) -> None:
    async with gateway(embedding_base) as http:
        client = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="unused", http_client=http, max_retries=0)
        result = await client.embeddings.create(model="text-embedding-ada-002", input=TEXTS)
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (2, 384)
    assert float(vectors[0] @ vectors[1]) < 0.3


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"model": "chat-7b", "input": "x"}', 404, "model_not_found"),
        (b'{"input": "x"}', 400, "invalid_request"),
        (b"{oops", 400, "invalid_json"),
        (b'{"model": "embedding", "input": ["ok", ""]}', 422, "invalid_input"),  # the service's own answer
    ],
)
async def test_bad_requests(gw: httpx.AsyncClient, content: bytes, status: int, code: str) -> None:
    response = await gw.post("/v1/embeddings", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_down_service_gives_503_with_retry_after() -> None:
    async with gateway(f"http://127.0.0.1:{free_port()}/v1") as client:
        response = await client.post("/v1/embeddings", json={"model": "embedding", "input": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "embedding_unavailable" and "connection refused" in error["message"]


@contextmanager
def loading_embedding_service(models_dir: Path, engine: EmbeddingEngine) -> Iterator[tuple[str, threading.Event]]:
    """The real embedding app over HTTP, held in its loading state until the event is set; yields (url, event)."""
    release = threading.Event()

    def gated(_: EmbeddingSettings) -> EmbeddingEngine:
        release.wait(30)
        return engine

    with embedding_server(models_dir, gated, ready=False) as url:
        try:
            yield url, release
        finally:
            release.set()  # before the server stops: its shutdown waits for the load to end


async def test_a_loading_service_passes_its_503_and_retry_after(models_dir: Path, engine: EmbeddingEngine) -> None:
    with loading_embedding_service(models_dir, engine) as (url, release):
        async with gateway(f"{url}/v1") as client:
            loading = await client.post("/v1/embeddings", json={"model": "embedding", "input": "x"})
            release.set()
            wait_healthy(f"{url}/health", 30)
            ready = await client.post("/v1/embeddings", json={"model": "embedding", "input": "x"})
    assert loading.status_code == 503 and loading.headers["retry-after"] == "2"
    assert loading.json()["error"]["code"] == "model_loading"
    assert ready.status_code == 200


async def test_a_service_that_never_answers_gives_504() -> None:
    # A listening socket that nobody reads: the connection opens, the answer never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        async with gateway(base, EMBEDDING_TIMEOUT=0.3) as client:
            response = await client.post("/v1/embeddings", json={"model": "embedding", "input": "x"})
    assert response.status_code == 504 and response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "EMBEDDING_TIMEOUT=0.3s" in response.json()["error"]["message"]


EMBEDDING_NAMES = ["embedding", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "text-embedding-ada-002"]


async def test_models_lists_the_embedding_names_for_editors(gw: httpx.AsyncClient) -> None:
    for path in ("/v1/models", "/models"):
        listed = {m["id"]: m for m in (await gw.get(path)).json()["data"]}
        assert {"chat-7b", "auto", *EMBEDDING_NAMES} <= set(listed)
        assert {(m["object"], m["owned_by"]) for m in listed.values()} == {("model", "local-ai-suite")}
    assert set(EMBEDDING_NAMES) <= set((await gw.get("/health")).json()["models"])


async def test_the_official_client_finds_the_embedding_model_in_the_list(embedding_base: str) -> None:
    async with gateway(embedding_base) as http:
        client = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="unused", http_client=http, max_retries=0)
        names = [model.id async for model in client.models.list()]
    assert [name for name in names if name in EMBEDDING_NAMES] == EMBEDDING_NAMES


async def test_a_down_embedding_service_alone_fails_readiness(embedding_base: str) -> None:
    # Same policy as a down code model: every configured backend must answer for readiness to be 200.
    chat = FakeBackend("chat").start()
    try:
        async with gateway(f"http://127.0.0.1:{free_port()}/v1", CHAT_API_BASE=chat.api_base,
                           CODE_API_BASE=chat.api_base) as client:
            down = await client.get("/health/readiness")
        async with gateway(embedding_base, CHAT_API_BASE=chat.api_base, CODE_API_BASE=chat.api_base) as client:
            ready = await client.get("/health/readiness")
    finally:
        chat.stop()
    assert down.status_code == 503 and down.headers["retry-after"] == "2"
    deps = down.json()["dependencies"]
    assert (deps["chat-7b"], deps["code-7b"]) == ("ok", "ok")
    assert deps["embedding"].startswith("unavailable: connection refused")
    assert ready.status_code == 200 and ready.json()["dependencies"]["embedding"] == "ok"


async def test_a_loading_embedding_service_is_not_ready(models_dir: Path, engine: EmbeddingEngine) -> None:
    with loading_embedding_service(models_dir, engine) as (url, release):
        async with gateway(f"{url}/v1") as client:
            loading = (await client.get("/health/readiness")).json()["dependencies"]["embedding"]
            release.set()
            wait_healthy(f"{url}/health", 30)
            loaded = (await client.get("/health/readiness")).json()["dependencies"]["embedding"]
    assert loading.startswith("unavailable: HTTP 503") and loaded == "ok"


@pytest.mark.parametrize("base", [None, ""])
async def test_without_an_embedding_service_no_name_is_offered(base: str | None) -> None:
    async with gateway(base) as client:
        ids = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
        deps = (await client.get("/health/readiness")).json()["dependencies"]
        response = await client.post("/v1/embeddings", json={"model": "embedding", "input": "x"})
    assert ids == {"chat-7b", "code-7b", "auto", "gpt-3.5-turbo", "qwen2.5-14b-instruct"}
    assert set(deps) == {"chat-7b", "code-7b", "conversations"}
    assert response.status_code == 404 and "EMBEDDING_API_BASE" in response.json()["error"]["message"]
