"""The native runner's side of monitoring: log rotation, `logs --grep`, and the figures `status` shows."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from services.stack.cli import main
from services.stack.figures import from_page, quantile
from services.stack.logrotate import rotate_if_large, rotate_logs

WRITER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
for i in range(int(sys.argv[2])):
    os.write(fd, f"line {i:06d} {'x' * 60}\\n".encode())
    if i % 50 == 0:
        time.sleep(0.001)
"""


def test_copy_truncate_keeps_an_appending_writer_writing_into_the_live_file(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "20000"])
    rotations = 0
    try:
        while writer.poll() is None:
            rotations += rotate_if_large(log, 64 * 1024, 50)
            time.sleep(0.01)
    finally:
        writer.wait(30)
    assert rotations >= 3
    files = [log.with_name(f"svc.log.{i}") for i in range(rotations, 0, -1)] + [log]
    per_file = [[int(line.split()[1]) for line in path.read_text().splitlines()] for path in files]
    lines = [line for path in files for line in path.read_text().splitlines()]
    numbers = [n for numbers in per_file for n in numbers]
    assert numbers == sorted(numbers)  # oldest file first, in order, no line torn
    assert all(len(line) == len(lines[0]) for line in lines)
    # copy-truncate can lose only the lines written in the instant between its last read and the truncation
    # (how many depends on how long the machine held the rotating process there): never inside a file
    for kept in per_file:
        assert kept == list(range(kept[0], kept[0] + len(kept))) if kept else True
    assert numbers[-1] == 19999 and len(numbers) >= 0.95 * 20000


def test_backups_shift_and_the_oldest_goes(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    for round_ in range(4):
        log.write_text(f"round {round_}\n" * 100)
        assert rotate_logs([log, tmp_path / "missing.log"], 100, 2) == [log]
    assert log.read_text() == ""
    assert (tmp_path / "a.log.1").read_text().startswith("round 3")
    assert (tmp_path / "a.log.2").read_text().startswith("round 2")
    assert not (tmp_path / "a.log.3").exists()
    log.write_text("small\n")
    assert rotate_logs([log], 100, 2) == []
    assert rotate_if_large(log, 1, 0) and log.read_text() == ""  # no backups: truncated only


@pytest.fixture
def stack_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    doc = {"x-native": {"data_dir": "${DATA_DIR}"},
           "services": {"web": {"image": "x", "command": ["python", "-m", "http.server"],
                                "ports": ["127.0.0.1:${WEB_PORT:-8123}:${WEB_PORT:-8123}"]}}}
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.p1.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_logs_grep_reads_rotated_files_oldest_first(stack_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = stack_root / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "web.log.2").write_text('{"request_id": "abc", "message": "oldest"}\nnoise\n')
    (logs / "web.log.1").write_text('{"request_id": "abc", "message": "older"}\n')
    (logs / "web.log").write_text('noise\n{"request_id": "abc", "message": "newest"}\n{"request_id": "xyz"}\n')
    assert main(["--root", str(stack_root), "logs", "web", "--grep", "abc"]) == 0
    assert [line.split('"message": ')[1] for line in capsys.readouterr().out.splitlines()] == [
        '"oldest"}', '"older"}', '"newest"}']
    assert main(["--root", str(stack_root), "logs", "web", "--grep", "abc", "-n", "1"]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert main(["--root", str(stack_root), "logs", "web", "--grep", "nothing-like-it"]) == 0
    assert capsys.readouterr().out == ""


def test_quantile_matches_prometheus_histogram_quantile() -> None:
    buckets = {0.1: 0.0, 0.5: 50.0, 1.0: 90.0, 5.0: 100.0, math.inf: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.95, buckets) == pytest.approx(1.0 + 4.0 * 5 / 10)
    assert quantile(0.99, {1.0: 10.0, math.inf: 20.0}) == 1.0  # in the +Inf bucket: the highest bound
    assert quantile(0.95, {1.0: 0.0, math.inf: 0.0}) is None


def test_figures_from_one_metrics_page() -> None:
    page = "\n".join([
        "# TYPE http_requests_total counter",
        'http_requests_total{handler="/a",method="GET",status="200"} 90.0',
        'http_requests_total{handler="/a",method="GET",status="503"} 10.0',
        "# TYPE http_request_duration_seconds histogram",
        'http_request_duration_seconds_bucket{handler="/a",le="0.1",method="GET"} 50.0',
        'http_request_duration_seconds_bucket{handler="/a",le="1.0",method="GET"} 100.0',
        'http_request_duration_seconds_bucket{handler="/a",le="+Inf",method="GET"} 100.0',
        'http_request_duration_seconds_count{handler="/a",method="GET"} 100.0',
        'http_request_duration_seconds_sum{handler="/a",method="GET"} 20.0',
        "# TYPE gen_ai_server_time_per_output_token_seconds histogram",
        'gen_ai_server_time_per_output_token_seconds_bucket{le="+Inf"} 4.0',
        "gen_ai_server_time_per_output_token_seconds_count 4.0",
        "gen_ai_server_time_per_output_token_seconds_sum 0.08",
    ]) + "\n"
    figures = from_page(page)
    assert figures.error_ratio == pytest.approx(0.1)
    assert figures.p95_s == pytest.approx(0.1 + 0.9 * 45 / 50)
    assert figures.tokens_per_s == pytest.approx(50.0)
    assert from_page("") == type(figures)()


def test_status_without_running_services_shows_no_figures(stack_root: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert main(["--root", str(stack_root), "status"]) == 0
    out = capsys.readouterr().out
    assert "tok/s" not in out and "alerts: not watched" in out


def test_rotation_settings_reach_the_supervisor(stack_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.stack.runner import Stack
    from services.stack.supervisor import Supervisor

    monkeypatch.setenv("LOG_MAX_BYTES", "2048")
    monkeypatch.setenv("LOG_BACKUPS", "3")
    stack = Stack("p1", root=stack_root)
    supervisor = Supervisor(stack, clock=lambda: 100.0)
    log = stack.services["web"].log_path
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"x" * 4096)
    (log.parent / "supervisor.log").write_bytes(b"y" * 100)
    supervisor.rotate()
    assert log.stat().st_size == 0 and (log.parent / "web.log.1").stat().st_size == 4096
    assert (log.parent / "supervisor.log").stat().st_size == 100
    assert (supervisor.log_max_bytes, supervisor.log_backups) == (2048, 3)
    assert os.path.exists(log)


def test_a_page_that_is_not_prometheus_text_is_left_out() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from services.stack.figures import from_services

    class Plain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"ok" if self.path == "/plain/metrics" else b'http_requests_total{status="200"} 3.0\n'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        figures = from_services({"plain": f"{base}/plain/metrics", "real": f"{base}/real/metrics"})
    finally:
        server.shutdown()
    assert set(figures) == {"real"} and figures["real"].error_ratio == 0.0
