"""The native runner: start a compose phase as local processes, gated on health, and stop it again."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from services.common.probe import probe
from services.stack.compose import NATIVE_KEY, Project, load_project, resolve
from services.stack.interpolate import interpolate, parse_env_file
from services.stack.monitoring import PROMETHEUS, config_files, write_config_files
from services.stack.native import NativeService, native_services, start_order
from services.stack.procs import (
    RunningService,
    State,
    Supervised,
    locked,
    port_is_free,
    port_owner,
    process_of,
    started_since_boot,
    stop_group,
    stop_process,
    tail,
)
from services.stack.replicas import ReplicaError, add_replicas

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("p1", "p2", "p3", "p4")
MONITORING_FILE = "compose.monitoring.yml"
APP_URL = "Chat app"  # the x-native.urls label of the web app (phase 4)
POLL_SECONDS = 0.2
STOP_TIMEOUT = 15.0
# A healthcheck that is a program (PostgreSQL's: a fresh Python, about 3 s on an idle 2-core machine) gets
# at least this long; an HTTP probe keeps its caller's shorter timeout.
COMMAND_PROBE_TIMEOUT = 15.0
log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """`up` or `down` could not do what was asked; the message says why."""


class PortInUse(StackError):
    pass


class ServiceFailed(StackError):
    """A service exited or stayed unhealthy during start-up."""

    def __init__(self, service: str, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{service} {reason}; last lines of {log_path}:\n{log_tail or '(empty log)'}")
        self.service, self.reason, self.log_path, self.log_tail = service, reason, log_path, log_tail


@dataclass
class ServiceStatus:
    name: str
    state: str
    pid: int | None
    ports: list[int]
    health: str
    restarts: int = 0
    last_exit: str = ""


def compose_files(phase: str, root: Path = ROOT, gpu: bool = False, monitoring: bool = False) -> list[Path]:
    """The files of a phase in `-f` order: each phase up to this one, each followed by its GPU overlay if asked,
    then the monitoring overlay if asked.

    A later phase is an overlay on the earlier ones (docs/adr/0003-phase-composition.md).
    """
    if phase not in PHASES:
        raise StackError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")
    files = []
    for step in PHASES[: PHASES.index(phase) + 1]:
        files.append(root / "docker" / f"compose.{step}.yml")
        overlay = root / "docker" / f"compose.{step}.gpu.yml"
        # a phase that adds nothing GPU-bound has no overlay; p1's is always required with --gpu
        if gpu and (overlay.is_file() or step == PHASES[0]):
            files.append(overlay)
    if monitoring:
        files.append(root / "docker" / MONITORING_FILE)
    return files


def load_variables(env: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    """Variables for interpolation: the env file, overridden by the process environment, then by `env`."""
    from_file = parse_env_file(env_file) if env_file and env_file.is_file() else {}
    return {**from_file, **os.environ, **(env or {})}


class Stack:
    """One compose project run natively; `up()`, `down()` and `status()` are safe to call repeatedly."""

    def __init__(self, phase: str, env: Mapping[str, str] | None = None, root: Path | None = None, *,
                 env_file: Path | None = None, gpu: bool = False, monitoring: bool = False,
                 replicas: Mapping[str, int] | None = None) -> None:
        root = (root or ROOT).resolve()
        self._setup(compose_files(phase, root, gpu, monitoring), env, root, env_file, replicas)

    @classmethod
    def from_file(cls, path: Path | Sequence[Path], env: Mapping[str, str] | None = None,
                  root: Path | None = None, *, env_file: Path | None = None) -> Stack:
        """A stack from explicit compose files (base first, overlays after)."""
        files = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
        stack = cls.__new__(cls)
        stack._setup(files, env, (root or files[0].parent).resolve(), env_file)
        return stack

    def _setup(self, files: list[Path], env: Mapping[str, str] | None, root: Path, env_file: Path | None,
               replicas: Mapping[str, int] | None = None) -> None:
        if env_file is not None and not env_file.is_file():
            raise StackError(f"env file not found: {env_file}")
        self.root = root
        self.project: Project = load_project(files)
        self.variables = load_variables(env, env_file if env_file is not None else root / ".env")
        self.doc = resolve(self.project, self.variables, native=True)
        try:
            self.replicas = add_replicas(self.doc, replicas or {})
        except ReplicaError as exc:
            raise StackError(str(exc)) from exc
        native = self.doc.get(NATIVE_KEY) or {}
        data_dir = native.get("data_dir") or self.variables.get("DATA_DIR") or "data"
        base = self.project.base_dir if native.get("data_dir") else root
        self.data_dir = (base / str(data_dir)).resolve()
        self.services = native_services(self.doc, self.project.service_dirs, self.project.base_dir,
                                        self.data_dir / "logs")
        self.order = start_order(self.services)
        self.state_path = self.data_dir / "run" / "stack.json"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- queries ---------------------------------------------------------------------------------

    @property
    def monitored(self) -> bool:
        """True when this stack runs Prometheus (the monitoring overlay is among its files)."""
        return PROMETHEUS in self.services

    def write_monitoring_config(self) -> list[Path]:
        """Prometheus' and Alertmanager's configs, from this topology, where their services mount them."""
        api_key = self.variables.get("API_KEY") or None
        files = config_files(self.doc, self.project.service_dirs, self.project.base_dir, native=True,
                             api_key=api_key)
        return write_config_files(files, private=api_key is not None)

    def urls(self) -> dict[str, str]:
        """Named URLs (x-native.urls; the chat app's first, where people start) then each service's base URL."""
        named = interpolate((self.doc.get(NATIVE_KEY) or {}).get("urls") or {}, self.variables)
        if APP_URL in named:
            named = {APP_URL: named.pop(APP_URL), **named}
        for name in self.order:
            own_url = ((self.doc["services"][name].get(NATIVE_KEY) or {}).get("url"))
            if own_url:  # e.g. postgresql://, which the http:// default below would misstate
                named.setdefault(name, str(own_url))
            for port in self.services[name].ports:
                named.setdefault(name, f"http://{port.host_ip}:{port.port}")
        return named

    def status(self) -> list[ServiceStatus]:
        """State, pid, ports and health of every service of this project, with restarts and the last exit."""
        state = State.load(self.state_path)
        rows = []
        for name in self.order:
            spec, entry = self.services[name], state.services.get(name)
            ports = [p.port for p in spec.ports]
            if entry is None:
                rows.append(ServiceStatus(name, "stopped", None, ports, "-"))
                continue
            history = (entry.restarts, entry.last_exit)
            if process_of(entry) is None:
                shown = entry.phase if entry.phase in ("restarting", "crash-loop") else "exited"
                rows.append(ServiceStatus(name, shown, entry.pid, ports, "-", *history))
            else:
                healthy, reason = self.probe(spec, timeout=2.0)
                shown = "starting" if entry.phase == "restarting" else "running"
                rows.append(ServiceStatus(name, shown, entry.pid, ports,
                                          "healthy" if healthy else f"unhealthy ({reason})", *history))
        return rows

    def supervisor(self) -> Supervised | None:
        """The live supervisor of this stack, if one runs."""
        recorded = State.load(self.state_path).supervisor
        return recorded if recorded is not None and process_of(recorded) is not None else None

    def record_supervisor(self, supervisor: Supervised | None) -> None:
        with locked(self.state_path.with_suffix(".lock")):
            state = State.load(self.state_path)
            state.supervisor = supervisor
            state.save()

    def stop_supervisor(self, timeout: float = STOP_TIMEOUT) -> bool:
        """End the supervisor (it leaves the services running); True if one was running."""
        recorded = State.load(self.state_path).supervisor
        proc = process_of(recorded) if recorded is not None else None
        if proc is None:
            return False
        # only the supervisor: its children are the services, which keep running
        stop_process(proc, timeout)
        self.record_supervisor(None)
        return True

    # -- up ----------------------------------------------------------------------------------------

    def up(self, on_event: Callable[[str, str], None] | None = None) -> list[str]:
        """Start every service that is not running, dependencies first; returns the names started."""
        notify = on_event or (lambda name, event: log.info("%s: %s", name, event))
        with locked(self.state_path.with_suffix(".lock")):
            if self.monitored:
                self.write_monitoring_config()
            state = State.load(self.state_path)
            running = {n for n in self.order if n in state.services and process_of(state.services[n])}
            for name in [n for n in state.services if n in self.services and n not in running]:
                del state.services[name]  # it died since the last run; start it again
            for name in sorted(running):
                notify(name, "already running")
            to_start = [n for n in self.order if n not in running]
            self._check_ports(to_start)
            started: list[str] = []
            try:
                self._start_all(to_start, running, state, started, notify)
            except BaseException:
                self._stop(started, state, notify)
                raise
            return started

    def _check_ports(self, names: list[str]) -> None:
        seen: dict[int, str] = {}
        for name in names:
            for port in self.services[name].ports:
                if port.port in seen:
                    raise PortInUse(f"port {port.port} is published by both {seen[port.port]} and {name}")
                seen[port.port] = name
                if not port_is_free(port.host_ip, port.port):
                    raise PortInUse(
                        f"port {port.port} ({name}) on {port.host_ip} is already in use by "
                        f"{port_owner(port.port)}; stop it or set another port in .env"
                    )

    def _start_all(self, to_start: list[str], running: set[str], state: State, started: list[str],
                   notify: Callable[[str, str], None]) -> None:
        pending = list(to_start)
        waiting: dict[str, float] = {n: time.monotonic() + self.services[n].start_timeout for n in running}
        offsets: dict[str, int] = {}
        healthy: set[str] = set()
        while pending or waiting:
            for name in [n for n in pending if all(d in healthy for d in self.services[n].depends_on)]:
                pending.remove(name)
                offsets[name] = self.launch(self.services[name], state)
                started.append(name)
                waiting[name] = time.monotonic() + self.services[name].start_timeout
                notify(name, f"started (pid {state.services[name].pid})")
            if pending and not waiting:
                raise StackError(f"cannot start {pending}: their dependencies are not running")
            for name, deadline in list(waiting.items()):
                spec = self.services[name]
                if not self.is_alive(name, state):
                    raise ServiceFailed(name, "exited during start-up", spec.log_path,
                                        tail(spec.log_path, 20, offsets.get(name, 0)))
                if self.probe(spec, timeout=2.0)[0]:
                    del waiting[name]
                    healthy.add(name)
                    notify(name, "healthy")
                elif time.monotonic() > deadline:
                    raise ServiceFailed(name, f"was not healthy within {spec.start_timeout:.0f} s",
                                        spec.log_path, tail(spec.log_path, 20, offsets.get(name, 0)))
            if waiting:
                time.sleep(POLL_SECONDS)

    def launch(self, spec: NativeService, state: State, previous: RunningService | None = None,
               save: bool = True) -> int:
        """Start one service and record it (in the state file too, unless `save` is false); returns where this
        start begins in its log."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log_file:
            offset = log_file.tell()
            log_file.write(f"--- ai-suite: starting {spec.name}: {' '.join(spec.argv)}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(
                spec.argv, cwd=self.root, env={**os.environ, **spec.env}, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._children[spec.name] = proc
        # a restart keeps its place in the start order, so `down` still stops dependents first
        seq = previous.seq if previous is not None else state.next_seq()
        created, since_boot = _identity(proc.pid)
        entry = RunningService(spec.name, proc.pid, created, [p.port for p in spec.ports],
                               str(spec.log_path), spec.argv, spec.health_url, time.time(), seq, since_boot=since_boot)
        state.services[spec.name] = entry
        if save:
            state.save()
        return offset

    def is_alive(self, name: str, state: State) -> bool:
        child = self._children.get(name)
        if child is not None:
            return child.poll() is None
        return process_of(state.services[name]) is not None

    def exit_code(self, name: str) -> int | None:
        """How this process's own child ended (negative: the signal); None when it is not our child."""
        child = self._children.get(name)
        return child.returncode if child is not None else None

    def probe(self, spec: NativeService, timeout: float) -> tuple[bool, str]:
        if spec.health_url:
            return probe(spec.health_url, timeout)
        if spec.health_argv:
            # a command check starts a process: give it the compose healthcheck's own timeout when that is longer
            timeout = max(timeout, spec.watch.timeout)
            try:
                done = subprocess.run(spec.health_argv, cwd=self.root, env={**os.environ, **spec.env},
                                      capture_output=True, timeout=max(timeout, COMMAND_PROBE_TIMEOUT))
            except subprocess.TimeoutExpired:
                return False, "healthcheck timed out"
            return done.returncode == 0, f"healthcheck exit {done.returncode}"
        return True, "no healthcheck"

    # -- down --------------------------------------------------------------------------------------

    def down(self, on_event: Callable[[str, str], None] | None = None, timeout: float = STOP_TIMEOUT,
             everything: bool = False, only: Sequence[str] | None = None) -> list[str]:
        """Stop this project's services (or every recorded one, or `only` these), last started first.

        The supervisor goes first, so it cannot bring back what is being stopped; it stays when `only`
        some services stop, and since they leave the state file it lets them be. Returns those stopped.
        """
        notify = on_event or (lambda name, event: log.info("%s: %s", name, event))
        unknown = sorted(set(only or ()) - set(self.services))
        if unknown:
            raise StackError(f"unknown service {', '.join(unknown)}; this phase has {', '.join(self.order)}")
        if only is None:
            try:
                if self.stop_supervisor(timeout):
                    notify("supervisor", "stopped")
            except OSError as exc:  # stopped, but the state file could not say so (a full disk)
                notify("supervisor", f"stopped ({_unrecorded(exc)})")
        with locked(self.state_path.with_suffix(".lock")):
            state = State.load(self.state_path)
            names = [n for n in state.services if (n in only if only is not None else everything or n in self.services)]
            return self._stop(names, state, notify, timeout)

    def _stop(self, names: list[str], state: State, notify: Callable[[str, str], None],
              timeout: float = STOP_TIMEOUT) -> list[str]:
        stopped = []
        for name in sorted(names, key=lambda n: state.services[n].seq if n in state.services else 0, reverse=True):
            entry = state.services.pop(name, None)
            child = self._children.pop(name, None)
            # our own child's pid stays reserved until it is reaped, so its group is safe to signal
            alive = entry is not None and process_of(entry) is not None
            if entry is not None and (alive or child is not None):
                killed = stop_group(entry.pid, timeout)
                notify(name, "killed after timeout" if killed else "stopped" if alive else "exited")
                stopped.append(name)
            if child is not None:
                child.wait()
        try:
            state.save()
        except OSError as exc:  # what was stopped is stopped; stale entries are told apart by process identity
            notify("state", _unrecorded(exc))
        return stopped


def _unrecorded(exc: OSError) -> str:
    return (f"not recorded in the state file: {exc.strerror or exc}; the stopped processes' entries stay "
            "and are known to be gone by their identity")


def _identity(pid: int) -> tuple[float, float | None]:
    """create_time and started_since_boot of a process, which `process_of` later checks."""
    try:
        proc = psutil.Process(pid)
        return float(proc.create_time()), started_since_boot(proc)
    except psutil.Error:
        return 0.0, None  # it already exited; `_alive` will notice through the Popen handle
