"""`ai-suite up p1 --monitoring` as `make run` starts it: supervised, kept by a later `up`, stopped by `down`."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from services.stack.cli import main
from services.stack.runner import Stack
from tests.support.procs import free_port

pytestmark = pytest.mark.integration
MONITORING = {"alerts", "prometheus", "alertmanager", "node-exporter"}


def test_up_with_monitoring_is_supervised_kept_and_stopped(models_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    env = {name: str(free_port()) for name in ("API_GATEWAY_PORT", "INFERENCE_PORT", "PROMETHEUS_PORT",
                                                "ALERTMANAGER_PORT", "NODE_EXPORTER_PORT", "ALERTS_PORT")}
    env |= {"DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(models_dir), "N_THREADS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stack = Stack("p1", monitoring=True)
    try:
        assert main(["up", "p1", "--monitoring"]) == 0
        assert f"Prometheus         http://127.0.0.1:{env['PROMETHEUS_PORT']}" in capsys.readouterr().out
        running = {row.name for row in stack.status() if row.state == "running"}
        assert MONITORING | {"inference-chat", "api-gateway"} <= running
        first = stack.supervisor()
        assert first is not None and "--monitoring" in psutil.Process(first.pid).cmdline()
        assert (tmp_path / "data" / "monitoring" / "prometheus.yml").is_file()
        # a later `up` without the flag keeps monitoring, under a new supervisor that watches it too
        assert main(["up", "p1"]) == 0
        second = stack.supervisor()
        assert second is not None and second.pid != first.pid
        assert "--monitoring" in psutil.Process(second.pid).cmdline()
        assert MONITORING <= {row.name for row in stack.status() if row.state == "running"}
        capsys.readouterr()
        assert main(["status", "p1"]) == 0
        out = capsys.readouterr().out
        assert "alerts: none active" in out and "prometheus" in out
    finally:
        assert main(["down"]) == 0
    assert {row.state for row in stack.status()} == {"stopped"} and stack.supervisor() is None
