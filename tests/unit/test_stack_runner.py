"""Runner pieces that need no long-lived services: ports, state, variables, the probe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import yaml

from services.common import probe as probe_module
from services.stack.procs import RunningService, State, Supervised, port_is_free, port_owner, process_of, tail
from services.stack.runner import PortInUse, Stack, StackError, compose_files, load_variables
from tests.support.procs import free_port


def tiny_compose(tmp_path: Path, port: int) -> Path:
    doc = {
        "x-native": {"data_dir": "${DATA_DIR:-./data}"},
        "services": {"web": {
            "image": "x", "command": ["python", "-m", "http.server", "${WEB_PORT}", "--bind", "127.0.0.1"],
            "ports": ["127.0.0.1:${WEB_PORT}:${WEB_PORT}"],
            "healthcheck": {"test": ["CMD", "python", "-m", "services.common.probe", "http://127.0.0.1:${WEB_PORT}/"]},
        }},
    }
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_port_in_use_names_port_and_owner_and_starts_nothing(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    stack = Stack.from_file(tiny_compose(tmp_path, port), env={"WEB_PORT": str(port), "DATA_DIR": str(tmp_path)})
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(PortInUse) as caught:
        stack.up()
    message = str(caught.value)
    assert f"port {port} (web)" in message
    assert f"pid {os.getpid()} ({psutil.Process().name()})" in message
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    assert not stack.state_path.exists()


def test_port_helpers(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert not port_is_free("127.0.0.1", port)
    assert port_owner(port).startswith(f"pid {os.getpid()} ")
    unused = free_port()
    assert port_is_free("127.0.0.1", unused)
    assert port_owner(unused) == "unknown process"


def test_state_round_trip_and_pid_reuse_guard(tmp_path: Path) -> None:
    me = psutil.Process()
    state = State(tmp_path / "run" / "stack.json")
    state.services["self"] = RunningService("self", me.pid, me.create_time(), [1], "log", ["x"], None, 0.0, 1)
    state.save()
    loaded = State.load(state.path)
    assert loaded.services["self"] == state.services["self"]
    assert process_of(loaded.services["self"]) is not None
    # same pid, different start time: a reused pid must not count as our service
    loaded.services["self"].create_time -= 100
    assert process_of(loaded.services["self"]) is None
    assert loaded.next_seq() == 2
    loaded.services.clear()
    loaded.save()
    assert not state.path.exists()


def test_corrupt_state_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{not json", encoding="utf-8")
    assert State.load(path).services == {}


def test_dead_process_in_state_is_not_running(tmp_path: Path) -> None:
    port = free_port()
    stack = Stack.from_file(tiny_compose(tmp_path, port), env={"WEB_PORT": str(port), "DATA_DIR": str(tmp_path)})
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(done.stdout)
    state = State(stack.state_path)
    state.services["web"] = RunningService("web", pid, 1.0, [port], "log", ["x"])
    state.save()
    assert [(row.name, row.state) for row in stack.status()] == [("web", "exited")]
    assert stack.down() == []
    assert not stack.state_path.exists()


def test_variables_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=file\nB=file\nC=file\n", encoding="utf-8")
    monkeypatch.setenv("B", "process")
    monkeypatch.setenv("C", "process")
    variables = load_variables({"C": "explicit"}, env_file)
    assert (variables["A"], variables["B"], variables["C"]) == ("file", "process", "explicit")


def test_data_dir_and_explicit_env_file(tmp_path: Path) -> None:
    port = free_port()
    compose = tiny_compose(tmp_path, port)
    assert Stack.from_file(compose, env={"WEB_PORT": "1", "DATA_DIR": "rel"}).data_dir == tmp_path / "rel"
    with pytest.raises(StackError, match="env file not found"):
        Stack.from_file(compose, env={"WEB_PORT": "1"}, env_file=tmp_path / "missing.env")


def test_phase_files() -> None:
    root = Path("/r")
    assert compose_files("p1", root) == [root / "docker" / "compose.p1.yml"]
    assert compose_files("p1", root, gpu=True)[-1] == root / "docker" / "compose.p1.gpu.yml"
    with pytest.raises(StackError, match="unknown phase"):
        compose_files("p9", root)


def test_phase_one_maps_onto_the_test_directories(tmp_path: Path) -> None:
    env = {"INFERENCE_PORT": "18001", "API_GATEWAY_PORT": "18000", "DATA_DIR": str(tmp_path / "d"),
           "MODELS_DIR": str(tmp_path / "m")}
    stack = Stack("p1", env=env)
    chat, gateway = stack.services["inference-chat"], stack.services["api-gateway"]
    assert stack.order == ["inference-chat", "api-gateway"]
    assert stack.data_dir == tmp_path / "d"
    assert chat.env["MODELS_DIR"] == str(tmp_path / "m") and chat.env["DATA_DIR"] == str(tmp_path / "d")
    assert chat.health_url == "http://127.0.0.1:18001/health"
    assert gateway.env["CHAT_API_BASE"] == "http://127.0.0.1:18001/v1"
    assert gateway.log_path == tmp_path / "d" / "logs" / "api-gateway.log"
    assert stack.urls()["OpenAI base URL"] == "http://127.0.0.1:18000/v1"


def test_tail_reads_from_offset(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old 1\nold 2\n", encoding="utf-8")
    offset = log.stat().st_size
    with log.open("a", encoding="utf-8") as handle:
        handle.writelines(f"new {i}\n" for i in range(30))
    assert tail(log, 3) == "new 27\nnew 28\nnew 29"
    assert tail(log, 100, offset).splitlines()[0] == "new 0"
    assert tail(tmp_path / "absent.log") == ""


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_probe_exit_codes() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert probe_module.main([f"{base}/ok"]) == 0
        assert probe_module.probe(f"{base}/loading") == (False, "HTTP 503")
        assert probe_module.main([f"{base}/loading"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    healthy, reason = probe_module.probe(f"http://127.0.0.1:{free_port()}/", timeout=1)
    assert not healthy and "refused" in reason.lower()
    cli = subprocess.run([sys.executable, "-m", "services.common.probe", "not-a-url"], capture_output=True, text=True)
    assert cli.returncode == 1 and "unhealthy" in cli.stderr


def test_state_file_is_json_with_version(tmp_path: Path) -> None:
    state = State(tmp_path / "s.json")
    state.services["a"] = RunningService("a", 1, 1.0, [], "l", [])
    state.save()
    assert json.loads(state.path.read_text())["version"] == 1


def test_down_stops_everything_when_the_state_file_cannot_be_written(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A full data disk must not keep `ai-suite down` from stopping the suite."""
    port = free_port()
    stack = Stack.from_file(tiny_compose(tmp_path, port), env={"WEB_PORT": str(port), "DATA_DIR": str(tmp_path)})
    stack.up()
    web = process_of(State.load(stack.state_path).services["web"])
    assert web is not None
    watcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands in for the supervisor
    stack.record_supervisor(Supervised(watcher.pid, psutil.Process(watcher.pid).create_time()))

    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    events: list[tuple[str, str]] = []
    try:
        stopped = stack.down(on_event=lambda name, event: events.append((name, event)))
    finally:
        monkeypatch.undo()
        if watcher.poll() is None:
            watcher.kill()
        watcher.wait(10)
    assert stopped == ["web"]
    assert not web.is_running() or web.status() == psutil.STATUS_ZOMBIE
    assert watcher.returncode is not None
    assert events[0][0] == "supervisor" and "No space left on device" in events[0][1]
    assert ("state", events[-1][1]) == events[-1] and "No space left on device" in events[-1][1]
    assert not list(stack.state_path.parent.glob("*.tmp"))
    # the stale entries are recognised as gone: nothing counts as running
    assert all(process_of(entry) is None for entry in State.load(stack.state_path).services.values())
