"""Settings of the RAG service, read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field

from services.common.models import EMBED_DIR
from services.common.settings import SuiteSettings


class RagSettings(SuiteSettings):
    """Where the stores, the embedding service and the gateway are, and how retrieval is tuned."""

    port: int = Field(8002, alias="RAG_PORT", ge=0, le=65535, description="Port to listen on.")
    embedding_url: str = Field(
        "http://127.0.0.1:8003", alias="EMBEDDING_URL", description="Base URL of the embedding service."
    )
    embedding_timeout: float = Field(30.0, alias="EMBEDDING_TIMEOUT", gt=0, description="Seconds per embed call.")
    embedding_batch_size: int = Field(
        64, alias="EMBEDDING_BATCH_SIZE", ge=1, le=1024, description="Texts sent per embed call while indexing."
    )
    embedding_model_dir: str = Field(
        EMBED_DIR, alias="EMBEDDING_MODEL_DIR",
        description="Embedding model folder (relative to MODELS_DIR); its tokenizer.json counts chunk tokens.",
    )
    gateway_url: str = Field("http://127.0.0.1:8000", alias="GATEWAY_URL", description="Base URL of the gateway.")
    rag_model: str = Field("chat-7b", alias="RAG_MODEL", description="Model alias that writes the answers.")
    rag_llm_timeout: float = Field(120.0, alias="RAG_LLM_TIMEOUT", gt=0, description="Seconds for one answer.")
    rag_max_answer_tokens: int = Field(
        256, alias="RAG_MAX_ANSWER_TOKENS", ge=1, description="Largest answer the model may write, in tokens."
    )
    documents_dir: Path | None = Field(
        None, alias="DOCUMENTS_DIR", description="Root that indexed paths must lie under (default DATA_DIR/documents)."
    )
    qdrant_url: str = Field("", alias="QDRANT_URL", description="Qdrant server URL; empty uses embedded Qdrant.")
    qdrant_path: Path | None = Field(
        None, alias="QDRANT_PATH", description="Folder of embedded Qdrant (default DATA_DIR/vectors)."
    )
    qdrant_api_key: str | None = Field(None, alias="QDRANT_API_KEY", description="API key of a Qdrant server.")
    qdrant_timeout: float = Field(30.0, alias="QDRANT_TIMEOUT", gt=0, description="Seconds per Qdrant call.")
    qdrant_max_retries: int = Field(
        3, alias="QDRANT_MAX_RETRIES", ge=1, description="Attempts per Qdrant, postgres or embedding call."
    )
    qdrant_retry_min_wait: float = Field(
        2.0, alias="QDRANT_RETRY_MIN_WAIT", ge=0, description="First backoff between attempts, in seconds."
    )
    qdrant_retry_max_wait: float = Field(
        10.0, alias="QDRANT_RETRY_MAX_WAIT", ge=0, description="Longest backoff between attempts, in seconds."
    )
    database_url: str = Field(
        "", alias="DATABASE_URL", description="PostgreSQL URL; built from POSTGRES_* when empty."
    )
    postgres_host: str = Field("127.0.0.1", alias="POSTGRES_HOST", description="PostgreSQL host or socket folder.")
    postgres_port: int = Field(5432, alias="POSTGRES_PORT", ge=1, le=65535, description="PostgreSQL port.")
    postgres_db: str = Field("ai_suite", alias="POSTGRES_DB", description="PostgreSQL database.")
    postgres_user: str = Field("ai_user", alias="POSTGRES_USER", description="PostgreSQL user.")
    postgres_password: str = Field("", alias="POSTGRES_PASSWORD", description="PostgreSQL password.")
    postgres_pool_size: int = Field(8, alias="POSTGRES_POOL_SIZE", ge=1, description="Most pooled connections.")
    postgres_pool_timeout: float = Field(
        5.0, alias="POSTGRES_POOL_TIMEOUT", gt=0, description="Seconds to wait for a pooled connection."
    )
    chunk_tokens: int = Field(512, alias="CHUNK_TOKENS", ge=16, description="Chunk window in embedding tokens.")
    chunk_overlap: int = Field(100, alias="CHUNK_OVERLAP", ge=0, description="Tokens shared by neighbouring chunks.")
    rag_context_tokens: int = Field(
        1200, alias="RAG_CONTEXT_TOKENS", ge=1, description="Token budget of the context given to the model."
    )
    rag_top_k: int = Field(5, alias="RAG_TOP_K", ge=1, le=100, description="Sources retrieved per question.")
    query_cache_entries: int = Field(
        1024, alias="RAG_QUERY_CACHE_ENTRIES", ge=0,
        description="Query vectors kept in memory, so a repeated question skips the embedding call "
        "(least recently used go first; 1.5 KiB each); 0 turns the cache off.",
    )
    rag_hybrid: bool = Field(True, alias="RAG_HYBRID", description="Fuse BM25 with dense search by default.")
    rag_empty_score: float = Field(
        0.2, alias="RAG_EMPTY_SCORE", ge=0, le=1,
        description="A retrieval counts as empty (rag_empty_retrievals_total) when no chunk shares a BM25 term "
        "with the question and no dense match reaches this cosine similarity (unrelated text scores below 0.1).",
    )
    rag_max_query_chars: int = Field(
        4000, alias="RAG_MAX_QUERY_CHARS", ge=1, description="Longest question accepted; longer gets 413."
    )
    rag_max_upload_bytes: int = Field(
        50 * 1024 * 1024, alias="RAG_MAX_UPLOAD_BYTES", ge=1, description="Largest uploaded file."
    )
    # uploads of PDFs and DOCX files do not fit the shared 4 MiB default
    max_body_bytes: int = Field(
        64 * 1024 * 1024, alias="MAX_BODY_BYTES", description="Largest request body accepted, in bytes."
    )

    def documents_root(self) -> Path:
        return (self.documents_dir or self.data_dir / "documents").resolve()

    def vectors_path(self) -> Path:
        return (self.qdrant_path or self.data_dir / "vectors").resolve()

    def tokenizer_path(self) -> Path:
        folder = Path(self.embedding_model_dir)
        folder = folder if folder.is_absolute() else self.models_dir / folder
        return folder / "tokenizer.json"

    def postgres_url(self) -> str:
        """DATABASE_URL, or one built from the POSTGRES_* fields."""
        if self.database_url:
            return self.database_url
        password = f":{quote(self.postgres_password, safe='')}" if self.postgres_password else ""
        host = self.postgres_host
        if host.startswith("/"):
            # a socket folder goes in the query string, as libpq expects
            return (f"postgresql://{quote(self.postgres_user, safe='')}{password}@/{self.postgres_db}"
                    f"?host={quote(host, safe='/')}&port={self.postgres_port}")
        return (f"postgresql://{quote(self.postgres_user, safe='')}{password}@{host}:{self.postgres_port}"
                f"/{self.postgres_db}")
