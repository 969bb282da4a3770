"""RAG tools: ask the suite's RAG service a question, or index documents under its DOCUMENTS_DIR."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import httpx
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field, StringConstraints

from services.mcp_server.catalog import tool

if TYPE_CHECKING:
    from services.mcp_server.settings import McpSettings

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # the RAG service's own rule
SOURCE_TEXT_CHARS = 1000
DOWN_HINT = "start it with `ai-suite up p3` (or check RAG_URL)"

Collection = Annotated[str, StringConstraints(pattern=COLLECTION_PATTERN),
                       Field(description="Collection name (letters, digits, _ . -).")]



def _message(response: httpx.Response) -> str:
    """The service's `{"error": {"message"}}`, or the start of the body."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except ValueError:
        pass
    return response.text[:300] or response.reason_phrase


async def call_rag(settings: McpSettings, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to the RAG service and return its JSON, mapping failures to ToolErrors."""
    url = settings.rag_url.rstrip("/") + path
    try:
        async with httpx.AsyncClient(timeout=settings.rag_timeout) as client:
            response = await client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise ToolError(f"the RAG service at {settings.rag_url} did not answer within "
                        f"{settings.rag_timeout:g}s (RAG_LLM_TIMEOUT)") from exc
    except httpx.TransportError as exc:
        raise ToolError(f"the RAG service at {settings.rag_url} is down ({exc}): {DOWN_HINT}") from exc
    if response.status_code in (502, 503, 504):
        raise ToolError(f"the RAG service is unavailable ({response.status_code}: {_message(response)}); "
                        f"retry later or {DOWN_HINT}")
    if response.status_code >= 400:
        raise ToolError(f"the RAG service refused the request ({response.status_code}): {_message(response)}")
    result: dict[str, Any] = response.json()
    return result


def _source(source: dict[str, Any]) -> dict[str, Any]:
    text = str(source.get("text", ""))
    return {"document": source.get("document"), "chunk": source.get("chunk"), "score": source.get("score"),
            "text": text[:SOURCE_TEXT_CHARS], "truncated": len(text) > SOURCE_TEXT_CHARS}


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add rag_query and rag_index."""

    @tool(mcp, "rag_query")
    async def rag_query(
        question: Annotated[str, Field(min_length=1, max_length=8000, description="The question to answer.")],
        collection: Collection = "default",
        top_k: Annotated[int | None, Field(ge=1, le=100, description="Passages to retrieve "
                                                                     "(default RAG_TOP_K).")] = None,
    ) -> dict[str, Any]:
        """Answer a question from an indexed collection, citing the passages used as sources."""
        body: dict[str, Any] = {"query": question, "collection": collection}
        if top_k is not None:
            body["top_k"] = top_k
        result = await call_rag(settings, "/query", body)
        return {"answer": result.get("answer", ""), "sources": [_source(s) for s in result.get("sources", [])],
                "collection": result.get("collection", collection), "model": result.get("model")}

    @tool(mcp, "rag_index")
    async def rag_index(
        paths: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] | None,
                         Field(min_length=1, max_length=1000, description="Files or folders under the RAG "
                               "service's DOCUMENTS_DIR, relative to it or absolute (default: all of it).")] = None,
        collection: Collection = "default",
    ) -> dict[str, Any]:
        """Index documents from the RAG service's DOCUMENTS_DIR into a collection (created on first use)."""
        return await call_rag(settings, "/index", {"collection": collection, "paths": paths or ["."]})
