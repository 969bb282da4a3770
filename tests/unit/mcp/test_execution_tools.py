"""run_command and execute_python in process, with the shell and Python escape attacks from issue 4."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.guards.sandbox import (
    PythonLimits,
    base_env,
    run_limited,
    run_python,
    sandbox_identity,
    sandbox_interpreter,
)
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import execution
from tests.support.mcp import call

TIMEOUT = 2.0
CPU_SECONDS = 1
MARGIN = 3.0  # process start, kill and reap on a loaded 2-core machine


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "a.txt").write_text("alpha\nbeta\n")
    (outside / "secret.txt").write_text("secret")
    (allowed / "link").symlink_to(outside / "secret.txt")
    return {"allowed": allowed, "outside": outside}


@pytest.fixture()
def settings(tree: dict[str, Path]) -> McpSettings:
    env = {
        "MCP_ALLOWED_ROOTS": str(tree["allowed"]), "COMMAND_ALLOWLIST": "echo,cat,ls,env,sleep,pwd,head,date,sort,sh",
        "COMMAND_TIMEOUT": str(TIMEOUT), "TOOL_MAX_OUTPUT_BYTES": "1024", "PYTHON_TIMEOUT": str(TIMEOUT),
        "PYTHON_CPU_SECONDS": str(CPU_SECONDS), "PYTHON_MEMORY_MB": "128", "PYTHON_MAX_PROCESSES": "8",
    }
    return McpSettings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.fixture()
async def client(settings: McpSettings):
    mcp = FastMCP("exec-test")
    execution.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected



def sandbox_processes() -> list[psutil.Process]:
    """Live processes started from a sandbox folder (zombies have no command line, so they drop out)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any("mcp-py-" in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def assert_no_stray_processes(deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while sandbox_processes() and time.monotonic() < end:
        psutil.wait_procs(sandbox_processes(), timeout=0.2)
    assert not sandbox_processes()


async def test_run_command_runs_an_allowlisted_program_in_working_dir(client, tree):
    result = await call(client, "run_command", command="cat a.txt")
    assert result["exit_code"] == 0 and result["stdout"] == "alpha\nbeta\n"
    listed = await call(client, "run_command", command=["ls", "-1"], working_dir="sub")
    assert listed["stdout"] == "" and listed["working_dir"] == str(tree["allowed"] / "sub")
    quoted = await call(client, "run_command", command="echo 'a;b|c' \"x > y\"")
    assert quoted["stdout"] == "a;b|c x > y\n"
    assert (await call(client, "run_command", command="sort -r a.txt"))["stdout"] == "beta\nalpha\n"
    assert (await call(client, "run_command", command="date -u +%Y"))["stdout"].strip().isdigit()
    failing = await call(client, "run_command", command="cat missing.txt")
    assert failing["exit_code"] != 0 and "missing.txt" in failing["stderr"]


def test_the_environment_is_scrubbed(tree, monkeypatch):
    monkeypatch.setenv("API_KEY", "sk-parent-secret")
    env = base_env(tree["allowed"])
    result = run_limited(["/usr/bin/env"], cwd=tree["allowed"], env=env, timeout=TIMEOUT, max_output=4096)
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert names == {"PATH", "LANG", "HOME"}
    assert "sk-parent-secret" not in result.stdout


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("rm -rf .", "not in COMMAND_ALLOWLIST"),
        ("/bin/echo hi", "not as a path"),
        ("touch x", "not in COMMAND_ALLOWLIST"),
        ("python3 -c 1", "never runs it"),
        ("", "empty"),
        (["sh", "-c", "touch PWNED"], "never runs it"),
        ("env touch PWNED", "never runs it"),
        ("date -s 2001-01-01", "not allowed"),
        ("date --set=2001-01-01", "not allowed"),
        ("date -us 2001-01-01", "not allowed"),
        ("sort --compress-prog=sh a.txt", "not allowed"),
    ],
)
async def test_programs_outside_the_allowlist_are_refused(client, command, error):
    with pytest.raises(ToolError, match=error):
        await call(client, "run_command", command=command)


@pytest.mark.parametrize(
    "command",
    [
        "echo hi; touch PWNED", "echo hi && touch PWNED", "echo hi || touch PWNED", "echo hi | tee PWNED",
        "echo hi > PWNED", "echo hi >> PWNED", "cat < PWNED", "echo $(touch PWNED)", "echo `touch PWNED`",
        'echo "$(touch PWNED)"', "echo hi & touch PWNED", "echo hi\ntouch PWNED", "(touch PWNED)",
        ["echo", "hi", ";", "touch", "PWNED"], ["echo", "$(touch PWNED)"], ["echo", "hi", "&&", "touch"],
    ],
)
async def test_shell_metacharacters_are_refused_and_create_nothing(client, tree, command):
    marker = tree["outside"] / "pwned"
    if isinstance(command, str):
        command = command.replace("PWNED", str(marker))
    else:
        command = [part.replace("PWNED", str(marker)) for part in command]
    with pytest.raises(ToolError, match="shell syntax"):
        await call(client, "run_command", command=command)
    assert not marker.exists()
    assert not (tree["allowed"] / "PWNED").exists()


@pytest.mark.parametrize(
    "command", ["cat ../outside/secret.txt", "cat OUTSIDE/secret.txt", "cat link", "head -n1 /etc/passwd",
                "ls ..", "cat --file=../outside/secret.txt"],
)
async def test_path_arguments_must_stay_inside_the_roots(client, tree, command):
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, "run_command", command=command.replace("OUTSIDE", str(tree["outside"])))


async def test_a_slow_command_is_killed_at_the_timeout(client, tree):
    started = time.monotonic()
    with pytest.raises(ToolError, match="COMMAND_TIMEOUT"):
        await call(client, "run_command", command="sleep 30")
    assert time.monotonic() - started < TIMEOUT + MARGIN
    left = [p for p in psutil.process_iter(["cmdline", "cwd"])
            if (p.info["cmdline"] or [])[1:] == ["30"] and p.info["cwd"] == str(tree["allowed"])]
    assert psutil.wait_procs(left, timeout=5)[1] == []


async def test_command_output_is_capped(client, tree):
    (tree["allowed"] / "big.txt").write_text("y" * 5000)
    result = await call(client, "run_command", command="cat big.txt")
    assert result["truncated"] is True and len(result["stdout"]) == 1024


async def test_execute_python_runs_code_and_returns_output(client):
    result = await call(client, "execute_python", code="import math, json\nprint(json.dumps([math.factorial(5)]))")
    assert result == {**result, "exit_code": 0, "stdout": "[120]\n", "timed_out": False}
    failing = await call(client, "execute_python", code="raise ValueError('boom')")
    assert failing["exit_code"] == 1 and "ValueError: boom" in failing["stderr"]
    files = await call(client, "execute_python", code="open('f.txt', 'w').write('x')\nprint(open('f.txt').read())")
    assert files["stdout"] == "x\n"


ESCAPES = [
    "import os\nos.system('touch MARKER')",
    "import subprocess\nsubprocess.run(['touch', 'MARKER'])",
    "from subprocess import run\nrun(['touch', 'MARKER'])",
    "print(open('/etc/shadow').read())",
    "open('../../MARKER', 'w')",
    "name = '/etc/shadow'\nopen(name)",
    "f = open\nf('/etc/shadow')",
    "__import__('os').system('touch MARKER')",
    "getattr(__builtins__, '__imp' + 'ort__')('os').system('touch MARKER')",
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__mro__[1].__subclasses__() if c.__name__ == 'Popen'][0](['touch', 'MARKER'])",
    "(lambda: 0).__globals__['__builtins__']",
    "eval(\"__import__('os').system('touch MARKER')\")",
    "exec('import os')",
    "import random\nrandom._os.system('touch MARKER')",
    "import dataclasses\ndataclasses.sys.modules['os'].system('touch MARKER')",
    "import typing",
    "import importlib\nimportlib.import_module('os')",
    "import ctypes", "import socket", "import shutil", "import pty", "import multiprocessing",
    "import operator\noperator.attrgetter('__globals__')",
    "import string\nstring.Formatter().get_field('0.__class__', [1], {})",
    "import os\nwhile True:\n    os.fork()",
    "vars()['__builtins__']",
    "import enum\nenum.bltns.exec(\"import os; os.system('touch MARKER')\")",
    "import dataclasses\ndataclasses.inspect.currentframe().f_builtins['exec']('import os')",
    "import copy\ncopy.types.FunctionType",
    "from . import x",
]


@pytest.mark.parametrize("code", ESCAPES)
async def test_python_escapes_are_refused_before_running(client, tree, code):
    marker = tree["outside"] / "marker"
    with pytest.raises(ToolError, match="not allowed|refused|needs a literal|may only be called"):
        await call(client, "execute_python", code=code.replace("MARKER", str(marker)))
    assert not marker.exists()


async def test_a_memory_bomb_is_stopped_by_the_address_space_limit(client):
    for code in ("x = ' ' * 10**10", "x = []\nwhile True:\n    x.append(' ' * 10**6)"):
        started = time.monotonic()
        result = await call(client, "execute_python", code=code)
        assert result["exit_code"] != 0 and "PYTHON_MEMORY_MB" in result["stopped_by"]
        assert time.monotonic() - started < TIMEOUT + MARGIN
    assert_no_stray_processes()


async def test_an_infinite_loop_is_stopped_within_the_limits(client):
    """On a busy machine the wall timeout may fire before one CPU second is used; either limit must stop it."""
    started = time.monotonic()
    try:
        result = await call(client, "execute_python", code="while True:\n    pass")
    except ToolError as exc:
        assert "PYTHON_TIMEOUT" in str(exc)
    else:
        assert result["exit_code"] < 0 and "PYTHON_CPU_SECONDS" in result["stopped_by"]
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert_no_stray_processes()


# The sandbox alone (screen bypassed), inside bubblewrap and in the weaker PYTHON_SANDBOX=none-unsafe mode.
BWRAP = McpSettings.model_fields["bwrap_path"].default
MODES = [pytest.param(BWRAP, id="bwrap"), pytest.param(None, id="none-unsafe")]


@pytest.mark.parametrize("bwrap", MODES)
def test_the_cpu_limit_alone_stops_a_busy_loop(bwrap):
    limits = PythonLimits(timeout=30, cpu_seconds=1, memory_mb=128, max_processes=8, max_output_bytes=4096)
    result = run_python("while True:\n    pass", limits, bwrap=bwrap)
    assert result.exit_code == -signal.SIGXCPU and not result.timed_out


async def test_a_sleeping_loop_is_stopped_by_the_wall_timeout(client):
    started = time.monotonic()
    with pytest.raises(ToolError, match="PYTHON_TIMEOUT"):
        await call(client, "execute_python", code="import time\nwhile True:\n    time.sleep(0.5)")
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert_no_stray_processes()


LIMITS = PythonLimits(timeout=TIMEOUT, cpu_seconds=CPU_SECONDS, memory_mb=128, max_processes=8,
                      max_output_bytes=4096)


@pytest.mark.parametrize("bwrap", MODES)
def test_the_sandbox_alone_contains_a_fork_bomb_and_leaves_no_process(bwrap):
    """Second layer, screen bypassed: rlimits and the process-group kill still stop it."""
    started = time.monotonic()
    result = run_python("import os\nwhile True:\n    os.fork()", LIMITS, bwrap=bwrap)
    assert time.monotonic() - started < TIMEOUT + MARGIN
    assert result.exit_code != 0
    assert_no_stray_processes()


@pytest.mark.parametrize("bwrap", MODES)
def test_the_sandbox_alone_has_no_inherited_secrets_and_a_fresh_folder(monkeypatch, bwrap):
    monkeypatch.setenv("API_KEY", "sk-parent-secret")
    code = "import os\nprint(sorted(os.environ))\nprint(os.getcwd())\nprint(os.getuid())"
    result = run_python(code, LIMITS, bwrap=bwrap)
    names, cwd, uid = result.stdout.splitlines()
    # bubblewrap adds PWD (the scratch folder it starts the code in): nothing of the server's.
    assert names == ("['HOME', 'LANG', 'PATH', 'PWD']" if bwrap else "['HOME', 'LANG', 'PATH']")
    assert "mcp-py-" in cwd and not Path(cwd).exists()
    if os.geteuid() == 0 and sandbox_identity(sandbox_interpreter()) is not None:
        assert int(uid) != 0


def test_the_weaker_mode_alone_cannot_read_root_only_files():
    """Without bubblewrap /etc is in view, so only the unprivileged user keeps /etc/shadow shut."""
    result = run_python("print(open('/etc/shadow').read())", LIMITS, bwrap=None)
    if Path("/etc/shadow").exists() and (os.geteuid() != 0 or sandbox_identity(sandbox_interpreter())):
        assert "PermissionError" in result.stderr and result.stdout == ""
