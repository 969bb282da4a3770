"""The answer step: pack the best chunks into the token budget, ask the model to cite them as [n]."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from services.common.errors import SuiteError
from services.rag.clients.gateway import ContextTooLong
from services.rag.fusion import pack_context
from services.rag.retrieval import Hit
from services.rag.state import RagState

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Cite the sources you use as [n], "
    "for example [1] or [2]. If the sources do not contain the answer, say that you do not know. "
    "Answer in the language of the question."
)


def context_hits(state: RagState, hits: list[Hit]) -> list[Hit]:
    """The hits that fit RAG_CONTEXT_TOKENS, best first; their order gives the citation numbers."""
    return pack_context(hits, state.settings.rag_context_tokens, lambda hit: hit.token_count)


FIT_ATTEMPTS = 6


def shrink(hits: list[Hit]) -> list[Hit]:
    """A smaller context: drop the lowest-ranked source, or halve the only one left."""
    if len(hits) > 1:
        return hits[:-1]
    if not hits or len(hits[0].text) < 200:
        return []
    only = hits[0]
    return [replace(only, text=only.text[: len(only.text) // 2], token_count=only.token_count // 2)]


async def complete_within_window(state: RagState, question: str, hits: list[Hit]) -> tuple[str, list[Hit]]:
    """Ask for the answer, shrinking the context while the model says the prompt is too long for it."""
    for _ in range(FIT_ATTEMPTS):
        try:
            return await state.gateway.complete(build_messages(question, hits)), hits
        except ContextTooLong:
            if not hits:
                raise
            hits = shrink(hits)
    return await state.gateway.complete(build_messages(question, hits)), hits


def build_messages(question: str, hits: list[Hit]) -> list[dict[str, str]]:
    sources = "\n\n".join(f"[{n}] ({hit.document})\n{hit.text.strip()}" for n, hit in enumerate(hits, 1))
    user = f"Sources:\n{sources or '(no sources found)'}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def stream_answer(
    state: RagState, question: str, hits: list[Hit], on_done: Callable[[str], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """SSE: one `sources` event, `delta` events with text, then `done` (or `error`, never a silent cut)."""
    parts: list[str] = []
    try:
        for attempt in range(FIT_ATTEMPTS + 1):
            deltas = state.gateway.stream(build_messages(question, hits))
            try:
                first = await anext(deltas, "")
                break
            except ContextTooLong:
                if not hits or attempt == FIT_ATTEMPTS:
                    raise
                hits = shrink(hits)
        yield sse("sources", {"sources": [hit.source() for hit in hits]})
        if first:
            parts.append(first)
            yield sse("delta", {"text": first})
        async for delta in deltas:
            parts.append(delta)
            yield sse("delta", {"text": delta})
    except SuiteError as exc:
        yield sse("error", {"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
        return
    answer = "".join(parts)
    await on_done(answer)
    yield sse("done", {"answer": answer})
