"""The shared request metrics: names and labels Prometheus' rules read, templates not paths, probes left out."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from services.common.app_factory import harden
from services.common.errors import ServiceUnavailable
from services.common.settings import SuiteSettings
from tests.support.metrics import metric


def make_app() -> FastAPI:
    app = FastAPI()
    harden(app, SuiteSettings(_env_file=None))

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.get("/down")
    async def down() -> dict:
        raise ServiceUnavailable("the backend is down")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():  # type: ignore[no-untyped-def]
            for part in (b"a", b"b"):
                await asyncio.sleep(0.06)
                yield part

        return StreamingResponse(chunks())

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


async def test_requests_are_counted_by_template_method_and_status() -> None:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for path in ("/items/1", "/items/2", "/down", "/nowhere/at/all", "/health", "/stream"):
            await client.get(path)
        page = (await client.get("/metrics")).text
    assert metric(page, 'http_requests_total{handler="/items/{item_id}",method="GET",status="200"}') == 2
    assert metric(page, 'http_requests_total{handler="/down",method="GET",status="503"}') == 1
    # a path no route matches is "none": a scanner cannot make a series per path
    assert metric(page, 'http_requests_total{handler="none",method="GET",status="404"}') == 1
    assert "/nowhere" not in page and 'handler="/health"' not in page and 'handler="/metrics"' not in page
    assert metric(page, 'http_request_duration_seconds_count{handler="/items/{item_id}",method="GET"}') == 2
    # a streamed answer is timed to its last byte
    assert metric(page, 'http_request_duration_seconds_bucket{handler="/stream",le="0.1",method="GET"}') == 0
    assert metric(page, 'http_request_duration_seconds_bucket{handler="/stream",le="0.25",method="GET"}') == 1
    assert metric(page, "process_resident_memory_bytes") > 0
