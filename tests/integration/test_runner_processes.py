"""The runner against small real HTTP servers: order, health gating, failures, stop and no orphans."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from services.stack.cli import main
from services.stack.runner import ServiceFailed, Stack
from tests.support.stackfiles import HEALTHY, all_gone, make_stack, tree, web

pytestmark = pytest.mark.integration

class Tracker:
    """Records every process a service had while it was starting (for the orphan checks)."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.pids, self.events = stack, set[int](), list[tuple[str, str]]()

    def __call__(self, name: str, event: str) -> None:
        self.events.append((name, event))
        for row in self.stack.status():
            if row.pid and row.state == "running":
                self.pids.update(tree(row.pid))


def two_services(tmp_path: Path, **backend_extra: object) -> tuple[Path, dict[str, str]]:
    return make_stack(tmp_path, {
        "backend": web("BACKEND_PORT", environment={"READY_AFTER": "0.5", "SPAWN_CHILD": "1"}, **backend_extra),
        "front": web("FRONT_PORT", environment={"ANSWER": "http://backend:${BACKEND_PORT}/v1"},
                     depends_on={"backend": HEALTHY}),
    })


def test_up_status_down_leaves_nothing_behind(tmp_path: Path) -> None:
    compose, env = two_services(tmp_path)
    stack = Stack.from_file(compose, env=env)
    events: list[tuple[str, str]] = []
    assert stack.up(on_event=lambda name, event: events.append((name, event))) == ["backend", "front"]
    # the dependent starts only after its dependency reported healthy
    assert events.index(("backend", "healthy")) < next(i for i, e in enumerate(events) if e[0] == "front")
    answer = urllib.request.urlopen(f"http://127.0.0.1:{env['FRONT_PORT']}/", timeout=5).read().decode()
    assert answer == f"http://127.0.0.1:{env['BACKEND_PORT']}/v1"  # the compose hostname was mapped
    rows = {row.name: row for row in stack.status()}
    assert {(r.state, r.health) for r in rows.values()} == {("running", "healthy")}
    pids = tree(rows["backend"].pid) + tree(rows["front"].pid)
    assert len(pids) == 4  # two servers plus the backend's two helpers

    assert stack.up() == []  # idempotent: running services are left alone
    assert {row.name: row.pid for row in stack.status()} == {n: r.pid for n, r in rows.items()}

    assert stack.down() == ["front", "backend"]  # dependents stop first
    assert all_gone(pids)
    assert not stack.state_path.exists()
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]
    assert "serving on" in (tmp_path / "data" / "logs" / "backend.log").read_text()


def test_a_service_that_dies_fails_up_and_stops_the_rest(tmp_path: Path) -> None:
    compose, env = make_stack(tmp_path, {
        "backend": web("BACKEND_PORT", environment={"SPAWN_CHILD": "1"}),
        "broken": {**web("FRONT_PORT", depends_on={"backend": HEALTHY}),
                   "command": ["python", "-c", "import sys; print('boom: MODEL_FILE missing'); sys.exit(3)"]},
    })
    stack = Stack.from_file(compose, env=env)
    tracker = Tracker(stack)
    with pytest.raises(ServiceFailed) as caught:
        stack.up(on_event=tracker)
    assert caught.value.service == "broken"
    assert "exited during start-up" in str(caught.value)
    assert "boom: MODEL_FILE missing" in caught.value.log_tail
    assert ("backend", "healthy") in tracker.events
    assert len(tracker.pids) >= 3 and all_gone(list(tracker.pids))  # backend, its helpers, broken
    assert not stack.state_path.exists()


def test_a_service_that_never_gets_healthy_times_out(tmp_path: Path) -> None:
    compose, env = make_stack(tmp_path, {
        "backend": web("BACKEND_PORT", environment={"READY_AFTER": "600"}, **{"x-native": {"start_timeout": 1}}),
    })
    stack = Stack.from_file(compose, env=env)
    tracker = Tracker(stack)
    with pytest.raises(ServiceFailed, match="was not healthy within 1 s") as caught:
        stack.up(on_event=tracker)
    assert "serving on" in caught.value.log_tail
    assert tracker.pids and all_gone(list(tracker.pids))


def test_down_from_another_runner_kills_after_the_deadline(tmp_path: Path) -> None:
    compose, env = make_stack(tmp_path, {"backend": web("BACKEND_PORT", environment={"IGNORE_TERM": "1"})})
    Stack.from_file(compose, env=env).up()
    other = Stack.from_file(compose, env=env)  # a fresh process would see only the state file
    pid = other.status()[0].pid
    assert pid is not None
    events: list[tuple[str, str]] = []
    assert other.down(on_event=lambda n, e: events.append((n, e)), timeout=1) == ["backend"]
    assert events == [("backend", "killed after timeout")]
    assert all_gone([pid])


def test_cli_up_status_logs_down(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    compose, env = two_services(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = ["--root", str(tmp_path)]
    assert main([*root, "up", "p1"]) == 0
    out = capsys.readouterr().out
    assert "p1 is up." in out and f"http://127.0.0.1:{env['FRONT_PORT']}" in out
    assert main([*root, "status"]) == 0
    out = capsys.readouterr().out
    assert out.count("running") == 2 and out.count("healthy") == 2
    pids = [pid for row in Stack.from_file(tmp_path / "docker" / "compose.p1.yml").status() if row.pid
            for pid in tree(row.pid)]
    assert main(["logs", "backend", "-n", "1", *root]) == 0
    assert "serving on" in capsys.readouterr().out
    assert main([*root, "down"]) == 0
    assert "front: stopped" in capsys.readouterr().out
    assert main([*root, "down"]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert len(pids) == 4 and all_gone(pids)


def test_cli_reports_a_failed_start(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, env = make_stack(tmp_path, {
        "backend": {**web("BACKEND_PORT"), "command": ["python", "-c", "raise SystemExit('bad [config]')"]},
    })
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["--root", str(tmp_path), "up", "p1"]) == 1
    out = capsys.readouterr().out
    assert "backend exited during start-up" in out and "bad [config]" in out
