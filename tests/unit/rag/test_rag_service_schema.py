"""Schemathesis over the RAG OpenAPI, against the service on a real port: no input gives a 5xx."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.rag.app import create_app
from tests.support.fake_openai import ThreadedServer
from tests.support.fuzz import fuzz
from tests.support.pg import TestPostgres
from tests.support.rag import rag_settings


@pytest.fixture(scope="module")
def rag_url(models_dir: Path, pg_server: TestPostgres, embedding_url: str, gateway_url: str) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="rag-schema-"))
    (folder / "documents").mkdir()
    (folder / "documents" / "note.md").write_text("The lighthouse keeper logs the weather at dawn.", encoding="utf-8")
    config = rag_settings(folder, models_dir, pg_server.database("schema"), embedding_url, gateway_url)
    server = ThreadedServer(lambda: create_app(config), lifespan="on").start(deadline_s=60)
    url = f"http://127.0.0.1:{server.port}"
    try:
        httpx.get(f"{url}/health", timeout=30)
        response = httpx.post(f"{url}/index", json={"collection": "default"}, timeout=60)
        assert response.status_code == 200, response.text
        yield url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_no_input_gives_a_server_error(rag_url: str) -> None:
    statuses = fuzz(rag_url, {"POST /index", "POST /search", "POST /query", "GET /collections", "POST /prewarm",
                              "POST /admin/snapshot"})
    # the generated inputs reach both the success and the refusal paths
    assert 200 in statuses and any(400 <= status < 500 for status in statuses)
