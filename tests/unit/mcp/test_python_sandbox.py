"""execute_python's second layer, with the screen off: what the attack in issue 10 did from inside must fail.

Each test runs code the screen would refuse straight through `run_python`, the sandbox alone, and checks the
result from the host: a file that must not appear, a listening port that must get no connection, a process
that must not survive.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.guards.bwrap import bwrap_argv
from services.mcp_server.guards.sandbox import PythonLimits, RunResult, run_python, sandbox_interpreter
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import execution

ROOT = Path(__file__).resolve().parents[3]
BWRAP = McpSettings.model_fields["bwrap_path"].default
LIMITS = PythonLimits(timeout=5.0, cpu_seconds=2, memory_mb=128, max_processes=8, max_output_bytes=8192)


def confined(code: str) -> RunResult:
    """The sandbox alone, screen off: what execute_python runs once the screen lets code through."""
    return run_python(code, LIMITS, bwrap=BWRAP)


def test_no_shell_or_program_runs_inside():
    code = """
import os, subprocess
print("system", os.system("echo shell-ran"))
for argv in (["id"], ["/bin/sh", "-c", "echo shell-ran"], ["/usr/bin/env"]):
    try:
        subprocess.run(argv)
    except OSError as exc:
        print("refused", type(exc).__name__)
"""
    result = confined(code)
    assert "shell-ran" not in result.stdout and "uid=" not in result.stdout and "PATH=" not in result.stdout
    assert result.stdout.count("refused FileNotFoundError") == 3, result.stdout + result.stderr
    assert result.exit_code == 0


@pytest.fixture()
def listening() -> Iterator[socket.socket]:
    """A real TCP server on 127.0.0.1 (the kernel completes connections into its backlog)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def test_no_network_even_to_a_local_server(listening):
    port = listening.getsockname()[1]
    code = f"""
import socket
print(sorted(name for _, name in socket.if_nameindex()))
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", {port}))
    print("connected")
except OSError as exc:
    print("refused", type(exc).__name__)
"""
    result = confined(code)
    assert result.stdout.splitlines() == ["['lo']", "refused ConnectionRefusedError"], result.stderr
    with pytest.raises(BlockingIOError):
        listening.accept()  # nothing reached the host's server


def test_system_files_home_and_server_data_are_not_visible(tmp_path):
    data = tmp_path / "data" / "security"
    data.mkdir(parents=True)
    (data / "owner.key").write_text("sk-owner")
    for folder in (tmp_path, tmp_path / "data", data):
        folder.chmod(0o755)  # readable by anyone: only the sandbox's view can hide it
    (data / "owner.key").chmod(0o644)
    hidden = ["/etc/passwd", "/etc/shadow", str(data / "owner.key"), str(ROOT / ".env.example")]
    home = Path.home()
    code = f"""
import os
for path in {hidden!r}:
    print(path, os.path.exists(path))
try:
    print(open("/etc/passwd").read())
except OSError as exc:
    print("refused", type(exc).__name__)
print(sorted(os.listdir({str(home)!r})) if os.path.isdir({str(home)!r}) else [])
"""
    result = confined(code)
    assert "root:" not in result.stdout and "sk-owner" not in result.stdout
    *lines, home_listing = result.stdout.splitlines()
    assert lines == [f"{path} False" for path in hidden] + ["refused FileNotFoundError"], result.stderr
    # The home is in view only as the way to an interpreter installed there (~/.pyenv): nothing beside it.
    interpreter = Path(sandbox_interpreter())
    way_in = [interpreter.relative_to(home).parts[0]] if interpreter.is_relative_to(home) else []
    assert home_listing == str(way_in)


@pytest.fixture()
def escape_targets(tmp_path) -> Iterator[list[Path]]:
    """Places a process could write outside its scratch folder; whatever appears is removed afterwards."""
    shared = tmp_path / "world-writable"
    shared.mkdir()
    for folder in (tmp_path, shared):
        folder.chmod(0o777)
    name = f"mcp-escape-{uuid.uuid4().hex}"
    targets = [Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name, Path.home() / name,
               shared / name, ROOT / name, Path("/") / name]
    yield targets
    for target in targets:
        target.unlink(missing_ok=True)


def test_only_the_scratch_folder_is_writable(escape_targets):
    code = f"""
for path in {[str(t) for t in escape_targets]!r}:
    try:
        open(path, "w").write("escaped")
        print("wrote", path)
    except OSError:
        pass
open("kept.txt", "w").write("in scratch")
print(open("kept.txt").read())
"""
    result = confined(code)
    assert result.stdout == "in scratch\n", result.stdout + result.stderr
    assert [t for t in escape_targets if t.exists()] == []


def processes_named(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def test_no_process_outlives_the_call():
    """A double-forked, detached child is up (it said so) before the call returns, and gone once it has."""
    marker = f"orphan-{uuid.uuid4().hex}"
    code = f"""
import os, sys
r, w = os.pipe()
os.set_inheritable(w, True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
                 "import os, sys, time; os.write(int(sys.argv[1]), b'up'); time.sleep(60)", str(w), "{marker}"])
    os._exit(0)
os.close(w)
print(os.read(r, 2).decode())
"""
    try:
        result = confined(code)
        assert result.stdout == "up\n", result.stderr
        deadline = time.monotonic() + 5  # the kernel tears the PID namespace down as its first process exits
        while processes_named(marker) and time.monotonic() < deadline:
            psutil.wait_procs(processes_named(marker), timeout=0.2)
        assert processes_named(marker) == []
    finally:
        for survivor in processes_named(marker):
            survivor.kill()


def test_a_normal_calculation_still_runs_with_its_output_and_exit_code():
    result = confined("import math, sys\nprint(math.comb(10, 3))\nsys.exit(3)")
    assert (result.exit_code, result.stdout, result.timed_out) == (3, "120\n", False)


async def call_with(settings: McpSettings, code: str) -> Any:
    mcp = FastMCP("sandbox-test")
    execution.register(mcp, settings)
    async with Client(mcp) as client:
        return (await client.call_tool("execute_python", {"code": code})).data


def settings_with(tmp_path: Path, **env: str) -> McpSettings:
    return McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=str(tmp_path), **env)  # type: ignore[call-arg]


async def test_without_bubblewrap_execute_python_refuses_and_says_how_to_install_it(tmp_path):
    settings = settings_with(tmp_path, BWRAP_PATH=str(tmp_path / "no-bwrap"))
    with pytest.raises(ToolError, match=r"bubblewrap.*no-bwrap.*make system-packages.*PYTHON_SANDBOX=none-unsafe"):
        await call_with(settings, "print(1)")


async def test_the_weaker_mode_runs_without_bubblewrap_only_when_asked(tmp_path):
    settings = settings_with(tmp_path, BWRAP_PATH=str(tmp_path / "no-bwrap"), PYTHON_SANDBOX="none-unsafe")
    result = await call_with(settings, "print(6 * 7)")
    assert (result["exit_code"], result["stdout"]) == (0, "42\n")


async def test_a_sandbox_bubblewrap_cannot_build_is_an_error_not_an_exit_code(tmp_path):
    """A BWRAP_PATH that fails before starting the code (here /bin/false) must not pass for the code's exit 1."""
    settings = settings_with(tmp_path, BWRAP_PATH="/bin/false")
    with pytest.raises(ToolError, match="bubblewrap could not build the sandbox, so the code did not run"):
        await call_with(settings, "print(1)")


def test_the_view_binds_only_the_interpreter_its_library_and_the_system_libraries(tmp_path):
    argv = bwrap_argv(BWRAP, "/opt/python/bin/python3.11", tmp_path, 9)
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert "/opt/python/bin/python3.11" in binds and "/opt/python/lib" in binds
    assert [b for b in binds if not b.startswith(("/usr/lib", "/lib", "/opt/python/", "/etc/ld.so.cache",
                                                   "/etc/localtime"))] == [str(tmp_path)]
    writable = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
    assert writable == [str(tmp_path)] and argv[-4:] == ["--remount-ro", "/dev", "--remount-ro", "/"]
