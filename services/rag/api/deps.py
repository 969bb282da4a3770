"""Dependencies the RAG routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.rag.state import RagState, rag_state


async def ready(request: Request) -> RagState:
    """The state, once migrations ran and BM25 is loaded (503 while postgres is down)."""
    state = rag_state(request)
    await state.ensure_ready()
    return state


Ready = Annotated[RagState, Depends(ready)]
