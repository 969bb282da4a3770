"""Routes: `/embed` for the suite's own services, `/v1/embeddings` and `/v1/models` for OpenAI clients."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.common.errors import BadRequest, ModelNotFound
from services.common.model_loading import model_health
from services.embedding.schemas import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    Prepared,
    prepare_texts,
)
from services.embedding.state import EmbeddingState, embedding_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 once the model is loaded; 503 while it loads or after it failed, with the reason."""
    state = embedding_state(request)
    settings = state.settings
    return model_health("embedding", state.model_state(), {
        "model": settings.embedding_model,
        "dim": state.engine.dim if state.engine else None,
        "threads": settings.thread_count(),
        "batch_size": settings.batch_size,
        "queue_depth": state.pending,
        "cache": state.cache.state() if state.cache is not None else "off",
    })


def json_response(payload: dict[str, Any]) -> Response:
    # orjson writes float32 arrays directly in their shortest exact form: ~10x faster than tolist + json.
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _limits(state: EmbeddingState, texts: list[str], field: str) -> Prepared:
    settings = state.settings
    prepared = prepare_texts(texts, field, settings.max_texts, settings.max_chars)
    if prepared.truncated:
        state.metrics.truncated.inc(len(prepared.truncated))
    return prepared


@router.post("/embed", response_model=EmbedResponse, summary="Embed a list of texts")
async def embed(body: EmbedRequest, request: Request) -> Response:
    state = embedding_state(request)
    prepared = _limits(state, body.texts, "texts")
    result = await state.embed(prepared.texts)
    return json_response({
        "embeddings": result.vectors, "model": state.settings.embedding_model, "dim": result.vectors.shape[1],
        "truncated": prepared.truncated,
    })


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, summary="OpenAI-compatible embeddings")
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
    state = embedding_state(request)
    settings = state.settings
    names = settings.model_names()
    if body.model is not None and body.model not in names:
        raise ModelNotFound(f"model {body.model!r} does not exist; valid models: {', '.join(names)}", param="model")
    texts = [body.input] if isinstance(body.input, str) else body.input
    prepared = _limits(state, texts, "input")
    engine = state.ready()
    if body.dimensions is not None and body.dimensions != engine.dim:
        raise BadRequest(f"dimensions must be {engine.dim} for {settings.embedding_model} (it cannot be changed)",
                         param="dimensions")
    result = await state.embed(prepared.texts, count_tokens=True)
    data = [{"object": "embedding", "index": i, "embedding": _encode(row, body.encoding_format)}
            for i, row in enumerate(result.vectors)]
    tokens = result.tokens or 0
    return json_response({
        "object": "list", "data": data, "model": settings.embedding_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "truncated": prepared.truncated,
    })


def _encode(row: np.ndarray, encoding_format: str) -> np.ndarray | str:
    if encoding_format == "base64":
        # OpenAI's base64 format: the little-endian float32 bytes of the vector.
        return base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode("ascii")
    return row


@router.get("/v1/models", summary="The model names /v1/embeddings accepts")
async def list_models(request: Request) -> Response:
    settings = embedding_state(request).settings
    created = int(time.time())
    return json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "local-ai-suite"}
        for name in settings.model_names()
    ]})
