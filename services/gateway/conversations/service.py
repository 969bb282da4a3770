"""The gateway's conversations: the store, the RAG mirror and the chat path, opened and closed by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import httpx

from services.common.errors import ServiceUnavailable
from services.gateway.conversations.chat import ConversationChat
from services.gateway.conversations.context import ContextWindows
from services.gateway.conversations.rag import RagMirror
from services.gateway.conversations.store import ConversationStore
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Forwarder
from services.gateway.routing import Router
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class Conversations:
    """Everything the conversations API needs; a store that cannot open makes it answer 503, not the gateway."""

    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient, forwarder: Forwarder, router: Router,
                 metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._store: ConversationStore | None = None
        self.problem: str | None = None
        path = settings.resolved_conversations_db()
        try:
            self._store = ConversationStore.open(path)
        except (sqlite3.Error, OSError) as exc:
            self.problem = f"cannot open {path}: {exc}"
            log.error("conversations are unavailable: %s", self.problem)
        # Only the key: RAG uploads are multipart, so the backends' JSON content type must not go along.
        auth = {k: v for k, v in forwarder.headers.items() if k == "authorization"}
        self.mirror = RagMirror(client, settings, self._store, auth) if settings.rag_url and self._store else None
        windows = ContextWindows(client, settings.conversation_default_context, auth)
        self.chat = ConversationChat(settings, self.store, forwarder, router, windows, metrics, self.changed)
        self._mirror_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.mirror is not None:
            self._mirror_task = asyncio.create_task(self.mirror.run(), name="conversation-rag-mirror")

    async def close(self) -> None:
        if self._mirror_task is not None:
            self._mirror_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mirror_task
        if self._store is not None:
            self._store.close()

    def store(self) -> ConversationStore:
        if self._store is None:
            raise ServiceUnavailable(f"the conversation store is unavailable: {self.problem}",
                                     code="conversation_store_unavailable")
        return self._store

    def changed(self) -> None:
        """The store changed: the RAG mirror (when there is one) takes the change."""
        if self.mirror is not None:
            self.mirror.wake()

    def health(self) -> str:
        return "ok" if self._store is not None else f"unavailable: {self.problem}"

    def search_engines(self) -> str:
        """What a search uses now: the text search, plus RAG when it is configured (and its mirror's state)."""
        return "text" if self.mirror is None else f"text+rag (mirror: {self.mirror.state})"
