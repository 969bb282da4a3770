"""Gateway settings, read from the environment and `.env`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, field_validator

from services.common.settings import SuiteSettings

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ExtraBackend:
    """One more OpenAI-compatible backend of a model, from CHAT_API_BASES or CODE_API_BASES."""

    api_base: str
    backend_model: str
    key_env: str | None = None

    @property
    def api_key(self) -> str | None:
        """The key from the named variable, in the environment or `.env` (None: the gateway's default key)."""
        if not self.key_env:
            return None
        if self.key_env in os.environ:
            return os.environ[self.key_env]
        env_file = Path(".env")
        return dotenv_values(env_file).get(self.key_env) if env_file.is_file() else None


def parse_backend_list(raw: str, default_model: str) -> list[ExtraBackend]:
    """`URL[|model=NAME][|key_env=VAR], ...` -> backends; a malformed entry raises ValueError."""
    backends = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        url, *options = (part.strip() for part in entry.split("|"))
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"backend {url!r} is not an http(s) URL")
        fields: dict[str, str] = {}
        for option in options:
            key, sep, val = option.partition("=")
            if not sep or key not in ("model", "key_env") or not val:
                raise ValueError(f"backend option {option!r} is not model=NAME or key_env=VAR")
            if key == "key_env" and not _ENV_NAME.fullmatch(val):
                raise ValueError(f"key_env {val!r} is not an environment variable name")
            fields[key] = val
        backends.append(ExtraBackend(url.rstrip("/"), fields.get("model", default_model), fields.get("key_env")))
    return backends


class GatewaySettings(SuiteSettings):
    """Ports, backends, timeouts and failover policy of the gateway."""

    port: int = Field(8000, alias="API_GATEWAY_PORT", description="Port the gateway listens on.")
    chat_api_base: str = Field(
        "http://127.0.0.1:8001/v1", alias="CHAT_API_BASE", description="OpenAI base URL of the chat backend."
    )
    code_api_base: str = Field(
        "http://127.0.0.1:8001/v1",
        alias="CODE_API_BASE",
        description="OpenAI base URL of the code backend (in p1 the chat backend serves both aliases).",
    )
    chat_backend_model: str = Field(
        "chat-7b", alias="CHAT_BACKEND_MODEL", description="Model name the chat backend answers to."
    )
    code_backend_model: str = Field(
        "code-7b", alias="CODE_BACKEND_MODEL", description="Model name the code backend answers to."
    )
    chat_api_bases: str = Field(
        "", alias="CHAT_API_BASES",
        description="More OpenAI-compatible backends of the chat model, comma-separated; each entry is a base URL, "
        "optionally followed by `|model=NAME` (what that engine calls the model; default CHAT_BACKEND_MODEL) and "
        "`|key_env=VAR` (the variable, in the environment or .env, that holds its API key; default BACKEND_API_KEY). "
        "Requests go to the least busy healthy backend.",
    )
    code_api_bases: str = Field(
        "", alias="CODE_API_BASES",
        description="More backends of the code model, written as CHAT_API_BASES (default model CODE_BACKEND_MODEL).",
    )
    backend_poll_seconds: float = Field(
        2.0, alias="GATEWAY_BACKEND_POLL_SECONDS", ge=0,
        description="Seconds between reads of each backend's /health queue depth, done while a model has more than "
        "one backend (0: never; the gateway's own in-flight count still spreads the load).",
    )
    embedding_api_base: str | None = Field(
        None, alias="EMBEDDING_API_BASE",
        description="OpenAI base URL of the embedding service (/v1/embeddings is forwarded there); "
        "unset or empty, as in phase 1, the gateway serves no embedding model.",
    )
    embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2", alias="EMBEDDING_MODEL",
        description="The embedding service's model; it, its short name and `embedding` route there.",
    )
    embedding_model_alias: str = Field(
        "embedding,text-embedding-ada-002", alias="EMBEDDING_MODEL_ALIAS",
        description="Comma-separated extra names routed to the embedding service.",
    )
    embedding_timeout: float = Field(
        30.0, alias="EMBEDDING_TIMEOUT", gt=0, description="Seconds an embeddings request may take."
    )
    backend_api_key: str | None = Field(
        None, alias="BACKEND_API_KEY", description="Bearer key sent to the backends; defaults to API_KEY."
    )
    llm_request_timeout: float = Field(
        60.0, alias="LLM_REQUEST_TIMEOUT", gt=0,
        description="Seconds a completion may take, retries and failover included (per-chunk gap when streaming).",
    )
    connect_timeout: float = Field(
        2.0, alias="GATEWAY_CONNECT_TIMEOUT", gt=0, description="Seconds to wait for a backend connection."
    )
    max_retries: int = Field(
        2, alias="GATEWAY_MAX_RETRIES", ge=0, description="Retries on the same backend before failing over."
    )
    cooldown_seconds: float = Field(
        10.0, alias="GATEWAY_COOLDOWN_SECONDS", ge=0,
        description="Seconds a failed backend is tried last, after the healthy ones.",
    )
    max_tokens_limit: int = Field(
        32768, alias="GATEWAY_MAX_TOKENS_LIMIT", gt=0, description="Largest max_tokens the gateway accepts."
    )
    engine: Literal["fast", "litellm"] = Field(
        "fast", alias="GATEWAY_ENGINE",
        description="fast: in-process OpenAI passthrough; litellm: run the stock LiteLLM proxy with our config.",
    )
    litellm_offline_mode: bool = Field(
        True, alias="LITELLM_OFFLINE_MODE", description="Keep LiteLLM from fetching model catalogs online."
    )
    conversations_db: Path | None = Field(
        None, alias="CONVERSATIONS_DB",
        description="SQLite file of the conversations API (default DATA_DIR/conversations/conversations.db).",
    )
    conversation_max_items: int = Field(
        20, alias="CONVERSATION_MAX_ITEMS", gt=0,
        description="Most items one request may add to a conversation (OpenAI's limit is 20); more get 413.",
    )
    conversation_context_margin: int = Field(
        64, alias="CONVERSATION_CONTEXT_MARGIN", ge=0,
        description="Tokens of the model's context kept free when the history is fitted (estimate slack).",
    )
    conversation_answer_reserve: int = Field(
        256, alias="CONVERSATION_ANSWER_RESERVE", ge=1,
        description="Tokens kept for the answer when a conversation request sets no max_tokens.",
    )
    conversation_default_context: int = Field(
        4096, alias="CONVERSATION_DEFAULT_CONTEXT", ge=64,
        description="Context window assumed for a backend whose /health and /v1/models do not say (n_ctx).",
    )
    rag_url: str | None = Field(
        None, alias="RAG_URL",
        description="Base URL of the RAG service; set (phase 2 on), conversations are mirrored into it and "
        "searched with its Korean-aware hybrid /search as well as the store's own text search.",
    )
    conversations_rag_collection: str = Field(
        "conversations", alias="CONVERSATIONS_RAG_COLLECTION", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="RAG collection that mirrors the conversations (one document per conversation).",
    )
    conversations_rag_timeout: float = Field(
        5.0, alias="CONVERSATIONS_RAG_TIMEOUT", gt=0,
        description="Seconds a conversation search waits for RAG before it answers from the text search alone.",
    )
    conversations_rag_retry_seconds: float = Field(
        30.0, alias="CONVERSATIONS_RAG_RETRY_SECONDS", gt=0,
        description="Seconds between attempts to bring the RAG mirror up to date while RAG is unreachable.",
    )
    response_cache: bool = Field(
        False, alias="GATEWAY_RESPONSE_CACHE",
        description="Keep the answers of deterministic requests (temperature 0 with an integer seed, n 1; "
        "streamed ones are replayed) and answer a repeat from memory; never for `conversation` requests.",
    )
    response_cache_entries: int = Field(
        256, alias="GATEWAY_RESPONSE_CACHE_ENTRIES", ge=1, description="Most answers the response cache keeps."
    )
    response_cache_mb: int = Field(
        64, alias="GATEWAY_RESPONSE_CACHE_MB", ge=1, description="Most MiB of answers the response cache keeps."
    )
    response_cache_ttl: float = Field(
        3600.0, alias="GATEWAY_RESPONSE_CACHE_TTL", gt=0, description="Seconds a kept answer stays valid."
    )
    litellm_config_path: Path | None = Field(
        None, alias="GATEWAY_LITELLM_CONFIG",
        description="Where the litellm engine writes its generated config (default DATA_DIR/gateway/litellm.yaml).",
    )

    conversation_checkpoint_seconds: float = Field(
        1.0, alias="CONVERSATION_CHECKPOINT_SECONDS", gt=0, le=60,
        description="How often a streamed answer in a conversation is saved while it streams, so a crash keeps it.",
    )
    debug_route_delay_ms: int = Field(
        0, alias="DEBUG_ROUTE_DELAY_MS", ge=0, le=10_000,
        description="Testing only: milliseconds added to every GET /v1/models, so `make load-check` can be shown "
                    "to catch a slowdown. 0 (the default) adds nothing.",
    )

    @field_validator("embedding_api_base", "rag_url")
    @classmethod
    def _empty_base_is_unset(cls, value: str | None) -> str | None:
        # Compose interpolation turns an unset variable into "", which must not read as a URL.
        if value is None:
            return None
        return value.strip().rstrip("/") or None

    @field_validator("chat_api_bases", "code_api_bases")
    @classmethod
    def _backend_list_parses(cls, value: str) -> str:
        parse_backend_list(value, "default")  # raises on a malformed entry, at startup
        return value

    def extra_backends(self, which: str) -> list[ExtraBackend]:
        """The extra backends of the "chat" or "code" model, with their model names and keys resolved."""
        raw, default_model = ((self.chat_api_bases, self.chat_backend_model) if which == "chat"
                              else (self.code_api_bases, self.code_backend_model))
        return parse_backend_list(raw, default_model)

    def embedding_model_names(self) -> list[str]:
        """Names routed to the embedding service: `embedding`, the model, its short name, the aliases; none if unset."""
        if self.embedding_api_base is None:
            return []
        model = self.embedding_model
        names = ["embedding", model, model.rsplit("/", 1)[-1]]
        names += [name.strip() for name in self.embedding_model_alias.split(",") if name.strip()]
        return list(dict.fromkeys(names))

    @property
    def upstream_key(self) -> str | None:
        """The key sent to backends."""
        return self.backend_api_key or self.api_key

    def resolved_conversations_db(self) -> Path:
        return self.conversations_db or self.data_dir / "conversations" / "conversations.db"

    def resolved_litellm_config_path(self) -> Path:
        return self.litellm_config_path or self.data_dir / "gateway" / "litellm.yaml"
