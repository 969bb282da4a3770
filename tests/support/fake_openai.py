"""A small OpenAI-speaking HTTP backend for gateway tests: deterministic answers, switchable faults.

It stands in for an inference service where the test is about routing, not about a model: it runs a
real uvicorn server on a real port, in a thread (`FakeBackend`) or as a process (`python -m ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp

from tests.support.procs import free_port


@dataclass
class Behaviour:
    """What the backend does next; tests flip these fields between requests."""

    name: str = "fake"
    status: int | None = None  # answer completions with this error status
    break_after: int | None = None  # drop the connection after this many stream chunks
    delay_s: float = 0.0  # wait before answering
    chunks: int = 3
    chunk_delay_s: float = 0.0  # wait between stream chunks
    streams_abandoned: int = 0  # streams closed before their end (client went away)
    health_status: int = 200
    queue_depth: int | None = None  # reported on /health when set, as the inference service does
    max_prompt_chars: int | None = None  # longer chat prompts get 400 context_length_exceeded, like a model
    seen: list[dict] = field(default_factory=list)
    seen_headers: list[dict] = field(default_factory=list)


class StreamBroken(Exception):
    pass


def completion_body(kind: str, model: str, text: str) -> dict:
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "length"}
        obj = "text_completion"
    return {"id": "cmpl-fake", "object": obj, "created": 0, "model": model, "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def chunk_event(kind: str, model: str, text: str) -> bytes:
    if kind == "chat":
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text, "finish_reason": None}
        obj = "text_completion"
    payload = {"id": "cmpl-fake", "object": obj, "created": 0, "model": model, "choices": [choice]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def create_fake_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    async def answer(request: Request, kind: str) -> Response:
        body = await request.json()
        behaviour.seen.append(body)
        behaviour.seen_headers.append(dict(request.headers))
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
        if behaviour.max_prompt_chars is not None and prompt_chars > behaviour.max_prompt_chars:
            error = {"error": {"message": f"the prompt is {prompt_chars} characters", "code": "context_length_exceeded",
                               "type": "invalid_request_error", "param": "messages"}}
            return JSONResponse(error, status_code=400)
        if behaviour.status is not None:
            error = {"error": {"message": f"{behaviour.name} says {behaviour.status}", "type": "fake",
                               "code": "fake_error"}}
            headers = {"Retry-After": "7"} if behaviour.status == 503 else None
            return JSONResponse(error, status_code=behaviour.status, headers=headers)
        model = body.get("model", "")
        text = f"{behaviour.name}:{model}"
        if not body.get("stream"):
            return JSONResponse(completion_body(kind, model, text))

        async def events():
            finished = False
            try:
                for index in range(behaviour.chunks):
                    if behaviour.break_after is not None and index >= behaviour.break_after:
                        finished = True
                        raise StreamBroken("fake backend dropped the stream")
                    if index and behaviour.chunk_delay_s:
                        await asyncio.sleep(behaviour.chunk_delay_s)
                    yield chunk_event(kind, model, f"{text}#{index} ")
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"id": "cmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                             "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                    yield b"data: " + json.dumps(usage).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
                finished = True
            finally:
                if not finished:
                    behaviour.streams_abandoned += 1

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await answer(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, "completion")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": behaviour.name, "object": "model"}]}

    @app.get("/health")
    async def health() -> JSONResponse:
        body: dict[str, object] = {"status": "ok" if behaviour.health_status == 200 else "loading"}
        if behaviour.queue_depth is not None:
            body["queue_depth"] = behaviour.queue_depth
        return JSONResponse(body, status_code=behaviour.health_status)

    return app


class ThreadedServer:
    """Runs an ASGI app with uvicorn in a thread on 127.0.0.1:`port`."""

    def __init__(self, app_factory: Callable[[], ASGIApp], port: int | None = None, lifespan: str = "off") -> None:
        self.app_factory = app_factory
        self.port = port or free_port()
        self.lifespan = lifespan
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, deadline_s: float = 10.0) -> ThreadedServer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(self.app_factory(), log_level="warning", lifespan=self.lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        end = time.monotonic() + deadline_s
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError(f"server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.server = self.thread = None


class FakeBackend(ThreadedServer):
    """The fake OpenAI backend in a thread; `behaviour` controls its answers."""

    def __init__(self, name: str, port: int | None = None) -> None:
        self.behaviour = Behaviour(name=name)
        super().__init__(lambda: create_fake_app(self.behaviour), port)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, deadline_s: float = 10.0) -> FakeBackend:
        super().start(deadline_s)
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI backend")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    args = parser.parse_args()
    uvicorn.run(create_fake_app(Behaviour(name=args.name)), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
