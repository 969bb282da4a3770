"""Process-level helpers for the runner: state file, liveness, ports, graceful stop, log tails."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

STATE_VERSION = 1


@dataclass
class RunningService:
    """One started process as recorded in the state file."""

    name: str
    pid: int
    create_time: float
    ports: list[int]
    log: str
    argv: list[str]
    health_url: str | None = None
    started_at: float = 0.0
    seq: int = 0
    # kept by the supervisor across restarts
    restarts: int = 0
    last_exit: str = ""
    phase: str = "running"  # running | restarting | exited | crash-loop
    since_boot: float | None = None  # see started_since_boot; None in state files written before it


@dataclass
class Supervised:
    """The supervisor process watching this stack, as recorded in the state file."""

    pid: int
    create_time: float
    since_boot: float | None = None


@dataclass
class State:
    """What `ai-suite up` started, persisted in ${DATA_DIR}/run/stack.json."""

    path: Path
    services: dict[str, RunningService] = field(default_factory=dict)
    supervisor: Supervised | None = None

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path)  # a torn or foreign file: start afresh rather than refuse to run
        services = {name: RunningService(**entry) for name, entry in (raw.get("services") or {}).items()}
        supervisor = Supervised(**raw["supervisor"]) if raw.get("supervisor") else None
        return cls(path, services, supervisor)

    def save(self) -> None:
        if not self.services and self.supervisor is None:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"version": STATE_VERSION, "services": {n: asdict(s) for n, s in self.services.items()},
                "supervisor": asdict(self.supervisor) if self.supervisor else None}
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: leave no half-written file taking what room is left
            raise
        tmp.replace(self.path)

    def next_seq(self) -> int:
        return max((s.seq for s in self.services.values()), default=0) + 1


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so two runners never start or stop the same stack at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def started_since_boot(proc: psutil.Process) -> float:
    """Seconds from boot to the process's start.

    psutil's create_time() adds the boot time as the clock gives it now, and a clock step (NTP, a resumed
    VM) moves that by whole seconds; then every recorded process would look gone. This difference stays put.
    """
    return float(proc.create_time()) - psutil.boot_time()


def process_of(entry: RunningService | Supervised) -> psutil.Process | None:
    """The live process for a state entry, or None (gone, zombie, or the pid was reused)."""
    try:
        proc = psutil.Process(entry.pid)
        if entry.since_boot is not None:
            same = abs(started_since_boot(proc) - entry.since_boot) <= 0.05
        else:  # recorded before since_boot was
            same = abs(proc.create_time() - entry.create_time) <= 0.05
        if not same or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def port_is_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now (same SO_REUSEADDR setting as uvicorn)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """Describe the process listening on `port`, e.g. "pid 123 (python3)"."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError):
        return "unknown process"
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "unknown process"


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in process group `pgid`, plus the descendants of its leader."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = proc
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pgid).children(recursive=True):
            found.setdefault(child.pid, child)
    return list(found.values())


def stop_group(pgid: int, timeout: float) -> bool:
    """SIGTERM a service's process group (and strays), SIGKILL after `timeout`; True if it had to kill."""
    procs = group_members(pgid)
    if not procs:
        return False
    _signal_group(pgid, signal.SIGTERM, procs)
    alive = _wait_gone(procs, timeout)
    if not alive:
        return False
    _signal_group(pgid, signal.SIGKILL, alive)
    _wait_gone(alive, 5)
    return True


def stop_process(proc: psutil.Process, timeout: float) -> bool:
    """SIGTERM one process (not its children), SIGKILL after `timeout`; True if it had to kill."""
    with contextlib.suppress(psutil.Error):
        proc.terminate()
    if not _wait_gone([proc], timeout):
        return False
    with contextlib.suppress(psutil.Error):
        proc.kill()
    _wait_gone([proc], 5)
    return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process has exited; a zombie counts as gone (its parent, maybe another process, reaps it)."""
    deadline = time.monotonic() + timeout
    alive = procs
    while True:
        _, alive = psutil.wait_procs(alive, timeout=0.1)
        alive = [proc for proc in alive if not _zombie(proc)]
        if not alive or time.monotonic() >= deadline:
            return alive


def _zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _signal_group(pgid: int, sig: signal.Signals, procs: list[psutil.Process]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:  # children that left the group (setsid) still belong to the service
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def tail(path: Path, lines: int = 20, start: int = 0) -> str:
    """The last `lines` lines of a log file, read from byte offset `start` on."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])
