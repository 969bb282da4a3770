"""Request and response bodies of the RAG API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CollectionName = Annotated[str, StringConstraints(pattern=COLLECTION_PATTERN)]


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: CollectionName = Field("default", description="Collection to index into (created on first use).")
    paths: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=lambda: ["."], max_length=1000,
        description="Files or folders under DOCUMENTS_DIR, relative to it or absolute; default the whole folder.",
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="The question; longer than RAG_MAX_QUERY_CHARS gets 413.")
    collection: CollectionName = Field("default", description="Collection to search.")
    top_k: int | None = Field(None, ge=1, le=100, description="Results wanted (default RAG_TOP_K).")
    hybrid: bool | None = Field(None, description="Fuse BM25 with dense search (default RAG_HYBRID).")


class QueryRequest(SearchRequest):
    stream: bool = Field(False, description="Answer as server-sent events: sources, delta..., done or error.")


class Source(BaseModel):
    document: str
    document_id: str
    chunk: int
    score: float
    text: str


class SearchResponse(BaseModel):
    collection: str
    hybrid: bool
    results: list[Source]
    timings: dict[str, float]


class QueryResponse(BaseModel):
    answer: str
    sources: list[Source]
    collection: str
    model: str
    timings: dict[str, float]


class PrewarmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: bool = Field(False, description="Also ask the gateway for a one-token answer.")
