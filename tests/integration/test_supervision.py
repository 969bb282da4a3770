"""The supervisor `ai-suite up` leaves behind: crashes, kills and hangs are restarted as `restart:` says."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from services.stack.cli import main
from services.stack.runner import ServiceStatus, Stack
from tests.support.stackfiles import HEALTHY, all_gone, make_stack, tree, web

pytestmark = pytest.mark.integration

FAST = {"supervise": {"backoff_initial": 0.2, "backoff_max": 1, "crash_loop_restarts": 3,
                      "crash_loop_window": 60}}
QUICK_HEALTH = {"interval": "0.5s", "retries": 2}


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Stack]]:
    """`start(services)`: write the compose file, `ai-suite up p1` it; everything is stopped afterwards."""
    started: list[Stack] = []

    def start(services: dict) -> Stack:
        compose, env = make_stack(tmp_path, services, **FAST)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert main(["--root", str(tmp_path), "up", "p1"]) == 0
        stack = Stack.from_file(compose, root=tmp_path)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        pids = [pid for row in stack.status() if row.pid and row.state == "running" for pid in tree(row.pid)]
        stack.down(timeout=5)
        assert stack.supervisor() is None and all_gone(pids)


def rows(stack: Stack) -> dict[str, ServiceStatus]:
    return {row.name: row for row in stack.status()}


def wait_for(stack: Stack, test: Callable[[dict[str, ServiceStatus]], bool], seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = rows(stack)
        if test(current):
            return current
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {rows(stack)}")


def test_a_killed_service_comes_back_healthy_and_status_says_why(
        suite: Callable[..., Stack], capsys: pytest.CaptureFixture[str]) -> None:
    stack = suite({"backend": web("BACKEND_PORT", restart="unless-stopped")})
    first = rows(stack)["backend"].pid
    assert first is not None and stack.supervisor() is not None
    started = time.monotonic()
    os.kill(first, signal.SIGKILL)
    back = wait_for(stack, lambda r: r["backend"].state == "running" and r["backend"].health == "healthy"
                    and r["backend"].pid != first)["backend"]
    assert time.monotonic() - started < 30
    assert back.restarts == 1 and back.last_exit == "killed by SIGKILL"
    capsys.readouterr()
    assert main(["--root", str(stack.root), "status"]) == 0
    out = capsys.readouterr().out
    assert "killed by SIGKILL" in out and "supervisor: pid" in out


def test_restart_no_leaves_a_crashed_service_down(suite: Callable[..., Stack]) -> None:
    stack = suite({"backend": web("BACKEND_PORT", restart="no", environment={"CRASH_AFTER": "1.5"})})
    row = wait_for(stack, lambda r: r["backend"].state == "exited" and r["backend"].last_exit != "")["backend"]
    assert row.last_exit == "exit code 3" and row.restarts == 0


def test_a_service_that_keeps_crashing_is_left_in_crash_loop(suite: Callable[..., Stack]) -> None:
    stack = suite({"backend": web("BACKEND_PORT", restart="on-failure", environment={"CRASH_AFTER": "1.5"})})
    row = wait_for(stack, lambda r: r["backend"].state == "crash-loop", seconds=60)["backend"]
    assert row.restarts == FAST["supervise"]["crash_loop_restarts"]
    assert row.last_exit.startswith("exit code 3") and "crash loop" in row.last_exit


def test_a_hung_service_is_killed_and_restarted(suite: Callable[..., Stack]) -> None:
    service = web("BACKEND_PORT", restart="always")
    service["healthcheck"] = {**service["healthcheck"], **QUICK_HEALTH}
    stack = suite({"backend": service})
    hung = rows(stack)["backend"].pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    try:
        back = wait_for(stack, lambda r: r["backend"].pid != hung and r["backend"].health == "healthy")["backend"]
    finally:
        if psutil.pid_exists(hung):
            os.kill(hung, signal.SIGCONT)
    assert back.restarts == 1 and back.last_exit.startswith("hung: 2 health checks failed")
    assert all_gone([hung])


def test_a_service_the_user_stopped_stays_stopped(suite: Callable[..., Stack],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    stack = suite({"backend": web("BACKEND_PORT", restart="always"),
                   "front": web("FRONT_PORT", restart="always", depends_on={"backend": HEALTHY})})
    front = rows(stack)["front"].pid
    assert main(["--root", str(stack.root), "stop", "front"]) == 0
    assert "front: stopped" in capsys.readouterr().out
    # several supervisor rounds (0.5 s each) pass; none may bring it back
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert rows(stack)["front"].state == "stopped"
        time.sleep(0.2)
    assert front is not None and all_gone([front]) and rows(stack)["backend"].state == "running"
    assert main(["--root", str(stack.root), "up", "p1"]) == 0
    assert rows(stack)["front"].health == "healthy"


def test_a_dependent_restarts_only_once_its_dependency_is_healthy(suite: Callable[..., Stack]) -> None:
    stack = suite({"backend": web("BACKEND_PORT", restart="always", environment={"READY_AFTER": "2"}),
                   "front": web("FRONT_PORT", restart="always", depends_on={"backend": HEALTHY})})
    before = rows(stack)
    for name in ("front", "backend"):
        pid = before[name].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    wait_for(stack, lambda r: all(r[n].health == "healthy" and r[n].pid != before[n].pid for n in r))
    events = (stack.data_dir / "logs" / "supervisor.log").read_text().splitlines()
    backend_healthy = next(i for i, line in enumerate(events) if "backend: healthy again" in line)
    front_restarted = next(i for i, line in enumerate(events) if "front: restarted" in line)
    assert backend_healthy < front_restarted
