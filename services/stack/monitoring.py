"""Prometheus and Alertmanager configuration, generated from the same compose topology both runners start.

A service is scraped when it publishes a port and answers `/metrics`: every suite service (its healthcheck is
`services.common.probe`, and every suite service has /metrics), and any service labelled `ai-suite.metrics`
with its metrics path. Natively the targets are `127.0.0.1:<published port>`; in Docker `<service>:<port
inside the container>`. The config files go where the prometheus and alertmanager services mount them from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.stack.compose import NATIVE_KEY, ComposeError
from services.stack.native import PROBE_MODULE, path_map
from services.stack.rules import split_port

METRICS_LABEL = "ai-suite.metrics"
PROMETHEUS, ALERTMANAGER, ALERTS = "prometheus", "alertmanager", "alerts"
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES = "/etc/prometheus/rules"
ALERTMANAGER_CONFIG = "/etc/alertmanager/alertmanager.yml"
# ServiceDown fires at most scrape_interval + scrape_timeout + 2 x evaluation_interval + its `for:` after a
# service stops answering (about 33 s), well before the supervisor kills a hung one (interval x retries = 50 s)
# and within the 90 s the issue asks for once Alertmanager's group_wait is added.
SCRAPE_INTERVAL_S = 5
SCRAPE_TIMEOUT_S = 3
EVALUATION_INTERVAL_S = 5
GROUP_WAIT_S = 10


@dataclass(frozen=True)
class Target:
    job: str
    address: str
    metrics_path: str


def metrics_path(service: Mapping[str, Any]) -> str | None:
    """Where a service's metrics are, or None when it has none."""
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).split("=", 1) for item in labels if "=" in str(item))
    if METRICS_LABEL in labels:
        return str(labels[METRICS_LABEL])
    test = (service.get("healthcheck") or {}).get("test") or []
    return "/metrics" if isinstance(test, list) and PROBE_MODULE in test else None


def _first_port(name: str, service: Mapping[str, Any]) -> tuple[str, str]:
    """(published, target) of a service's first port."""
    entry = (service.get("ports") or [])[0]
    if isinstance(entry, dict):
        published, target = str(entry.get("published") or entry.get("target")), str(entry.get("target"))
    else:
        _, published, target = split_port(str(entry))
        published = published or target
    if not published.isdigit() or not target.isdigit():
        raise ComposeError(f"{name}: port {entry!r} must be a single number on both sides to be scraped")
    return published, target


def _runs(service: Mapping[str, Any], native: bool) -> bool:
    return not (native and (service.get(NATIVE_KEY) or {}).get("disabled"))


def scrape_targets(doc: Mapping[str, Any], native: bool) -> list[Target]:
    """Every service of an interpolated document that runs in this mode, publishes a port and has metrics."""
    targets = []
    for name, service in sorted((doc.get("services") or {}).items()):
        path = metrics_path(service)
        if path is None or not service.get("ports") or not _runs(service, native):
            continue
        published, target = _first_port(name, service)
        targets.append(Target(name, f"127.0.0.1:{published}" if native else f"{name}:{target}", path))
    return targets


def _address(doc: Mapping[str, Any], name: str, native: bool) -> str:
    published, target = _first_port(name, doc["services"][name])
    return f"127.0.0.1:{published}" if native else f"{name}:{target}"


def prometheus_config(targets: list[Target], alertmanager: str, rules_glob: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": f"{SCRAPE_TIMEOUT_S}s",
                   "evaluation_interval": f"{EVALUATION_INTERVAL_S}s",
                   "external_labels": {"suite": "local-ai-suite"}},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "rule_files": [rules_glob],
        "scrape_configs": [
            {"job_name": t.job, "metrics_path": t.metrics_path, "static_configs": [{"targets": [t.address]}]}
            for t in targets
        ],
    }


def alertmanager_config(webhook_url: str, api_key: str | None) -> dict[str, Any]:
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
    if api_key:  # the alerts service then wants the key like every other caller
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": api_key}}
    return {
        "route": {"receiver": "suite", "group_by": ["alertname", "job"], "group_wait": f"{GROUP_WAIT_S}s",
                  "group_interval": "15s", "repeat_interval": "4h"},
        "receivers": [{"name": "suite", "webhook_configs": [webhook]}],
    }


def _mounted(doc: Mapping[str, Any], service_dirs: Mapping[str, Path], base_dir: Path, service: str,
             container_path: str) -> Path:
    mapping = path_map(doc["services"][service], doc.get(NATIVE_KEY) or {}, service_dirs.get(service, base_dir))
    if container_path not in mapping:
        raise ComposeError(f"{service}: no volume mounts {container_path}; the generated config has nowhere to go")
    return mapping[container_path]


def config_files(doc: Mapping[str, Any], service_dirs: Mapping[str, Path], base_dir: Path, native: bool,
                 api_key: str | None = None) -> dict[Path, str]:
    """Host path -> text of prometheus.yml and alertmanager.yml for an interpolated document with monitoring."""
    services = doc.get("services") or {}
    missing = [name for name in (PROMETHEUS, ALERTMANAGER, ALERTS) if name not in services]
    if missing:
        raise ComposeError(f"the topology has no {', '.join(missing)}: add docker/compose.monitoring.yml")
    rules = (str(_mounted(doc, service_dirs, base_dir, PROMETHEUS, PROMETHEUS_RULES)) if native
             else PROMETHEUS_RULES)
    prometheus = prometheus_config(scrape_targets(doc, native), _address(doc, ALERTMANAGER, native),
                                   f"{rules}/*.yml")
    alerts_url = f"http://{_address(doc, ALERTS, native)}/webhook"
    header = "# Generated by `ai-suite monitoring config` from the compose files; edits are overwritten.\n"
    return {
        _mounted(doc, service_dirs, base_dir, PROMETHEUS, PROMETHEUS_CONFIG):
            header + yaml.safe_dump(prometheus, sort_keys=False),
        _mounted(doc, service_dirs, base_dir, ALERTMANAGER, ALERTMANAGER_CONFIG):
            header + yaml.safe_dump(alertmanager_config(alerts_url, api_key), sort_keys=False),
    }


def write_config_files(files: Mapping[Path, str], private: bool) -> list[Path]:
    """Write the files atomically; `private` (an API key inside) makes them readable by their owner only."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    return list(files)
