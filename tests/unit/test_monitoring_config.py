"""Monitoring, checked offline: promtool and amtool on the generated configs, the rules and every PromQL query."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.stack.compose import resolve
from services.stack.monitoring import (
    EVALUATION_INTERVAL_S,
    GROUP_WAIT_S,
    SCRAPE_INTERVAL_S,
    SCRAPE_TIMEOUT_S,
    config_files,
    scrape_targets,
)
from services.stack.native import parse_duration
from services.stack.runner import Stack
from tests.support.monitoring import (
    DASHBOARDS,
    RULE_TESTS,
    RULES,
    dashboard_expressions,
    rule_expressions,
    rules,
    selectors,
    status_page_expressions,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "monitoring.md"
SUITE_JOBS = {"inference-chat", "inference-code", "api-gateway", "embedding", "rag", "mcp-server", "alerts"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: `make system-packages` installs it (Debian prometheus / prometheus-alertmanager)"
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def p3(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    data = tmp_path_factory.mktemp("monitoring")
    return Stack("p3", env={"DATA_DIR": str(data), "GRAFANA_ADMIN_PASSWORD": "secret", "PROMETHEUS_PORT": "19090"},
                 monitoring=True)


def test_native_configs_pass_promtool_and_amtool(p3: Stack) -> None:
    prometheus, alertmanager = p3.write_monitoring_config()
    checked = run("promtool", "check", "config", str(prometheus))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout  # the repository's rules, by absolute path
    checked = run("amtool", "check-config", str(alertmanager))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_docker_configs_pass_promtool_and_amtool(p3: Stack, tmp_path: Path) -> None:
    doc = resolve(p3.project, p3.variables)
    files = config_files(doc, p3.project.service_dirs, p3.project.base_dir, native=False, api_key="k3y")
    for path, text in files.items():
        copy = tmp_path / path.name
        copy.write_text(text)
        checked = run(*(("promtool", "check", "config") if "prometheus" in path.name else ("amtool", "check-config")),
                      str(copy))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    webhook = yaml.safe_load(files[next(p for p in files if "alertmanager" in p.name)])["receivers"][0]
    assert webhook["webhook_configs"][0]["url"] == "http://alerts:9095/webhook"
    assert webhook["webhook_configs"][0]["http_config"]["authorization"]["credentials"] == "k3y"


def test_a_broken_config_fails_the_checks(tmp_path: Path) -> None:
    bad = tmp_path / "prometheus.yml"
    bad.write_text("global:\n  scrape_interval: often\n")
    assert run("promtool", "check", "config", str(bad)).returncode != 0
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    assert run("amtool", "check-config", str(bad)).returncode != 0


def test_targets_come_from_the_topology(p3: Stack) -> None:
    native = {t.job: t.address for t in scrape_targets(p3.doc, native=True)}
    ports = {name: spec.ports[0].port for name, spec in p3.services.items() if spec.ports}
    assert set(native) == SUITE_JOBS | {"prometheus", "alertmanager", "node-exporter"}
    assert native == {job: f"127.0.0.1:{ports[job]}" for job in native}
    assert native["prometheus"] == "127.0.0.1:19090"
    docker = {t.job: t.address for t in scrape_targets(resolve(p3.project, p3.variables), native=False)}
    # in Docker the compose-only services join, each by its name and its port inside the container
    assert set(docker) == set(native) | {"grafana", "loki", "promtail", "cadvisor"}
    assert docker["prometheus"] == "prometheus:9090" and docker["rag"] == "rag:8002"
    assert docker["cadvisor"] == "cadvisor:8080"
    assert "postgres" not in docker and "qdrant" not in docker  # no /metrics of ours


def test_rules_pass_promtool() -> None:
    checked = run("promtool", "check", "rules", *map(str, RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rule_unit_tests_pass_and_cover_every_alert_firing_and_not() -> None:
    checked = run("promtool", "test", "rules", str(RULE_TESTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases: dict[str, set[bool]] = {}
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts == {"ServiceDown", "HighErrorRate", "HighLatency", "InferenceQueueSaturated", "SlowFirstToken",
                      "ModelFailoverActive", "RagEmptyRetrievalRateHigh", "ApprovalBacklog", "AuditWriteLag",
                      "AuditChainBroken", "DataDiskAlmostFull"}
    assert {name: cases.get(name) for name in alerts} == dict.fromkeys(alerts, {True, False})


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    broken = yaml.safe_load(RULE_TESTS.read_text())
    broken["rule_files"] = [str(path) for path in RULES]
    broken["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"job": "rag"}}]
    path = tmp_path / "broken_test.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run("promtool", "test", "rules", str(path)).returncode != 0


def test_every_alert_has_a_runbook_section() -> None:
    text = DOCS.read_text(encoding="utf-8")
    headings = {re.sub(r"[^a-z0-9]", "", line.lstrip("#").strip().lower()) for line in text.splitlines()
                if line.startswith("#")}
    for rule in rules():
        if "alert" in rule:
            assert rule["annotations"]["runbook_url"] == f"docs/monitoring.md#{rule['alert'].lower()}"
            assert rule["alert"].lower() in headings, f"{rule['alert']} has no runbook section in {DOCS.name}"
            section = text.split(f"### {rule['alert']}", 1)[1].split("\n### ", 1)[0]
            assert "**Runbook:**" in section, f"{rule['alert']}: no runbook line"


def check_as_recording_rules(expressions: list[tuple[str, str]], folder: Path) -> subprocess.CompletedProcess[str]:
    """promtool parses each expression, held as a recording rule (it has no other offline PromQL parser)."""
    doc = {"groups": [{"name": "expressions", "rules": [
        {"record": f"check:expression_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]}
    path = folder / "expressions.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return run("promtool", "check", "rules", str(path))


def test_every_dashboard_rule_and_status_query_parses(tmp_path: Path) -> None:
    from services.stack.figures import QUERIES

    expressions = dashboard_expressions() + rule_expressions() + status_page_expressions() + list(QUERIES.items())
    assert len(dashboard_expressions()) > 50 and DASHBOARDS
    checked = check_as_recording_rules(expressions, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_a_query_that_does_not_parse_is_caught(tmp_path: Path) -> None:
    checked = check_as_recording_rules([("bad", "sum by (job (rate(up[5m]))")], tmp_path)
    assert checked.returncode != 0 and "parse error" in checked.stderr + checked.stdout


def test_dashboard_has_the_overview_and_a_row_per_area() -> None:
    import json

    dashboard = json.loads(DASHBOARDS[0].read_text())
    assert dashboard["title"] == "AI Suite Overview" and dashboard["uid"] == "ai-suite-overview"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["Services", "Models", "Retrieval", "Tools and security", "Host"]
    sources = {(panel.get("datasource") or {}).get("uid") for panel in dashboard["panels"] if panel["type"] != "row"}
    provisioned = yaml.safe_load((ROOT / "docker/monitoring/grafana/provisioning/datasources/datasources.yml")
                                 .read_text())["datasources"]
    assert sources <= {source["uid"] for source in provisioned}


# Metrics of the exporters and of Prometheus itself, documented by their projects.
FOREIGN = ("node_", "process_", "container_", "prometheus_", "alertmanager_")


def test_every_suite_metric_the_dashboards_and_rules_read_is_documented() -> None:
    documented = set(re.findall(r"`([a-z_:]+)(?:\{[^`]*\})?`", DOCS.read_text(encoding="utf-8")))
    read = {s.family() for _, expr in dashboard_expressions() + rule_expressions() + status_page_expressions()
            for s in selectors(expr)}
    suite = {name for name in read if not name.startswith(FOREIGN) and name not in ("up", "ALERTS")}
    assert len(suite) > 40
    assert suite - documented == set()


def test_selectors_are_found_in_promql() -> None:
    found = selectors('sum by (job) (rate(x_bucket{a="b", c!~"d|e"}[5m] offset 1h)) / ignoring (le) y > bool 1e3 '
                      "and on (job) max without (a) (z) * 0.05")
    assert [(s.metric, s.matchers) for s in found] == [
        ("x_bucket", (("a", "=", "b"), ("c", "!~", "d|e"))), ("y", ()), ("z", ())]
    assert found[0].family() == "x"


def test_service_down_fires_before_the_supervisor_kills_a_hung_service(p3: Stack) -> None:
    service_down = next(rule for rule in rules() if rule.get("alert") == "ServiceDown")
    # the worst case: the last good scrape just before the hang, a full timeout, a late evaluation either side
    worst = SCRAPE_INTERVAL_S + SCRAPE_TIMEOUT_S + EVALUATION_INTERVAL_S + parse_duration(service_down["for"]) \
        + EVALUATION_INTERVAL_S
    suite = [spec for name, spec in p3.services.items() if name in SUITE_JOBS]
    assert worst < min(spec.watch.hung_after for spec in suite)
    assert worst + GROUP_WAIT_S < 90
