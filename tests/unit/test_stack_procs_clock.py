"""A clock step (NTP, a resumed VM) moves psutil's create_time; the runner still finds its processes."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from services.stack.procs import RunningService, State, Supervised, process_of, started_since_boot


def test_a_recorded_process_is_found_after_a_clock_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    me = psutil.Process()
    entry = RunningService("self", me.pid, me.create_time(), [], "log", ["x"], since_boot=started_since_boot(me))
    supervisor = Supervised(me.pid, me.create_time(), started_since_boot(me))
    state = State(tmp_path / "stack.json", {"self": entry}, supervisor)
    state.save()
    loaded = State.load(state.path)
    import psutil._pslinux as linux

    real = linux.boot_time
    monkeypatch.setattr(linux, "boot_time", lambda: real() + 3.0)
    assert process_of(loaded.services["self"]) is not None
    assert loaded.supervisor is not None and process_of(loaded.supervisor) is not None
    # without the boot-relative start, the same process looks gone (the check state files before it get)
    old_style = RunningService("self", me.pid, entry.create_time, [], "log", ["x"])
    assert process_of(old_style) is None


def test_another_process_on_the_same_pid_is_not_taken_for_it(tmp_path: Path) -> None:
    me = psutil.Process(os.getpid())
    stranger = RunningService("x", me.pid, me.create_time() - 60, [], "log", ["x"],
                              since_boot=started_since_boot(me) - 60)
    assert process_of(stranger) is None
