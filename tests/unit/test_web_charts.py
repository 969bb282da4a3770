"""The Status page's charts: fixed queries to Prometheus's range API, a window the browser picks, clear failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.web.app import create_app
from services.web.charts import CHARTS, step_for
from tests.support.asgi import in_process
from tests.support.fake_openai import ThreadedServer, free_port
from tests.support.web import web_settings


class FakePrometheus:
    """Prometheus's /api/v1/query_range: a matrix per query, or the error a test asks for."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        self.values = [["NaN", "1"], ["2.5", "+Inf"]]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v1/query_range")
        async def query_range(request: Request) -> JSONResponse:
            params = dict(request.query_params)
            self.queries.append(params)
            if self.fail_with:
                return JSONResponse(self.fail_with[1], status_code=self.fail_with[0])
            start, step = float(params["start"]), float(params["step"].removesuffix("s"))
            series = [{"metric": {"job": job}, "values": [[start + i * step, value] for i, value in
                                                          enumerate(self.values[n])]}
                      for n, job in enumerate(("inference-code", "inference-chat"))]
            return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": series}})

        return app


@pytest.fixture
def prometheus() -> Iterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus()
    server = ThreadedServer(fake.app).start()
    try:
        yield fake, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


async def get_charts(tmp_path: Path, prometheus_url: str, query: str = "") -> httpx.Response:
    (tmp_path / "index.html").write_text("<!doctype html>")
    settings = web_settings(tmp_path, f"http://127.0.0.1:{free_port()}", WEB_PROMETHEUS_URL=prometheus_url)
    async with in_process(create_app(settings), "http://127.0.0.1:3000") as web:
        return await web.get(f"/api/charts{query}")


async def test_every_chart_is_one_range_query_over_the_window(tmp_path: Path,
                                                               prometheus: tuple[FakePrometheus, str]) -> None:
    fake, url = prometheus
    response = await get_charts(tmp_path, url, "?minutes=60")
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is True and body["minutes"] == 60 and body["step_s"] == 30
    assert [chart["id"] for chart in body["charts"]] == [chart.id for chart in CHARTS]
    assert sorted(q["query"] for q in fake.queries) == sorted(chart.expr for chart in CHARTS)
    for sent in fake.queries:
        assert float(sent["end"]) - float(sent["start"]) == pytest.approx(3600, abs=0.01)
        assert sent["step"] == "30s"
    tokens = body["charts"][0]
    assert tokens["title"] == "Tokens per second" and tokens["unit"] == "tok/s"
    # series named by their job and sorted; NaN and Inf (an idle ratio) become null
    assert [s["name"] for s in tokens["series"]] == ["inference-chat", "inference-code"]
    assert [p[1] for p in tokens["series"][0]["points"]] == [2.5, None]
    assert [p[1] for p in tokens["series"][1]["points"]] == [None, 1.0]
    single = next(chart for chart in body["charts"] if chart["id"] == "approvals")
    assert [s["name"] for s in single["series"]] == ["Approvals pending", "Approvals pending"]


def test_steps_follow_the_window_but_never_beat_the_scrape_interval() -> None:
    assert [step_for(m) for m in (5, 15, 60, 180)] == [5, 8, 30, 90]


@pytest.mark.parametrize("query", ["?minutes=7", "?minutes=0", "?minutes=-5", "?minutes=abc",
                                   "?minutes=100000000000000000000"])
async def test_a_window_that_is_not_offered_is_refused_and_nothing_is_queried(
    tmp_path: Path, prometheus: tuple[FakePrometheus, str], query: str
) -> None:
    fake, url = prometheus
    response = await get_charts(tmp_path, url, query)
    assert response.status_code == 400
    assert "minutes" in response.text
    assert fake.queries == []


async def test_the_browser_cannot_send_its_own_promql(tmp_path: Path, prometheus: tuple[FakePrometheus, str]) -> None:
    fake, url = prometheus
    response = await get_charts(tmp_path, url, "?minutes=5&query=up&expr=up")
    assert response.status_code == 200
    assert {q["query"] for q in fake.queries} == {chart.expr for chart in CHARTS}


async def test_without_prometheus_configured_the_page_is_told_why(tmp_path: Path) -> None:
    body = (await get_charts(tmp_path, "")).json()
    assert body["available"] is False and body["charts"] == []
    assert "--monitoring" in body["error"]


async def test_prometheus_not_running_is_reported_not_raised(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    response = await get_charts(tmp_path, url)
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is False and url in body["error"] and "ConnectError" in body["error"]


@pytest.mark.parametrize("failure", [
    (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
    (200, {"status": "error", "error": "query timed out"}),
    (200, {"status": "success", "data": {"resultType": "matrix", "result": [{"values": [[1, "x"]]}]}}),
    (200, {"status": "success"}),
    (503, {"oops": True}),
])
async def test_a_bad_answer_from_prometheus_is_reported(tmp_path: Path, prometheus: tuple[FakePrometheus, str],
                                                         failure: tuple[int, dict[str, Any]]) -> None:
    fake, url = prometheus
    fake.fail_with = failure
    response = await get_charts(tmp_path, url)
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is False and body["charts"] == [] and "did not answer" in body["error"]
