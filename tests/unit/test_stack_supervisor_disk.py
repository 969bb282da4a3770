"""The supervisor on a full disk: it keeps watching, and a service it restarted is not started a second time."""

from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path

import pytest
import yaml

from services.stack.procs import State, stop_group
from services.stack.runner import Stack
from services.stack.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    doc = {"x-native": {"data_dir": "${DATA_DIR}"},
           "services": {"worker": {"image": "x", "command": SLEEPER, "restart": "unless-stopped"}}}
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.p1.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return Stack("p1", root=tmp_path)


def test_a_restart_the_state_file_cannot_record_is_remembered_until_it_can(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    state = State.load(stack.state_path)
    stack.launch(stack.services["worker"], state)
    first = state.services["worker"].pid
    started: list[int] = []
    try:
        stack._children["worker"].send_signal(signal.SIGKILL)
        stack._children["worker"].wait(10)
        now = [1000.0]
        supervisor = Supervisor(stack, notify=lambda name, event: None, clock=lambda: now[0])

        def disk_full(self: State) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

        monkeypatch.setattr(State, "save", disk_full)
        for _ in range(4):  # the exit is seen, the backoff passes, the restart, then passes that find it alive
            supervisor.tick()
            entry = State.load(stack.state_path).services["worker"]
            assert entry.pid == first  # nothing could be written
            child = stack._children["worker"]
            if child.pid != first and child.pid not in started:
                started.append(child.pid)
            now[0] += 5
        assert len(started) == 1 and child.poll() is None

        monkeypatch.undo()  # space is back: the next pass writes what the supervisor kept
        supervisor.tick()
        recorded = State.load(stack.state_path).services["worker"]
        assert (recorded.pid, recorded.restarts, recorded.phase) == (started[0], 1, "running")
        assert "SIGKILL" in recorded.last_exit
    finally:
        for pid in [first, *started]:
            stop_group(pid, timeout=5.0)
