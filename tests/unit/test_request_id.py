"""Request ids and logs: one id per request, echoed, logged, passed on to the next service; rotated files."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from services.common.app_factory import harden
from services.common.httpclient import make_client
from services.common.logging import configure_logging
from services.common.settings import SuiteSettings

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    """Configure JSON logging into a file for the test; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    path = tmp_path / "service.log"
    configure_logging("INFO", json_lines=True, log_file=path)
    yield path
    root.handlers[:] = saved
    root.setLevel(level)


def lines(path: Path) -> list[dict]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def backend_app() -> FastAPI:
    app = FastAPI()
    harden(app, SuiteSettings(_env_file=None))

    @app.get("/seen")
    async def seen(request: Request) -> dict:
        logging.getLogger("backend").info("backend work")
        return {"got": request.headers.get("x-request-id")}

    return app


def front_app(backend: FastAPI, **settings: object) -> FastAPI:
    app = FastAPI()
    harden(app, SuiteSettings(_env_file=None, **settings))

    @app.get("/relay")
    async def relay() -> dict:
        logging.getLogger("front").info("front work")
        async with make_client(5, transport=httpx.ASGITransport(backend)) as client:
            return (await client.get("http://backend/seen")).json()

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("not caught")

    return app


async def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_an_id_is_made_at_the_edge_passed_on_and_logged_by_both(json_log: Path) -> None:
    response = await get(front_app(backend_app()), "/relay")
    request_id = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(request_id)
    assert response.json() == {"got": request_id}
    logged = lines(json_log)
    work = {line["message"]: line.get("request_id") for line in logged if line["message"].endswith("work")}
    assert work == {"front work": request_id, "backend work": request_id}
    access = [line for line in logged if line["name"] == "services.access"]
    assert {(line["path"], line["status"], line["request_id"]) for line in access} == {
        ("/relay", 200, request_id), ("/seen", 200, request_id)}
    assert all(line["duration_ms"] >= 0 for line in access)


async def test_a_clients_id_is_kept_and_a_bad_one_replaced(json_log: Path) -> None:
    app = front_app(backend_app())
    kept = await get(app, "/relay", {"X-Request-ID": "client-42.a:b"})
    assert kept.headers["x-request-id"] == "client-42.a:b" and kept.json() == {"got": "client-42.a:b"}
    for bad in ("has space", "x" * 129, "new\\nline", ""):
        replaced = await get(app, "/relay", {"X-Request-ID": bad})
        assert HEX_ID.fullmatch(replaced.headers["x-request-id"]), bad
    assert not any(line.get("request_id") == "has space" for line in lines(json_log))


async def test_refused_requests_get_an_id_and_probes_write_no_access_line(json_log: Path) -> None:
    app = front_app(backend_app(), API_KEY="k")
    refused = await get(app, "/relay")
    assert refused.status_code == 401 and HEX_ID.fullmatch(refused.headers["x-request-id"])
    await get(app, "/metrics")
    access = [line for line in lines(json_log) if line["name"] == "services.access"]
    assert [(line["path"], line["status"]) for line in access] == [("/relay", 401)]


async def test_an_unhandled_error_is_logged_as_500_with_its_id(json_log: Path) -> None:
    with pytest.raises(RuntimeError):
        await get(front_app(backend_app()), "/boom", {"X-Request-ID": "boom-1"})
    access = [line for line in lines(json_log) if line["name"] == "services.access"]
    assert [(line["path"], line["status"], line["request_id"]) for line in access] == [("/boom", 500, "boom-1")]


def test_no_request_no_id(json_log: Path) -> None:
    logging.getLogger("startup").info("loaded")
    assert "request_id" not in lines(json_log)[-1]


def test_the_log_file_rotates_by_size(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    path = tmp_path / "logs" / "svc.log"
    try:
        configure_logging("INFO", json_lines=True, log_file=path, max_bytes=2048, backups=2)
        for i in range(200):
            logging.getLogger("spam").info("line %d %s", i, "x" * 40)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    assert sorted(p.name for p in path.parent.iterdir()) == ["svc.log", "svc.log.1", "svc.log.2"]
    assert all(p.stat().st_size <= 2048 for p in path.parent.iterdir())
    assert "line 199" in path.read_text()


async def test_metrics_can_be_switched_off() -> None:
    on, off = backend_app(), FastAPI()
    harden(off, SuiteSettings(_env_file=None, METRICS_ENABLED="false"))
    await get(on, "/seen")
    page = (await get(on, "/metrics")).text
    # the request histogram has buckets up to a minute, so a slow generation still has a p95
    assert 'http_request_duration_seconds_bucket{handler="/seen",le="60.0",method="GET"} 1.0' in page
    assert (await get(off, "/metrics")).status_code == 404


def test_uvicorns_lines_are_json_without_colour_codes(json_log: Path) -> None:
    # a logger of our own: uvicorns' may be left unpropagated by a server an earlier test ran in a thread
    logging.getLogger("services.test.uvicorn").info("Uvicorn running on %s", "http://x",
                                                    extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"})
    line = lines(json_log)[-1]
    assert line["message"] == "Uvicorn running on http://x" and "color_message" not in line
