"""The alert receiver in process: Alertmanager's webhook, the active list, persistence, DATA_DIR's disk space."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from services.alerts.app import create_app
from services.alerts.settings import AlertsSettings
from tests.support.asgi import in_process
from tests.support.metrics import metric


def payload(status: str, *alerts: dict) -> dict:
    """An Alertmanager webhook body (version 4), as the real one sends it."""
    return {"version": "4", "groupKey": "{}:{alertname=\"ServiceDown\"}", "status": status, "receiver": "suite",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": list(alerts)}


def alert(status: str, job: str = "embedding", fingerprint: str = "f1") -> dict:
    return {"status": status, "labels": {"alertname": "ServiceDown", "job": job, "severity": "critical"},
            "annotations": {"summary": f"{job} is not answering"}, "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T10:05:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def settings(tmp_path: Path) -> AlertsSettings:
    return AlertsSettings(_env_file=None, DATA_DIR=tmp_path / "data")  # type: ignore[call-arg]


async def test_firing_then_resolved_and_kept_across_a_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    async with in_process(create_app(settings(tmp_path)), "http://alerts") as client:
        assert (await client.get("/health")).status_code == 200
        with caplog.at_level(logging.INFO, logger="services.alerts.app"):
            sent = await client.post("/webhook", json=payload("firing", alert("firing"), alert("firing", "rag", "f2")))
        assert sent.status_code == 200 and sent.json() == {"received": 2, "changed": 2}
        assert any(r.levelno == logging.WARNING and "ServiceDown" in r.getMessage() for r in caplog.records)
        listed = (await client.get("/alerts")).json()
        assert [(a["name"], a["labels"]["job"]) for a in listed["active"]] == [("ServiceDown", "embedding"),
                                                                              ("ServiceDown", "rag")]
        assert listed["active"][0]["summary"] == "embedding is not answering"
        again = await client.post("/webhook", json=payload("firing", alert("firing")))
        assert again.json()["changed"] == 0  # Alertmanager repeats itself; nothing new
        await client.post("/webhook", json=payload("resolved", alert("resolved")))
    async with in_process(create_app(settings(tmp_path)), "http://alerts") as client:
        listed = (await client.get("/alerts")).json()
        assert [a["labels"]["job"] for a in listed["active"]] == ["rag"]
        assert [(a["labels"]["job"], a["status"]) for a in listed["resolved"]] == [("embedding", "resolved")]
        assert (await client.get("/health")).json()["active"] == 1
        page = (await client.get("/metrics")).text
        assert 'alerts_notifications_total{status="firing"}' not in page  # counters start afresh; alerts do not


@pytest.mark.parametrize("body", [[], {"alerts": "no"}, {"status": "firing"}])
async def test_a_body_that_is_not_a_webhook_is_400(tmp_path: Path, body: object) -> None:
    async with in_process(create_app(settings(tmp_path)), "http://alerts") as client:
        response = await client.post("/webhook", json=body)
        assert response.status_code == 400
        assert (await client.get("/alerts")).json() == {"active": [], "resolved": []}


async def test_data_dir_space_is_measured_at_each_scrape(tmp_path: Path) -> None:
    async with in_process(create_app(settings(tmp_path)), "http://alerts") as client:
        page = (await client.get("/metrics")).text
    shown = str(tmp_path / "data")
    size = metric(page, f'ai_suite_data_dir_size_bytes{{path="{shown}"}}')
    available = metric(page, f'ai_suite_data_dir_available_bytes{{path="{shown}"}}')
    stats = os.statvfs(tmp_path)
    assert size == stats.f_blocks * stats.f_frsize
    assert 0 < available <= size
    assert abs(available - stats.f_bavail * stats.f_frsize) < 256 * 1024 * 1024  # other writers move it a little


async def test_the_webhook_needs_the_key_when_one_is_set(tmp_path: Path) -> None:
    keyed = AlertsSettings(_env_file=None, DATA_DIR=tmp_path / "data", API_KEY="k")  # type: ignore[call-arg]
    async with in_process(create_app(keyed), "http://alerts") as client:
        assert (await client.post("/webhook", json=payload("firing", alert("firing")))).status_code == 401
        ok = await client.post("/webhook", json=payload("firing", alert("firing")),
                               headers={"Authorization": "Bearer k"})
        assert ok.status_code == 200
