"""Live model status from /v1/status and active alerts, refreshed without reloading the page."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, Response, expect

from services.stack.monitoring import prometheus_config, scrape_targets
from services.web.charts import CHARTS
from tests.e2e.conftest import Suite, open_app, send
from tests.e2e.test_screenshots import folder as screenshots
from tests.support.procs import Service

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


def test_the_status_refreshes_at_least_every_two_seconds_and_redraws_only_what_changed(page: Page,
                                                                                       suite: Suite) -> None:
    open_app(page)
    strip = page.get_by_role("group", name="Model status")
    expect(strip).to_contain_text("queue")
    strip.evaluate("""(el) => { window.statusRedraws = 0;
        new MutationObserver((records) => { window.statusRedraws += records.length; })
            .observe(el, {childList: true}); }""")
    seen: list[tuple[float, Response]] = []
    page.on("response", lambda response: seen.append((time.monotonic(), response))
            if response.url.endswith("/v1/status") else None)
    page.wait_for_timeout(5000)
    assert len(seen) >= 3
    assert max(b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)) <= 2.0
    # a poll that finds what is shown leaves the strip alone (one redraw allowed for the poll in flight at the start)
    bodies = [json.dumps(response.json()["backends"]) for _, response in seen]
    changes = sum(a != b for a, b in zip(bodies, bodies[1:], strict=False))
    assert page.evaluate("window.statusRedraws") <= changes + 1


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


def test_without_prometheus_the_status_page_says_why_there_are_no_charts(page: Page, suite: Suite) -> None:
    open_app(page, "/status")
    note = page.get_by_role("status").filter(has_text="charts")
    expect(note).to_contain_text("No charts: Prometheus at " + suite.env["WEB_PROMETHEUS_URL"])
    expect(note).to_contain_text("--monitoring")
    expect(page.locator("figure.chart")).to_have_count(0)


@pytest.fixture(scope="module")
def prometheus(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Debian Prometheus scraping the running p4 stack, on the port the web service was given."""
    folder: Path = tmp_path_factory.mktemp("prometheus")
    config = prometheus_config(scrape_targets(suite.stack.doc, native=True), "127.0.0.1:9",
                               str(folder / "no-rules" / "*.yml"))
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = suite.env["WEB_PROMETHEUS_URL"]
    prometheus = Service("prometheus", ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
                                        f"--storage.tsdb.path={folder / 'data'}",
                                        f"--web.listen-address={url.removeprefix('http://')}"],
                         {}, f"{url}/-/ready", folder / "prometheus.log").start(60)
    try:
        yield url
    finally:
        prometheus.stop()


def test_the_status_page_charts_the_suite_from_prometheus(page: Page, suite: Suite, prometheus: str,
                                                          tmp_path: Path) -> None:
    open_app(page, model="chat-7b")
    send(page, "Say hello.")
    page.wait_for_timeout(12_000)  # two scrapes, so that rate() has a rise
    send(page, "Say goodbye.")
    page.get_by_role("link", name="Status").click()
    charts = page.get_by_role("region", name="Over time")
    for chart in CHARTS:
        expect(charts.get_by_role("group", name=chart.title)).to_be_visible(timeout=30_000)
    expect(page.get_by_role("status").filter(has_text="From Prometheus")).to_contain_text("one point every 8 s")
    tokens = charts.get_by_role("group", name="Tokens per second")
    expect(tokens.locator("canvas")).to_have_count(1)
    # the caption says the latest values in words: the chat model's tok/s, and no pending approval
    expect(tokens).to_contain_text(re.compile(r"inference-chat: (0\.\d*[1-9]|[1-9])\d*(\.\d+)? tok/s"),
                                   timeout=60_000)
    expect(charts.get_by_role("group", name="Approvals pending")).to_contain_text("now 0 requests")
    page.get_by_label("Window", exact=True).select_option("5")
    expect(page.get_by_role("status").filter(has_text="From Prometheus")).to_contain_text("one point every 5 s")
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.screenshot(path=str(screenshots(tmp_path) / "status.png"), full_page=True)  # docs/screenshots with make
    page.get_by_label("Window", exact=True).select_option("60")
    expect(page.get_by_role("status").filter(has_text="From Prometheus")).to_contain_text("one point every 30 s")
    expect(charts.locator("figure.chart")).to_have_count(len(CHARTS))
