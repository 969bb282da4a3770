"""Search across conversations: the store's text search, fused with RAG's hybrid search when RAG answers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.gateway.conversations.rag import RagHit, RagMirror, RagUnavailable
from services.gateway.conversations.store import Conversation, ConversationStore
from services.gateway.conversations.textsearch import TextHit

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal rank fusion's usual constant: rank matters, raw scores (not comparable) do not


@dataclass(frozen=True)
class Found:
    conversation: Conversation
    item_id: str | None
    snippet: str
    score: float
    engines: list[str]

    def as_openai(self) -> dict:
        """The conversation object with a `match` saying where and how it was found."""
        match = {"item_id": self.item_id, "snippet": self.snippet, "score": round(self.score, 6),
                 "engines": self.engines}
        return {**self.conversation.as_openai(), "match": match}


async def _rag_hits(mirror: RagMirror | None, query: str, limit: int) -> list[RagHit] | None:
    if mirror is None:
        return None
    try:
        return await mirror.search(query, limit * 3)
    except RagUnavailable as exc:
        log.info("conversation search without RAG: %s", exc)
        return None


async def search_conversations(store: ConversationStore, mirror: RagMirror | None, query: str,
                               limit: int) -> tuple[list[Found], list[str]]:
    """The best `limit` conversations for `query`, and the engines that answered ("text", "rag")."""
    text_hits, rag_hits = await asyncio.gather(store.search(query, limit), _rag_hits(mirror, query, limit))
    engines = ["text"] + (["rag"] if rag_hits is not None else [])
    scores: dict[str, float] = {}
    found_by: dict[str, list[str]] = {}
    first: dict[str, TextHit | RagHit] = {}
    ranked_lists: list[tuple[str, list[TextHit | RagHit]]] = [("text", list(text_hits)), ("rag", list(rag_hits or []))]
    for engine, hits in ranked_lists:
        for rank, hit in enumerate(hits):
            scores[hit.conversation_id] = scores.get(hit.conversation_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            found_by.setdefault(hit.conversation_id, []).append(engine)
            first.setdefault(hit.conversation_id, hit)  # text hits come first: they carry the item id
    ranked = sorted(scores, key=lambda cid: scores[cid], reverse=True)
    # RAG may still hold a conversation that was just deleted; the store decides what exists.
    existing = await store.several(ranked)
    results = []
    for conversation_id in ranked:
        if conversation_id in existing:
            hit = first[conversation_id]
            item_id = hit.item_id if isinstance(hit, TextHit) else None
            results.append(Found(existing[conversation_id], item_id, hit.snippet, scores[conversation_id],
                                 found_by[conversation_id]))
    return results[:limit], engines
