"""Schemathesis against the embedding service's OpenAPI, on a real port: generated requests never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.embedding.app import create_app
from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from tests.support.fake_openai import ThreadedServer
from tests.support.fuzz import fuzz
from tests.support.procs import wait_healthy


@pytest.fixture(scope="module")
def base_url(models_dir: Path) -> Iterator[str]:
    # Small limits keep generated bodies cheap to embed; the checks are about status codes, not sizes.
    config = EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir,  # type: ignore[call-arg]
                               EMBEDDING_MAX_TEXTS=16, EMBEDDING_MAX_CHARS=200)
    engine = EmbeddingEngine.load(config)
    server = ThreadedServer(lambda: create_app(config, loader=lambda _: engine), lifespan="on").start()
    try:
        wait_healthy(f"http://127.0.0.1:{server.port}/health", 60)
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_no_generated_request_gets_a_5xx(base_url: str) -> None:
    statuses = fuzz(base_url, {"POST /embed", "POST /v1/embeddings"}, examples=40)
    assert 200 in statuses and any(400 <= status < 500 for status in statuses)
