"""What `ai-suite status` shows beside health: decode speed, p95 latency, error rate, and the active alerts.

With Prometheus running (`--monitoring`) the figures cover the last five minutes; without it they come from
each service's own /metrics and cover the time since it started.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_S = 2.0
WINDOW = "5m"
TPOT = "gen_ai_server_time_per_output_token_seconds"
LATENCY = "http_request_duration_seconds"
REQUESTS = "http_requests_total"
QUERIES = {
    # tokens per second while generating: the inverse of the mean time per output token
    "tokens_per_s": f"sum by (job) (rate({TPOT}_count[{WINDOW}])) / sum by (job) (rate({TPOT}_sum[{WINDOW}]))",
    "p95_s": f"histogram_quantile(0.95, sum by (job, le) (rate({LATENCY}_bucket[{WINDOW}])))",
    # a service with no 5xx has no such series; `or 0 * ...` makes its share 0 rather than nothing
    "error_ratio": f'(sum by (job) (rate({REQUESTS}{{status=~"5.."}}[{WINDOW}])) '
                   f"or 0 * sum by (job) (rate({REQUESTS}[{WINDOW}]))) / sum by (job) (rate({REQUESTS}[{WINDOW}]))",
}


@dataclass
class Figures:
    tokens_per_s: float | None = None
    p95_s: float | None = None
    error_ratio: float | None = None


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def from_prometheus(base_url: str, jobs: Iterable[str]) -> dict[str, Figures]:
    """The last five minutes of each job, from Prometheus' query API; empty when it cannot be asked."""
    figures = {job: Figures() for job in jobs}
    try:
        with httpx.Client(base_url=base_url, timeout=TIMEOUT_S, trust_env=False) as client:
            for field, query in QUERIES.items():
                answer = client.get("/api/v1/query", params={"query": query}).json()
                for sample in answer.get("data", {}).get("result", []):
                    job = sample["metric"].get("job")
                    if job in figures:
                        setattr(figures[job], field, _number(float(sample["value"][1])))
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return figures


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """`histogram_quantile` over cumulative bucket counts {upper bound: count}, as Prometheus computes it."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the highest bucket: its bound is all that is known
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return lower


def from_page(text: str) -> Figures:
    """Figures since the service started, from one /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families  # with the services' extra

    buckets: dict[float, float] = defaultdict(float)
    total = errors = tpot_sum = tpot_count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{LATENCY}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == REQUESTS:
                total += sample.value
                errors += sample.value if str(sample.labels.get("status", "")).startswith("5") else 0.0
            elif sample.name == f"{TPOT}_sum":
                tpot_sum += sample.value
            elif sample.name == f"{TPOT}_count":
                tpot_count += sample.value
    return Figures(tpot_count / tpot_sum if tpot_sum else None, quantile(0.95, buckets),
                   errors / total if total else None)


def from_services(urls: Mapping[str, str]) -> dict[str, Figures]:
    """Figures of each service from its own /metrics page ({name: metrics URL}); unreachable ones are left out."""
    figures = {}
    with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as client:
        for name, url in urls.items():
            try:
                response = client.get(url)
            except httpx.HTTPError:
                continue
            if response.status_code != 200:
                continue
            try:
                figures[name] = from_page(response.text)
            except ValueError:
                continue  # not a Prometheus page (a service of someone else's answering every path)
    return figures


def active_alerts(alerts_url: str) -> list[dict[str, Any]] | None:
    """The alert receiver's firing alerts, or None when it cannot be reached."""
    try:
        response = httpx.get(f"{alerts_url}/alerts", timeout=TIMEOUT_S, trust_env=False)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["active"]
        return active
    except (httpx.HTTPError, ValueError, KeyError):
        return None
