"""The OS half of execute_python's sandbox: bubblewrap namespaces around a minimal, read-only view of the system.

Inside, the code has new user, PID, network, IPC, UTS and cgroup namespaces: no network but its own loopback, and
every process it starts dies with the first one. Its root holds only what the interpreter needs to start (its
binary, its standard library and the system's shared libraries), read-only: no shell or other programs, no /etc
(so no /etc/passwd), no home and none of the server's data. The one writable folder is the run's scratch folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastmcp.exceptions import ToolError

if TYPE_CHECKING:
    from services.mcp_server.guards.sandbox import RunResult

# The shared libraries the interpreter and its extension modules load; on merged-/usr systems /lib* are symlinks.
SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/lib32", "/libx32")
# All the interpreter reads from /etc: the loader's library index and the local time zone.
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
INSTALL_HINT = "install it with 'make system-packages' (or 'apt-get install bubblewrap')"
MAX_SIGNAL = 64


def require_bwrap(path: Path) -> Path:
    """`path` if it is an executable file; otherwise a ToolError that says how to install bubblewrap."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolError(
            f"execute_python runs code only inside bubblewrap, and {path} (BWRAP_PATH) is not an executable file: "
            f"{INSTALL_HINT}, or set PYTHON_SANDBOX=none-unsafe to run code with rlimits only, without a sandbox"
        )
    return path


def bwrap_argv(bwrap: Path, interpreter: str, scratch: Path, status_fd: int) -> list[str]:
    """bubblewrap's options, to be followed by the command to confine."""
    return [
        # --unshare-all: user (where the kernel allows it), PID, network, IPC, UTS and cgroup namespaces.
        str(bwrap), "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
        "--json-status-fd", str(status_fd),
        *_system_view(interpreter),
        "--dev", "/dev", "--proc", "/proc",
        "--bind", str(scratch), str(scratch), "--chdir", str(scratch),
        # The root and /dev are tmpfs mounts the sandbox user owns: read-only, so scratch is the only place to write.
        "--remount-ro", "/dev", "--remount-ro", "/",
    ]


def _system_view(interpreter: str) -> list[str]:
    """Read-only binds of what `interpreter -I -S` needs to start, at the same paths as on the host."""
    args: list[str] = []
    bound: list[Path] = []
    for path in SYSTEM_LIBRARIES:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            bound.append(Path(path))
    # CPython finds its standard library (and libpython) in PREFIX/lib beside PREFIX/bin, where it looks itself.
    prefix_lib = Path(interpreter).parent.parent / "lib"
    if not any(prefix_lib.is_relative_to(folder) for folder in bound):
        args += ["--ro-bind", str(prefix_lib), str(prefix_lib)]
    args += ["--ro-bind", interpreter, interpreter]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def run_confined(
    run: Callable[..., RunResult], bwrap: Path, interpreter: str, scratch: Path, command: list[str],
) -> RunResult:
    """`run` the command inside bubblewrap; a ToolError when bubblewrap could not build the sandbox."""
    status_read, status_write = os.pipe()
    try:
        try:
            result = run([*bwrap_argv(bwrap, interpreter, scratch, status_write), *command], pass_fds=(status_write,))
        finally:
            os.close(status_write)
        status = _drain(status_read)
    finally:
        os.close(status_read)
    # bubblewrap reports an exit code only for a command it started, so a failure to build the sandbox (no user
    # namespaces, a mount refused) cannot pass for the code's own exit status.
    if b'"exit-code"' not in status and not result.timed_out:
        raise ToolError(
            f"bubblewrap could not build the sandbox, so the code did not run: {result.stderr.strip()[-500:]}"
        )
    return _signal_as_negative(result)


def _drain(fd: int) -> bytes:
    """What bubblewrap wrote to its status pipe; never blocks, in case a process still holds the write end."""
    os.set_blocking(fd, False)
    data = bytearray()
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _signal_as_negative(result: RunResult) -> RunResult:
    """bubblewrap passes a death by signal N on as exit code 128+N; report it as -N, as a direct child's would be.

    Code that itself exits with 129..192 reads as a signal too: that only mislabels the code's own choice.
    """
    code = result.exit_code
    if code is not None and 128 < code <= 128 + MAX_SIGNAL:
        return dataclasses.replace(result, exit_code=128 - code)
    return result
