"""Fixtures of the RAG service tests: a real postgres, the real embedding service, a fake gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.support.corpus import write_corpus
from tests.support.fake_openai import FakeBackend
from tests.support.pg import TestPostgres, shared_postgres
from tests.support.rag import rag_settings, running_rag, shared_embedding


@pytest.fixture(scope="session")
def pg_server() -> TestPostgres:
    return shared_postgres()


@pytest.fixture(scope="session")
def embedding_url(models_dir: Path) -> str:
    return shared_embedding(models_dir)


@pytest.fixture(scope="session")
def gateway() -> Iterator[FakeBackend]:
    backend = FakeBackend("gateway").start()
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway: FakeBackend) -> str:
    return gateway.api_base.removesuffix("/v1")


@pytest.fixture
def database_url(pg_server: TestPostgres) -> str:
    return pg_server.database("rag")


@pytest.fixture
def corpus(tmp_path: Path) -> dict:
    return write_corpus(tmp_path / "documents")


@pytest.fixture
async def rag(tmp_path: Path, models_dir: Path, database_url: str, embedding_url: str, gateway_url: str,
              corpus: dict) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The service over a fresh database and Qdrant folder, with the corpus written to DOCUMENTS_DIR."""
    settings = rag_settings(tmp_path, models_dir, database_url, embedding_url, gateway_url)
    async with running_rag(settings) as running:
        yield running
