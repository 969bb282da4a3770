"""An upstream that records what the chat app's proxy sent it, and the app itself in front of it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.web.settings import WebSettings


class Recorder:
    """What the upstream saw, and the switches a test uses to pace it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first_chunk = threading.Event()  # the upstream got part of a request body
        self.release = threading.Event()  # the test lets a paced stream finish
        self.closed = threading.Event()  # the paced stream's generator was closed


async def wait_for(event: threading.Event, seconds: float = 30.0) -> bool:
    end = asyncio.get_running_loop().time() + seconds
    while not event.is_set():
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


def upstream_app(recorder: Recorder) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield b'data: {"n": 1}\n\n'
                await wait_for(recorder.release)
                yield b'data: {"n": 2}\n\ndata: [DONE]\n\n'
            finally:
                recorder.closed.set()
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/index")
    async def paced_upload(request: Request) -> JSONResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size:
                recorder.first_chunk.set()
        recorder.requests.append({"path": "/index", "size": size,
                                  "content_type": request.headers.get("content-type")})
        return JSONResponse({"received": size})

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(path: str, request: Request) -> Response:
        body = await request.body()
        seen = {"method": request.method, "path": "/" + path, "query": request.url.query,
                "headers": {k.lower(): v for k, v in request.headers.items()}, "body": body.decode("latin-1")}
        recorder.requests.append(seen)
        return JSONResponse(seen, status_code=201 if request.method == "POST" else 200,
                            headers={"x-ai-suite-model": "chat-7b", "access-control-allow-origin": "*",
                                     "content-security-policy": "default-src *", "connection": "x-secret",
                                     "x-secret": "hop", "set-cookie": "a=b"})

    return app


def web_settings(static_dir: Path, upstream: str, **env: Any) -> WebSettings:
    values: dict[str, Any] = {"WEB_STATIC_DIR": static_dir, "WEB_GATEWAY_URL": upstream, "WEB_RAG_URL": upstream,
                              "WEB_MCP_URL": upstream, "WEB_ALERTS_URL": "", "WEB_PROXY_TIMEOUT": 30}
    return WebSettings(_env_file=None, **{**values, **env})
