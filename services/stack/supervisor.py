"""Native supervision: restart a service that exits, crashes or hangs, as its compose `restart:` policy says.

`ai-suite up` runs this module as a detached process. It starts the phase itself (so every service is its
child and its exit status is known), reports progress as JSON lines on stdout until the phase is up, then
keeps watching: a dead service comes back after a backoff once its dependencies are healthy, a service whose
health keeps failing is killed and comes back too, and one that keeps dying is left in `crash-loop`.
A service the user stopped (`ai-suite stop`, `ai-suite down`) has no entry in the state file, so it stays down.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from services.stack.logrotate import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, rotate_logs
from services.stack.native import RESTART_ON_FAILURE, NativeService
from services.stack.procs import RunningService, State, Supervised, locked, started_since_boot, stop_group
from services.stack.replicas import parse_replicas
from services.stack.runner import NATIVE_KEY, ServiceFailed, Stack, StackError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
PROBE_TIMEOUT = 2.0
ROTATE_EVERY_S = 5.0


@dataclass(frozen=True)
class SupervisePolicy:
    """Backoff between restarts and when to give up; compose files may tune it under `x-native.supervise`."""

    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    crash_loop_restarts: int = 5
    crash_loop_window: float = 300.0

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SupervisePolicy:
        given = (doc.get(NATIVE_KEY) or {}).get("supervise") or {}
        return cls(**{key: type(getattr(cls, key))(value) for key, value in given.items()})


def wants_restart(policy: str, exit_code: int | None, restarts: int) -> bool:
    """Compose's rule: `always`/`unless-stopped` restart, `on-failure[:N]` only a non-zero exit, `no` never."""
    if policy in ("always", "unless-stopped"):
        return True
    match = RESTART_ON_FAILURE.fullmatch(policy)
    if match is None:
        return False
    limit = match.group(2)
    return exit_code != 0 and (limit is None or restarts < int(limit))


def exit_reason(exit_code: int | None) -> str:
    if exit_code is None:
        return "exited (status unknown: it was not started by this supervisor)"
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


@dataclass
class _Watch:
    """What the supervisor remembers of one service between ticks."""

    backoff: float
    started: float
    history: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    next_probe: float = 0.0
    failures: int = 0
    healthy_since: float | None = None
    killed_because: str | None = None


class Supervisor:
    """Watches the services recorded in the stack's state file; `tick()` does one round."""

    def __init__(self, stack: Stack, policy: SupervisePolicy | None = None,
                 notify: Callable[[str, str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.stack = stack
        self.policy = policy or SupervisePolicy.from_doc(stack.doc)
        self.notify = notify or (lambda name, event: log.info("%s: %s", name, event))
        self.clock = clock
        self._watches: dict[str, _Watch] = {}
        self._unsaved: dict[str, RunningService] = {}  # what a pass could not write (a full disk)
        variables = stack.variables
        self.log_max_bytes = int(variables.get("LOG_MAX_BYTES") or DEFAULT_MAX_BYTES)
        self.log_backups = int(variables.get("LOG_BACKUPS") or DEFAULT_BACKUPS)
        self._next_rotation = 0.0

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            self.tick()
            self.rotate()

    def rotate(self) -> None:
        """Every few seconds, rotate the service logs (and the supervisor's) that reached LOG_MAX_BYTES."""
        now = self.clock()
        if now < self._next_rotation:
            return
        self._next_rotation = now + ROTATE_EVERY_S
        paths = [spec.log_path for spec in self.stack.services.values()]
        paths.append(self.stack.data_dir / "logs" / "supervisor.log")
        for path in rotate_logs(paths, self.log_max_bytes, self.log_backups):
            log.info("rotated %s", path)

    def tick(self) -> None:
        with locked(self.stack.state_path.with_suffix(".lock")):
            state = State.load(self.stack.state_path)
            for name, kept in self._unsaved.items():
                if name in state.services:  # not stopped by the user since
                    state.services[name] = kept
            changed = bool(self._unsaved)
            for name in self.stack.order:
                entry = state.services.get(name)
                if entry is None:  # stopped by the user, or never started
                    self._watches.pop(name, None)
                    continue
                try:
                    changed |= self._step(self.stack.services[name], entry, state)
                except OSError as exc:  # its log cannot be written: a full disk; the next pass tries again
                    log.error("%s: %s", name, exc)
            if changed:
                self._save(state)

    def _save(self, state: State) -> None:
        try:
            state.save()
        except OSError as exc:
            # Keep what this pass learnt, above all the pid of a service it restarted, and write it on a later
            # pass; reading the old file instead would take that process for dead and start it a second time.
            self._unsaved = dict(state.services)
            log.error("cannot write %s (%s); keeping the supervisor's view in memory", state.path, exc)
        else:
            self._unsaved = {}

    def _watch(self, name: str) -> _Watch:
        if name not in self._watches:
            self._watches[name] = _Watch(self.policy.backoff_initial, self.clock())
        return self._watches[name]

    def _step(self, spec: NativeService, entry: RunningService, state: State) -> bool:
        if entry.phase in ("exited", "crash-loop"):
            return False
        watch = self._watch(spec.name)
        if self.stack.is_alive(spec.name, state):
            return self._check_running(spec, entry, watch)
        if watch.restart_at is None:
            return self._on_exit(spec, entry, watch)
        if self.clock() >= watch.restart_at and self._dependencies_healthy(spec, state):
            self._restart(spec, entry, watch, state)
            return True
        return False

    def _check_running(self, spec: NativeService, entry: RunningService, watch: _Watch) -> bool:
        now = self.clock()
        if now < watch.next_probe:
            return False
        watch.next_probe = now + (spec.watch.interval if entry.phase == "running" else POLL_SECONDS)
        healthy, why = self.stack.probe(spec, PROBE_TIMEOUT)
        if healthy:
            watch.failures = 0
            if watch.healthy_since is None:
                watch.healthy_since = now
            if now - watch.healthy_since >= self.policy.backoff_max:
                watch.backoff = self.policy.backoff_initial  # it has stayed up: the next crash starts afresh
            if entry.phase == "restarting":
                entry.phase = "running"
                self.notify(spec.name, "healthy again")
                return True
            return False
        watch.healthy_since = None
        if entry.phase == "restarting":
            if now - watch.started > spec.start_timeout:
                self._kill(spec, entry, watch, f"not healthy within {spec.start_timeout:.0f} s of its restart")
            return False
        if now - watch.started < spec.watch.start_period:
            return False
        watch.failures += 1
        if watch.failures >= spec.watch.retries:
            self._kill(spec, entry, watch,
                       f"hung: {watch.failures} health checks failed {spec.watch.interval:g} s apart ({why})")
        return False

    def _kill(self, spec: NativeService, entry: RunningService, watch: _Watch, reason: str) -> None:
        self.notify(spec.name, f"{reason}; killing it")
        watch.killed_because = reason
        stop_group(entry.pid, timeout=5.0)

    def _on_exit(self, spec: NativeService, entry: RunningService, watch: _Watch) -> bool:
        code = self.stack.exit_code(spec.name)
        # What the dead process started lives on in its group (PostgreSQL's server under its wrapper, killed
        # with SIGKILL) and would hold the port and the data folder: it goes before anything is restarted.
        if stop_group(entry.pid, timeout=5.0):
            self.notify(spec.name, "what it left running had to be killed")
        entry.last_exit = watch.killed_because or exit_reason(code)
        watch.killed_because = None
        now = self.clock()
        while watch.history and now - watch.history[0] > self.policy.crash_loop_window:
            watch.history.popleft()
        if not wants_restart(spec.restart, code, entry.restarts):
            entry.phase = "exited"
            self.notify(spec.name, f"{entry.last_exit}; restart policy {spec.restart!r} leaves it stopped")
        elif len(watch.history) >= self.policy.crash_loop_restarts:
            entry.phase = "crash-loop"
            entry.last_exit += (f"; crash loop: {len(watch.history)} restarts within "
                                f"{self.policy.crash_loop_window:g} s, given up")
            self.notify(spec.name, entry.last_exit)
        else:
            entry.phase = "restarting"
            watch.restart_at = now + watch.backoff
            self.notify(spec.name, f"{entry.last_exit}; restarting in {watch.backoff:g} s")
            watch.backoff = min(watch.backoff * 2, self.policy.backoff_max)
        return True

    def _dependencies_healthy(self, spec: NativeService, state: State) -> bool:
        for dependency in spec.depends_on:
            entry = state.services.get(dependency)
            if entry is None or entry.phase != "running" or not self.stack.is_alive(dependency, state):
                return False
            if not self.stack.probe(self.stack.services[dependency], PROBE_TIMEOUT)[0]:
                return False
        return True

    def _restart(self, spec: NativeService, entry: RunningService, watch: _Watch, state: State) -> None:
        self.stack.launch(spec, state, previous=entry, save=False)  # tick() saves the pass once
        fresh = state.services[spec.name]
        fresh.restarts, fresh.last_exit, fresh.phase = entry.restarts + 1, entry.last_exit, "restarting"
        now = self.clock()
        watch.history.append(now)
        watch.restart_at, watch.started, watch.failures, watch.next_probe = None, now, 0, now
        self.notify(spec.name, f"restarted (pid {fresh.pid}, restart {fresh.restarts})")


# -- the daemon ----------------------------------------------------------------------------------------


def _emit(stream: Any, **event: Any) -> None:
    stream.write(json.dumps(event) + "\n")
    stream.flush()


def daemon(stack: Stack, phase: str) -> int:
    """Start the phase, report on stdout until it is up, then supervise until SIGTERM."""
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    log_path = stack.data_dir / "logs" / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=log_path, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with open(log_path, "ab") as log_file:  # nothing may write to the caller's terminal once it has gone
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:  # `up` stops what it started when interrupted
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    me = psutil.Process()
    stack.record_supervisor(Supervised(me.pid, me.create_time(), started_since_boot(me)))
    try:
        stack.up(on_event=lambda name, event: _emit(report, service=name, event=event))
    except ServiceFailed as exc:
        _emit(report, failed=exc.service, reason=exc.reason, log=str(exc.log_path), tail=exc.log_tail)
        return 1
    except (StackError, KeyboardInterrupt) as exc:
        _emit(report, error=str(exc) or "interrupted")
        return 1
    finally:
        starting = False
    _emit(report, up=phase, urls=stack.urls())
    report.close()
    Supervisor(stack).run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack.supervisor", description=__doc__)
    parser.add_argument("phase")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--env-file", type=Path)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--monitoring", action="store_true")
    parser.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N")
    args = parser.parse_args(argv)
    stack = Stack(args.phase, root=args.root, env_file=args.env_file, gpu=args.gpu, monitoring=args.monitoring,
                  replicas=parse_replicas(args.replicas))
    return daemon(stack, args.phase)


if __name__ == "__main__":
    sys.exit(main())
