"""The Status page's charts: a fixed set of PromQL range queries against the native Prometheus.

The browser names a window, never a query: the expressions live here, so the app cannot be used to run arbitrary
PromQL, and the live monitoring test evaluates these same expressions against a real Prometheus.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

# How many points each chart gets, whatever the window.
POINTS = 120
WINDOWS_MINUTES = (5, 15, 60, 180)
QUERY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Chart:
    """One chart: a PromQL expression whose series are told apart by `label` (empty: one series)."""

    id: str
    title: str
    unit: str
    expr: str
    label: str = ""


CHARTS = (
    Chart("tokens", "Tokens per second", "tok/s",
          "sum by (job) (rate(gen_ai_server_generation_tokens_total[1m]))", "job"),
    Chart("ttft", "Time to first token, p95", "s",
          "histogram_quantile(0.95, sum by (job, le) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m])))",
          "job"),
    Chart("queue", "Requests waiting", "requests", "sum by (job) (gen_ai_server_requests_waiting)", "job"),
    Chart("errors", "Server errors (5xx share of answers)", "%",
          '100 * (sum(rate(http_requests_total{status=~"5.."}[5m])) or vector(0))'
          " / sum(rate(http_requests_total[5m]))"),
    Chart("empty", "Retrievals that matched nothing", "%",
          "100 * sum(rate(rag_empty_retrievals_total[15m])) / sum(rate(rag_retrievals_total[15m]))"),
    Chart("approvals", "Approvals pending", "requests", "max(mcp_approvals_pending)"),
)


def step_for(minutes: int) -> int:
    """Seconds between points: the window spread over POINTS, at least 5 s (the native scrape interval)."""
    return max(5, math.ceil(minutes * 60 / POINTS))


def _points(values: Any) -> list[list[float | None]]:
    """Prometheus's [[time, "value"], ...] as [[time, value], ...]; NaN and Inf (an idle ratio) become null."""
    found: list[list[float | None]] = []
    for moment, text in values:
        value = float(text)
        found.append([float(moment), value if math.isfinite(value) else None])
    return found


async def _series(client: httpx.AsyncClient, base: str, chart: Chart, start: float, end: float,
                  step: int) -> dict[str, Any]:
    response = await client.get(f"{base}/api/v1/query_range", timeout=QUERY_TIMEOUT, params={
        "query": chart.expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"})
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(body.get("error") or "Prometheus refused the query")
    series = [{"name": (result.get("metric") or {}).get(chart.label, "") if chart.label else chart.title,
               "points": _points(result.get("values") or [])}
              for result in body["data"]["result"]]
    return {"id": chart.id, "title": chart.title, "unit": chart.unit,
            "series": sorted(series, key=lambda s: str(s["name"]))}


async def charts(client: httpx.AsyncClient, prometheus_url: str, minutes: int) -> dict[str, Any]:
    """Every chart over the last `minutes`; `available` is false (with the reason) when Prometheus gives none."""
    if not prometheus_url:
        return {"available": False, "charts": [],
                "error": "monitoring is off: start the suite with --monitoring (WEB_PROMETHEUS_URL is empty)"}
    base = prometheus_url.rstrip("/")
    end = time.time()
    step = step_for(minutes)
    results: list[dict[str, Any]] = [{} for _ in CHARTS]
    errors: list[Exception] = []

    async def one(index: int, chart: Chart) -> None:
        try:
            results[index] = await _series(client, base, chart, end - minutes * 60, end, step)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for index, chart in enumerate(CHARTS):
            group.start_soon(one, index, chart)
    if errors:
        first = errors[0]
        return {"available": False, "charts": [],
                "error": f"Prometheus at {base} did not answer ({type(first).__name__}: {first}); "
                         "is the suite running with --monitoring?"}
    return {"available": True, "minutes": minutes, "step_s": step, "end": end, "charts": results}
