"""The answer step: pack the best chunks into the token budget, ask the model to cite them as [n]."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from services.common.errors import SuiteError
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
    yield sse("sources", {"sources": [hit.source() for hit in hits]})
    parts: list[str] = []
    try:
        async for delta in state.gateway.stream(build_messages(question, hits)):
            parts.append(delta)
            yield sse("delta", {"text": delta})
    except SuiteError as exc:
        yield sse("error", {"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
        return
    answer = "".join(parts)
    await on_done(answer)
    yield sse("done", {"answer": answer})
