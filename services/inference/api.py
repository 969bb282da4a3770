"""OpenAI-compatible routes: models, chat completions and text completions (SSE streaming)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from services.common.errors import error_body
from services.common.model_loading import model_health
from services.inference.engine import Generation
from services.inference.scheduler import Job
from services.inference.schemas import ChatRequest, CompletionRequest, GenerationRequest
from services.inference.state import InferenceState, inference_state

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 once the model is loaded; 503 while it loads or after it failed, with the reason."""
    state = inference_state(request)
    settings = state.settings
    return model_health("inference", state.model_state(), {
        "model": settings.model_path().name,
        "aliases": settings.aliases(),
        "n_ctx": state.engine.n_ctx if state.engine else settings.n_ctx,
        "queue_depth": state.queue.waiting if state.queue else 0,
        "slots": {"total": settings.n_parallel, "running": state.queue.running if state.queue else 0},
        # flat for the gateway's /v1/status
        "waiting": state.queue.waiting if state.queue else 0,
        "running": state.queue.running if state.queue else 0,
        "last_tokens_per_second": state.queue.last_tokens_per_second if state.queue else None,
    })

# Builds one OpenAI chunk from (text delta or None for the final chunk, finish reason).
ChunkMaker = Callable[[str | None, str | None], dict[str, Any]]


class GenerationStream(StreamingResponse):
    """An SSE response that stops its generation however the response ends."""

    def __init__(self, content: AsyncIterator[str], cancel: threading.Event) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.cancel = cancel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A no-op when the generation finished; stops it when the client left or the response died.
            self.cancel.set()


def _usage(result: Generation) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _events(job: Job, make: ChunkMaker, head: dict | None, usage_chunk: dict | None) -> AsyncIterator[str]:
    """Turn the job's text pieces into SSE events, merging pieces that arrived together."""
    pieces = job.pieces
    assert pieces is not None
    if head is not None:
        yield _sse(head)
    finished = False
    while not finished:
        text = await pieces.get()
        if text is None:
            break
        while not pieces.empty():
            more = pieces.get_nowait()
            if more is None:
                finished = True
                break
            text += more
        yield _sse(make(text, None))
    try:
        result = await job.done
    except Exception as exc:  # the model thread failed mid-answer; the status line is already sent
        log.exception("generation failed")
        yield _sse(error_body(f"generation failed: {exc}", "server_error", "generation_failed"))
        yield "data: [DONE]\n\n"
        return
    yield _sse(make(None, result.finish_reason))
    if usage_chunk is not None:
        yield _sse({**usage_chunk, "usage": _usage(result)})
    yield "data: [DONE]\n\n"


async def _run(state: InferenceState, request: Request, body: GenerationRequest, prompt: list[int],
               max_tokens: int | None, arrived: float, extra_stops: tuple[str, ...] = ()) -> Job:
    queue = state.ready()
    sampling = body.sampling(state.engine_or_raise().budget(len(prompt), max_tokens), extra_stops)
    return await queue.submit(prompt, sampling, request.receive, stream=body.stream, arrived=arrived)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    state = inference_state(request)
    info = {"n_ctx": state.settings.n_ctx, "file": state.settings.model_path().name}
    data = [{"id": alias, "object": "model", "created": state.created, "owned_by": "local-ai-suite", "meta": info}
            for alias in state.settings.aliases()]
    return {"object": "list", "data": data}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> JSONResponse | GenerationStream:
    arrived = time.perf_counter()
    state = inference_state(request)
    engine = state.engine_or_raise()
    prompt, template_stops = engine.chat_prompt([m.for_template() for m in body.messages])
    job = await _run(state, request, body, prompt, body.answer_limit(), arrived, template_stops)
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": body.model or state.settings.aliases()[0]}
    if body.stream:
        chunk = {**base, "object": "chat.completion.chunk"}

        def make(text: str | None, finish: str | None) -> dict[str, Any]:
            delta = {"content": text} if text is not None else {}
            return {**chunk, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        head = {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]}
        usage = {**chunk, "choices": []} if body.include_usage() else None
        return GenerationStream(_events(job, make, head, usage), job.cancel)
    result = await state.ready().complete(job, request.receive)
    message = {"role": "assistant", "content": result.text}
    return JSONResponse({
        **base, "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}],
        "usage": _usage(result),
    })


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> JSONResponse | GenerationStream:
    arrived = time.perf_counter()
    state = inference_state(request)
    prompt = state.engine_or_raise().text_prompt(body.text())
    # OpenAI's default answer length for text completions is 16 tokens.
    job = await _run(state, request, body, prompt, body.max_tokens or 16, arrived)
    base = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": body.model or state.settings.aliases()[0]}
    if body.stream:
        def make(text: str | None, finish: str | None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}]}

        usage = {**base, "choices": []} if body.include_usage() else None
        return GenerationStream(_events(job, make, None, usage), job.cancel)
    result = await state.ready().complete(job, request.receive)
    return JSONResponse({
        **base,
        "choices": [{"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}],
        "usage": _usage(result),
    })
