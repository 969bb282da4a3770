"""Child processes with a scrubbed environment, capped output, a timeout that kills the whole process group, and
(for untrusted Python) resource limits, an unprivileged user and bubblewrap (guards/bwrap.py)."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.mcp_server.guards.bwrap import run_confined

FIXED_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_USER = "nobody"
MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class RunResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_ms: int

    def as_dict(self) -> dict[str, object]:
        """The shape tools return."""
        return {
            "exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
            "timed_out": self.timed_out, "truncated": self.truncated, "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class PythonLimits:
    timeout: float
    cpu_seconds: int
    memory_mb: int
    max_processes: int
    max_output_bytes: int


def base_env(home: Path) -> dict[str, str]:
    """The only variables a child sees: nothing the server holds (keys, tokens) is inherited."""
    return {"PATH": FIXED_PATH, "LANG": "C.UTF-8", "HOME": str(home)}


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping the first `limit` bytes, so a chatty child can neither block nor exhaust memory."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.data = bytearray()
        self.overflow = False

    def run(self) -> None:
        while chunk := self.stream.read1(65536):  # type: ignore[attr-defined]
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.overflow = True
            if room > 0:
                self.data += chunk[:room]
        self.stream.close()


def run_limited(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, max_output: int,
    user: int | None = None, group: int | None = None, stdin_data: bytes | None = None, pass_fds: tuple[int, ...] = (),
) -> RunResult:
    """Run argv in its own session; on timeout or exit, SIGKILL whatever is left in its process group."""
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - argv only, never a shell
        argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True, pass_fds=pass_fds,
        user=user, group=group, extra_groups=[] if user is not None else None,
    )
    readers = [_CappedReader(stream, max_output) for stream in (proc.stdout, proc.stderr) if stream is not None]
    for reader in readers:
        reader.start()
    if stdin_data is not None and proc.stdin is not None:
        # A thread, so a child that never reads its input cannot block us past the timeout.
        threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True).start()
    timed_out = not _wait_unreaped(proc.pid, timeout)
    # The leader is still a zombie here, so its pid still names the group: nothing else can have taken it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    out, err = readers[0], readers[1]
    return RunResult(
        exit_code=None if timed_out else proc.returncode,
        stdout=out.data.decode("utf-8", "replace"), stderr=err.data.decode("utf-8", "replace"),
        timed_out=timed_out, truncated=out.overflow or err.overflow,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _feed(stream: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):
        stream.write(data)
    with contextlib.suppress(BrokenPipeError):
        stream.close()


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait for `pid` to exit without reaping it; False on timeout."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(timeout, 0.001) * 1000))
    finally:
        os.close(fd)


def run_python(code: str, limits: PythonLimits, *, bwrap: Path | None) -> RunResult:
    """Run untrusted code in `python -I -S` inside a fresh scratch folder with rlimits and no inherited environment,
    confined by bubblewrap at `bwrap` (None only for PYTHON_SANDBOX=none-unsafe)."""
    interpreter = sandbox_interpreter()
    identity = sandbox_identity(interpreter)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-py-"))
    try:
        script = workdir / "main.py"
        script.write_text(code, encoding="utf-8")
        if identity is not None:
            for item in (workdir, script):
                os.chown(item, *identity)
        command = [interpreter, "-I", "-S", "-c", _BOOTSTRAP, *_rlimit_args(limits), interpreter, str(script)]
        # bubblewrap starts as the unprivileged user too: started as root it would run the code as uid 0 (without
        # capabilities, yet the owner of every root file in view), and RLIMIT_NPROC does not hold for root.
        run = functools.partial(
            run_limited, cwd=workdir, env=base_env(workdir), timeout=limits.timeout,
            max_output=limits.max_output_bytes, user=identity[0] if identity else None,
            group=identity[1] if identity else None,
        )
        if bwrap is None:
            return run(command)
        return run_confined(run, bwrap, interpreter, workdir, command)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# Trusted first stage: set the limits, then exec the untrusted script. Doing this in the child's own interpreter
# avoids preexec_fn, which can deadlock when the server has other threads.
_BOOTSTRAP = """
import os, resource, sys
*caps, interpreter, script = sys.argv[1:]
for cap in caps:
    name, soft, hard = cap.split(":")
    resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
os.execv(interpreter, [interpreter, "-I", "-S", "-B", script])
"""


def _rlimit_args(limits: PythonLimits) -> list[str]:
    memory = limits.memory_mb * 1024 * 1024
    # A soft CPU limit below the hard one delivers SIGXCPU first, so the caller can tell why the run ended.
    caps = [
        ("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1), ("RLIMIT_AS", memory, memory),
        ("RLIMIT_NOFILE", MAX_OPEN_FILES, MAX_OPEN_FILES),
        ("RLIMIT_NPROC", limits.max_processes, limits.max_processes),
        ("RLIMIT_FSIZE", MAX_FILE_BYTES, MAX_FILE_BYTES), ("RLIMIT_CORE", 0, 0),
    ]
    return [f"{name}:{soft}:{hard}" for name, soft, hard in caps]


def sandbox_interpreter() -> str:
    """A CPython of this version that the sandbox user can execute (the server's own, or the system one)."""
    own = os.path.realpath(sys.executable)
    if os.geteuid() != 0 or _world_executable(own):
        return own
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in FIXED_PATH.split(":"):
        candidate = os.path.realpath(os.path.join(folder, version))
        if os.path.isfile(candidate) and _world_executable(candidate):
            return candidate
    return own


def sandbox_identity(interpreter: str) -> tuple[int, int] | None:
    """(uid, gid) to drop to when the server runs as root, so RLIMIT_NPROC holds and root-only files stay shut."""
    if os.geteuid() != 0 or not _world_executable(interpreter):
        return None
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _world_executable(path: str) -> bool:
    """True when every folder above `path` and the file itself carry the 'other' execute bit."""
    current = Path(path)
    for item in [current, *current.parents]:
        try:
            if not os.stat(item).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True
