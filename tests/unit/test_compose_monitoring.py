"""docker/compose.monitoring.yml: an overlay for every phase, valid in Docker and run in part natively."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from services.stack.compose import compose_variables, load_project, resolve
from services.stack.interpolate import InterpolationError
from services.stack.rules import check_rules, validate_schema
from services.stack.runner import PHASES, ROOT, Stack, compose_files
from tests.support.dockerfiles import lineage
from tests.support.dockerfiles import stages as dockerfile_stages
from tests.unit.test_compose import _documented

DOCKER = ROOT / "docker"
MONITORING = {"alerts", "prometheus", "alertmanager", "node-exporter", "grafana", "loki", "promtail", "cadvisor"}
DOCKER_ONLY = {"grafana", "loki", "promtail", "cadvisor"}
PASSWORD = {"GRAFANA_ADMIN_PASSWORD": "s3cret"}
PROJECTS = [compose_files(p, ROOT, gpu, monitoring=True) for gpu in (False, True) for p in PHASES]
IDS = ["+".join(p.name for p in files) for files in PROJECTS]


def test_the_overlay_comes_last_after_any_phase() -> None:
    for phase in PHASES:
        files = compose_files(phase, ROOT, monitoring=True)
        assert files[:-1] == compose_files(phase, ROOT) and files[-1] == DOCKER / "compose.monitoring.yml"
        services = resolve(load_project(files), PASSWORD)["services"]
        assert MONITORING <= set(services)
        # the overlay adds services and changes none of the phase's
        assert {n: s for n, s in services.items() if n not in MONITORING} == \
            resolve(load_project(compose_files(phase, ROOT)), {})["services"]


@pytest.mark.parametrize("files", PROJECTS, ids=IDS)
def test_project_is_valid_and_follows_our_rules(files: list[Path]) -> None:
    validate_schema(resolve(load_project(files), PASSWORD))
    assert check_rules(load_project(files).doc) == []


def test_grafana_needs_a_password_from_env_and_is_never_admin_admin() -> None:
    files = compose_files("p1", ROOT, monitoring=True)
    with pytest.raises(InterpolationError, match="GRAFANA_ADMIN_PASSWORD"):
        resolve(load_project(files), {})
    grafana = resolve(load_project(files), PASSWORD)["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret" and env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_ANALYTICS_REPORTING_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert grafana["ports"] == ["127.0.0.1:3001:3000"]
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in load_project(files).services[
        "grafana"]["volumes"]


def test_ports_move_with_env() -> None:
    variables = {**PASSWORD, "PROMETHEUS_PORT": "19090", "ALERTMANAGER_PORT": "19093", "GRAFANA_PORT": "13001",
                 "LOKI_PORT": "13100", "ALERTS_PORT": "19095", "NODE_EXPORTER_PORT": "19100"}
    services = resolve(load_project(compose_files("p2", ROOT, monitoring=True)), variables)["services"]
    published = {name: services[name]["ports"][0].split(":")[1] for name in
                 ("prometheus", "alertmanager", "grafana", "loki", "alerts", "node-exporter")}
    assert published == {"prometheus": "19090", "alertmanager": "19093", "grafana": "13001", "loki": "13100",
                         "alerts": "19095", "node-exporter": "19100"}


def test_host_mounts_are_read_only_and_named_and_config_comes_read_only_from_the_repository() -> None:
    doc = load_project(compose_files("p1", ROOT, monitoring=True)).doc
    bad = copy.deepcopy(doc)
    bad["services"]["node-exporter"]["volumes"] = ["/:/host"]
    assert check_rules(bad) == ["node-exporter: host mount '/:/host' must be read-only (:ro)"]
    bad = copy.deepcopy(doc)
    bad["services"]["grafana"]["volumes"].append("/:/host:ro")
    assert check_rules(bad) == ["grafana: volume '/:/host:ro' must lie under ${MODELS_DIR} or ${DATA_DIR}"]
    bad = copy.deepcopy(doc)
    bad["services"]["loki"]["volumes"][0] = "./monitoring/loki/loki.yml:/etc/loki/loki.yml"
    assert check_rules(bad) == ["loki: configuration mount './monitoring/loki/loki.yml:/etc/loki/loki.yml' "
                                "must be read-only (:ro)"]
    bad = copy.deepcopy(doc)
    bad["services"]["loki"]["volumes"][0] = "../services:/srv:ro"
    assert check_rules(bad) == ["loki: volume '../services:/srv:ro' must lie under ${MODELS_DIR} or ${DATA_DIR}"]
    # promtail reads the services' log files, never the Docker socket
    assert not any("docker.sock" in str(v) for s in doc["services"].values() for v in s.get("volumes") or [])


def test_mounted_repository_files_exist() -> None:
    for name, service in load_project(compose_files("p1", ROOT, monitoring=True)).services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name}: {source} is missing"


def test_env_example_documents_every_monitoring_variable() -> None:
    used = compose_variables(*compose_files("p3", ROOT, monitoring=True))
    assert sorted(used - _documented(ROOT / ".env.example")) == []


def test_the_alert_receiver_image_runs_unprivileged() -> None:
    project = load_project(compose_files("p1", ROOT, monitoring=True))
    alerts = project.services["alerts"]
    stages = dockerfile_stages((project.service_dirs["alerts"] / alerts["build"]["context"]
                                / alerts["build"]["dockerfile"]).resolve())
    users = [line.split()[1] for line in lineage(stages, alerts["build"]["target"]) if line.startswith("USER ")]
    assert users == ["app"] and alerts["command"] == ["python", "-m", "services.alerts"]
    assert alerts["build"]["args"]["SERVICE"] == "alerts"


def test_native_monitoring_runs_debian_binaries_on_loopback(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "PROMETHEUS_PORT": "19090", "ALERTMANAGER_PORT": "19093",
           "NODE_EXPORTER_PORT": "19100", "ALERTS_PORT": "19095"}
    stack = Stack("p1", env=env, monitoring=True)  # no Grafana password needed: Grafana does not run natively
    data = tmp_path / "d"
    assert set(stack.order) == {"inference-chat", "api-gateway", "alerts", "prometheus", "alertmanager",
                                "node-exporter"}
    prometheus = stack.services["prometheus"]
    assert prometheus.argv == ["/usr/bin/prometheus", "--config.file", str(data / "monitoring" / "prometheus.yml"),
                               "--storage.tsdb.path", str(data / "prometheus"), "--storage.tsdb.retention.time",
                               "15d", "--web.listen-address", "127.0.0.1:19090"]
    assert prometheus.health_url == "http://127.0.0.1:19090/-/ready"
    alertmanager = stack.services["alertmanager"]
    assert alertmanager.argv[0] == "/usr/bin/prometheus-alertmanager"
    assert "--cluster.listen-address=" in alertmanager.argv
    assert alertmanager.argv[alertmanager.argv.index("--web.listen-address") + 1] == "127.0.0.1:19093"
    assert stack.services["node-exporter"].argv == ["/usr/bin/prometheus-node-exporter",
                                                    "--web.listen-address=127.0.0.1:19100"]
    alerts = stack.services["alerts"]
    assert alerts.argv == [sys.executable, "-m", "services.alerts"] and alerts.env["DATA_DIR"] == str(data)
    assert alerts.health_url == "http://127.0.0.1:19095/health"
    assert stack.urls()["Prometheus"] == "http://127.0.0.1:19090"
    for name in ("prometheus", "alertmanager", "node-exporter", "alerts"):
        assert all(p.host_ip == "127.0.0.1" for p in stack.services[name].ports)
