"""The RAG service as a real process with the real embedding service, postgres and the p1 gateway + model."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.corpus import write_corpus
from tests.support.pg import TestPostgres, private_postgres
from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration


@dataclass
class RagStack:
    rag: Service
    url: str
    corpus: dict


@pytest.fixture(scope="module")
def rag_stack(models_dir: Path, gateway_url: str) -> Iterator[RagStack]:
    folder = Path(tempfile.mkdtemp(prefix="rag-it-"))
    postgres: TestPostgres = private_postgres()
    embedding_port, rag_port = free_port(), free_port()
    common = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(folder / "data"), "LOG_JSON": "false"}
    embedding = Service("embedding", python_module("services.embedding"),
                        {**common, "EMBEDDING_PORT": str(embedding_port)},
                        f"http://127.0.0.1:{embedding_port}/health", folder / "logs" / "embedding.log")
    rag_env = {
        **common, "RAG_PORT": str(rag_port), "EMBEDDING_URL": f"http://127.0.0.1:{embedding_port}",
        "GATEWAY_URL": gateway_url, "DATABASE_URL": postgres.database("rag_it"),
        "DOCUMENTS_DIR": str(folder / "documents"), "QDRANT_PATH": str(folder / "vectors"),
        # the bundled model has a 1024-token window and the gateway waits 20 s: keep the prompt short
        "RAG_CONTEXT_TOKENS": "200", "RAG_MAX_ANSWER_TOKENS": "32",
        "QDRANT_RETRY_MIN_WAIT": "0.1", "QDRANT_RETRY_MAX_WAIT": "0.5",
    }
    corpus = write_corpus(folder / "documents")
    rag = Service("rag", python_module("services.rag"), rag_env, f"http://127.0.0.1:{rag_port}/health",
                  folder / "logs" / "rag.log")
    try:
        embedding.start(120)
        rag.start(120)
        yield RagStack(rag, f"http://127.0.0.1:{rag_port}", corpus)
    finally:
        rag.stop()
        embedding.stop()
        postgres.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def post(url: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(url, json=body, timeout=timeout, trust_env=False)


def test_index_search_and_answer_over_http(rag_stack: RagStack) -> None:
    report = post(f"{rag_stack.url}/index", {"collection": "docs"})
    assert report.status_code == 200, report.text
    assert {d["path"] for d in report.json()["documents"]} == set(rag_stack.corpus["documents"])
    for item in rag_stack.corpus["questions"]:
        results = post(f"{rag_stack.url}/search", {"query": item["question"], "collection": "docs"}).json()["results"]
        assert results[0]["document"] == item["expected_document"], item["question"]
    answer = post(f"{rag_stack.url}/query", {"query": "How long should coffee steep in a French press?",
                                            "collection": "docs", "top_k": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["answer"].strip()
    assert body["sources"][0]["document"] == "coffee.txt"


def test_streamed_answer_ends_with_done(rag_stack: RagStack) -> None:
    post(f"{rag_stack.url}/index", {"collection": "docs"})
    events: list[tuple[str, dict]] = []
    with httpx.stream("POST", f"{rag_stack.url}/query", json={"query": "What are Saturn's rings made of?",
                      "collection": "docs", "stream": True}, timeout=120, trust_env=False) as response:
        assert response.status_code == 200
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    assert events[0][0] == "sources"
    assert events[0][1]["sources"][0]["document"] == "solar_system.pdf"
    assert events[-1][0] == "done"
    assert events[-1][1]["answer"] == "".join(data["text"] for name, data in events if name == "delta")


def test_restart_keeps_everything_indexed(rag_stack: RagStack) -> None:
    first = post(f"{rag_stack.url}/index", {"collection": "docs"}).json()
    before = httpx.get(f"{rag_stack.url}/collections", trust_env=False).json()
    rag_stack.rag.stop()
    rag_stack.rag.start(120)
    after = httpx.get(f"{rag_stack.url}/collections", trust_env=False).json()
    assert after == before
    again = post(f"{rag_stack.url}/index", {"collection": "docs"}).json()
    assert again["chunks_added"] == 0
    assert again["chunks_unchanged"] == first["chunks_added"] + first["chunks_unchanged"]
    item = rag_stack.corpus["questions"][0]
    results = post(f"{rag_stack.url}/search", {"query": item["question"], "collection": "docs"}).json()["results"]
    assert results[0]["document"] == item["expected_document"]
