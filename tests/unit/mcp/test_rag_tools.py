"""RAG tools against the real RAG app on a free port (real postgres, embedding service and local Qdrant)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import rag
from services.rag.app import create_app
from tests.support.fake_openai import FakeBackend, ThreadedServer
from tests.support.pg import shared_postgres
from tests.support.procs import free_port, wait_healthy
from tests.support.rag import rag_settings, shared_embedding

COFFEE = "Steep coarse ground coffee in a French press for four minutes before pressing the plunger down slowly."
STARS = "# Stars\n\nThe Sun is a yellow dwarf star at the centre of the solar system."


def _serve_rag(tmp: Path, models_dir: Path, database_url: str, embedding_url: str, gateway_url: str,
               **env: Any) -> ThreadedServer:
    settings = rag_settings(tmp, models_dir, database_url, embedding_url, gateway_url, **env)
    return ThreadedServer(lambda: create_app(settings), lifespan="on").start(deadline_s=60)


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    backend = FakeBackend("gateway").start()
    yield backend.api_base.removesuffix("/v1")
    backend.stop()


@pytest.fixture(scope="module")
def rag_url(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, gateway_url: str) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("rag-service")
    (tmp / "documents").mkdir()
    (tmp / "documents" / "coffee.txt").write_text(COFFEE)
    (tmp / "documents" / "stars.md").write_text(STARS)
    database = shared_postgres().database("mcp_rag")
    server = _serve_rag(tmp, models_dir, database, shared_embedding(models_dir), gateway_url)
    url = f"http://127.0.0.1:{server.port}"
    wait_healthy(f"{url}/health", 60)
    yield url
    server.stop()


async def call(rag_url: str, tool: str, args: dict[str, Any], **env: Any) -> dict[str, Any]:
    settings = McpSettings(_env_file=None, RAG_URL=rag_url, RAG_LLM_TIMEOUT=60, **env)  # type: ignore[call-arg]
    mcp = FastMCP("rag-test")
    rag.register(mcp, settings)
    async with Client(mcp) as client:
        return (await client.call_tool(tool, args)).structured_content


async def test_index_then_query_answers_with_sources(rag_url: str) -> None:
    report = await call(rag_url, "rag_index", {"paths": ["coffee.txt", "stars.md"], "collection": "mcp"})
    assert report["collection"] == "mcp" and report["chunks_added"] >= 2
    assert {(doc["path"], doc["status"]) for doc in report["documents"]} == {("coffee.txt", "added"),
                                                                            ("stars.md", "added")}
    answer = await call(rag_url, "rag_query", {"question": "How long should coffee steep in a French press?",
                                               "collection": "mcp", "top_k": 2})
    assert answer["answer"].startswith("gateway:")  # the fake gateway names itself
    assert answer["sources"][0]["document"] == "coffee.txt"
    assert "four minutes" in answer["sources"][0]["text"]
    assert answer["collection"] == "mcp"


async def test_service_refusals_carry_its_message(rag_url: str) -> None:
    with pytest.raises(ToolError, match=r"refused the request \(404\): collection 'absent' does not exist"):
        await call(rag_url, "rag_query", {"question": "anything", "collection": "absent"})
    with pytest.raises(ToolError, match=r"refused the request \(4\d\d\).*missing.txt"):
        await call(rag_url, "rag_index", {"paths": ["missing.txt"], "collection": "mcp"})
    with pytest.raises(ToolError, match="collection"):
        await call(rag_url, "rag_query", {"question": "x", "collection": "../bad"})


async def test_a_stopped_service_is_reported_as_down() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ToolError, match=f"RAG service at {down} is down.*ai-suite up p3"):
        await call(down, "rag_query", {"question": "anything"})


async def test_a_service_without_its_database_is_reported_unavailable(
        tmp_path: Path, models_dir: Path, gateway_url: str) -> None:
    dead_pg = f"postgresql://nobody@/rag?host={tmp_path / 'no-socket-here'}"
    # a short pool wait: the 503 is the same, it only comes sooner
    server = _serve_rag(tmp_path, models_dir, dead_pg, shared_embedding(models_dir), gateway_url,
                        POSTGRES_POOL_TIMEOUT=0.2)
    try:
        with pytest.raises(ToolError, match=r"RAG service is unavailable \(503: .*postgres.*ai-suite up p3"):
            await call(f"http://127.0.0.1:{server.port}", "rag_index", {"collection": "mcp"})
    finally:
        server.stop()
