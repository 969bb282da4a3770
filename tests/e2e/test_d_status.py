"""Live model status from /v1/status and active alerts, refreshed without reloading the page."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app, send

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_every_backend_shows_its_state_and_the_last_rate_appears_after_an_answer(page: Page, suite: Suite) -> None:
    backends = suite.api("GET", "/v1/status")["backends"]
    assert backends
    open_app(page, model="chat-7b")
    strip = page.get_by_role("group", name="Model status")
    for backend in backends:
        expect(strip).to_contain_text(re.compile(rf"{re.escape(backend['name'])}: (healthy|loading|cooling down|down)"))
    expect(strip).to_contain_text("queue")
    send(page, "Count to five.")
    expect(strip).to_contain_text(re.compile(r"\d+\.\d tok/s"), timeout=10_000)
    page.get_by_role("link", name="Status").click()
    table = page.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(len(backends) + 1)
    expect(table).to_contain_text("healthy")


def test_the_status_refreshes_at_least_every_two_seconds(page: Page, suite: Suite) -> None:
    open_app(page)
    seen: list[float] = []
    page.on("response", lambda response: seen.append(time.monotonic()) if response.url.endswith("/v1/status") else None)
    page.wait_for_timeout(5000)
    assert len(seen) >= 3
    assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) <= 2.0


def firing(name: str, summary: str) -> dict:
    return {"version": "4", "status": "firing", "receiver": "suite", "alerts": [{
        "status": "firing", "labels": {"alertname": name, "severity": "critical", "service": "inference-chat"},
        "annotations": {"summary": summary}, "startsAt": "2026-12-07T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "e2e" + name}]}


def test_an_active_alert_appears_in_the_status_area(page: Page, suite: Suite) -> None:
    open_app(page)
    alerts = page.get_by_role("region", name="Active alerts")
    expect(alerts).to_be_hidden()
    request = urllib.request.Request(f"{suite.extra['alerts_url']}/webhook", method="POST",  # noqa: S310
                                     data=json.dumps(firing("InferenceSlow", "Chat answers slowly")).encode(),
                                     headers={"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310 - loopback
    expect(alerts).to_be_visible(timeout=20_000)
    expect(alerts).to_contain_text("critical: InferenceSlow")
    expect(alerts).to_contain_text("Chat answers slowly")
