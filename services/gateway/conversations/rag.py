"""The RAG mirror: each conversation is one document in a RAG collection, searched with RAG's hybrid /search.

The store stays the record. One background task is the only writer to RAG, so an upload and a delete of
the same conversation can never cross: it uploads what changed (`version <> rag_version`), then removes
the documents of deleted conversations (rows written in the delete's own transaction). While RAG is
unreachable nothing is lost; the task tries again every CONVERSATIONS_RAG_RETRY_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import httpx

from services.gateway.conversations.store import ConversationStore, Item
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

BATCH = 32
DOCUMENT_NAME = re.compile(r"(conv_[A-Za-z0-9]{1,64})\.md$")
UPLOAD_TIMEOUT = 120.0  # a long conversation is chunked and embedded before RAG answers


class RagUnavailable(Exception):
    """RAG did not answer, or answered with a server error."""


@dataclass(frozen=True)
class RagHit:
    conversation_id: str
    snippet: str


def render(title: str | None, items: list[Item]) -> bytes:
    """The document RAG indexes: the title, then each message as a paragraph."""
    parts = [f"# {title or 'Conversation'}"] + [item.text.strip() for item in items if item.text.strip()]
    return ("\n\n".join(parts) + "\n").encode("utf-8")


class RagMirror:
    """Keeps the RAG collection in step with the store and searches it."""

    def __init__(self, client: httpx.AsyncClient, settings: GatewaySettings, store: ConversationStore,
                 headers: dict[str, str]) -> None:
        assert settings.rag_url is not None
        self.client = client
        self.base = settings.rag_url
        self.collection = settings.conversations_rag_collection
        self.search_timeout = settings.conversations_rag_timeout
        self.retry_seconds = settings.conversations_rag_retry_seconds
        self.store = store
        self.headers = headers
        self.state = "not synced yet"
        self._wake = asyncio.Event()
        self._wake.set()  # the first round runs at start-up: catch up on what changed while we were down

    def wake(self) -> None:
        """Something changed in the store; the mirror task takes it soon."""
        self._wake.set()

    async def run(self) -> None:
        """The mirror task: a round on every change, and every retry interval while RAG is away."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.retry_seconds)
            except TimeoutError:
                if self.state == "ok":
                    continue
            self._wake.clear()
            try:
                await self.sync_once()
            except (httpx.HTTPError, RagUnavailable) as exc:
                self.state = f"unavailable: {exc or type(exc).__name__}"
                log.warning("conversation mirror in RAG at %s is behind: %s", self.base, self.state)
            else:
                self.state = "ok"

    async def sync_once(self) -> None:
        while pending := await self.store.rag_pending(BATCH):
            for conversation_id, version in pending:
                transcript = await self.store.transcript(conversation_id)
                if transcript is None:
                    continue  # deleted meanwhile: its deletion row (if it was mirrored) covers the document
                document_id = await self._upload(conversation_id, render(*transcript))
                await self.store.rag_synced(conversation_id, version, document_id)
        for document_id, _ in await self.store.rag_deletions():
            # RAG's document delete also removes its kept copy of the upload
            response = await self.client.delete(
                f"{self.base}/collections/{self.collection}/documents/{document_id}", headers=self.headers)
            if response.status_code not in (200, 404):
                raise RagUnavailable(f"deleting a document answered HTTP {response.status_code}")
            await self.store.rag_deleted(document_id)

    async def _upload(self, conversation_id: str, document: bytes) -> str | None:
        """Index the document under the conversation's name; its RAG document id, or None if RAG skipped it."""
        files = {"files": (f"{conversation_id}.md", document, "text/markdown")}
        response = await self.client.post(f"{self.base}/index", data={"collection": self.collection}, files=files,
                                          headers=self.headers, timeout=UPLOAD_TIMEOUT)
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise RagUnavailable(f"indexing answered HTTP {response.status_code}")
        if response.status_code != 200:
            # This document cannot be indexed (too large, say); retrying would block the ones after it.
            log.warning("RAG refused the mirror of %s: HTTP %d %s", conversation_id, response.status_code,
                        response.text[:200])
            return None
        documents = response.json().get("documents") or []
        return documents[0].get("document_id") if documents else None

    async def search(self, query: str, top_k: int) -> list[RagHit]:
        """RAG's hybrid search over the mirror, one hit per conversation, best first."""
        body = {"query": query, "collection": self.collection, "top_k": max(1, min(100, top_k)), "hybrid": True}
        try:
            response = await self.client.post(f"{self.base}/search", json=body, headers=self.headers,
                                              timeout=self.search_timeout)
        except httpx.HTTPError as exc:
            raise RagUnavailable(str(exc) or type(exc).__name__) from exc
        if response.status_code == 404:
            return []  # nothing mirrored yet: the collection does not exist
        if response.status_code != 200:
            raise RagUnavailable(f"search answered HTTP {response.status_code}")
        hits: dict[str, RagHit] = {}
        for result in response.json().get("results") or []:
            found = DOCUMENT_NAME.search(str(result.get("document") or ""))
            if found and found.group(1) not in hits:
                text = " ".join(str(result.get("text") or "").split())
                hits[found.group(1)] = RagHit(found.group(1), text[:200] + ("\u2026" if len(text) > 200 else ""))
        return list(hits.values())
