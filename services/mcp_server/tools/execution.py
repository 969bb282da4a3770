"""Execution tools: run_command (allowlisted programs, no shell) and execute_python (screened and sandboxed)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import string
from pathlib import Path
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from services.mcp_server.catalog import tool
from services.mcp_server.guards.bwrap import require_bwrap
from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.guards.python_screen import screen_python
from services.mcp_server.guards.sandbox import FIXED_PATH, PythonLimits, base_env, run_limited, run_python
from services.mcp_server.settings import McpSettings

logger = logging.getLogger(__name__)

SHELL_OPERATORS = frozenset({";", ";;", "|", "||", "&", "&&", "|&", "<", ">", ">>", "<<", "<<<", ">&", "<&", "&>",
                             "2>", "2>>", "2>&1", "1>", "(", ")", "!"})

# Programs that start other programs (or interpret code) would turn run_command back into a shell, so they are
# refused even if someone adds them to COMMAND_ALLOWLIST.
NEVER_RUN = frozenset({
    "sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "env", "xargs", "find", "sudo", "su", "doas",
    "nohup", "nice", "ionice", "timeout", "setsid", "stdbuf", "chroot", "unshare", "nsenter", "strace", "busybox",
    "python", "python3", "perl", "ruby", "node", "awk", "gawk", "mawk", "sed", "make", "vi", "vim", "less", "more",
    "man", "watch", "script", "ssh", "time", "flock", "taskset", "git",
})
# Options of allowlisted programs that change the system or run a program (GNU getopt accepts abbreviations).
# Also refused: options that read a list of file names from a file (the names inside were never checked against
# the roots), and grep's recursion that follows every symlink (a link in a root may point outside it).
REFUSED_OPTIONS = {
    "date": re.compile(r"^(-[uR]*s|--s)"),
    "sort": re.compile(r"^--(co|fil)"),
    "wc": re.compile(r"^--f"),
    "du": re.compile(r"^--f"),
    "file": re.compile(r"^(-[^-]*f|--fi)"),
    "grep": re.compile(r"^(-[^-]*R|--der)"),
}
# Options of date whose value is the next argument (so it is not an operand), with GNU's shortest abbreviations.
DATE_VALUE_OPTION = re.compile(r"^(-[uR]*[dfr]|--da(te?)?|--f(i(le?)?)?|--ref(e(r(e(n(ce?)?)?)?)?)?)$")
# diff follows symlinks inside the folders it compares unless told not to.
FORCED_OPTIONS = {"diff": ["--no-dereference"]}

FLAG_LETTERS = string.ascii_letters + string.digits
MAX_FLAG_CLUSTER = 32

WorkingDir = Annotated[
    str | None, Field(description="Folder that relative paths resolve against (default: the first allowed root).")
]


def split_command(command: str | list[str]) -> list[str]:
    """Turn a command into argv, refusing anything a shell would treat as an operator or substitution."""
    if isinstance(command, str):
        _refuse_shell_syntax(command)
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ToolError(f"cannot parse the command: {exc}") from exc
    else:
        argv = list(command)
        for arg in argv:
            if arg in SHELL_OPERATORS or "$(" in arg or "`" in arg:
                raise ToolError(f"shell syntax {arg!r} is not supported: run_command never uses a shell")
    if not argv or not argv[0]:
        raise ToolError("the command is empty")
    if any("\0" in arg for arg in argv):
        raise ToolError("arguments may not contain NUL bytes")
    return argv


def _refuse_shell_syntax(command: str) -> None:
    """Scan like a shell would: operators outside quotes, and substitutions outside single quotes, are refused."""
    quote = ""
    escaped = False
    for index, char in enumerate(command):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
            elif quote == '"' and (char == "`" or command.startswith("$(", index)):
                raise ToolError(_shell_error(char if char == "`" else "$("))
        elif char in "'\"":
            quote = char
        elif char in ";|&<>()`\n" or command.startswith("$(", index):
            raise ToolError(_shell_error("$(" if char == "$" else char))


def _shell_error(token: str) -> str:
    shown = "newline" if token == "\n" else repr(token)
    return (
        f"shell syntax {shown} is not supported: run_command runs one program without a shell "
        "(no pipes, chaining, redirection or substitution); make separate calls instead"
    )


def resolve_program(name: str, allowlist: list[str]) -> str:
    """The allowlisted program's absolute path, looked up only in the fixed PATH."""
    if "/" in name:
        raise ToolError(f"give the program by name (e.g. 'ls'), not as a path: {name!r}")
    if name in NEVER_RUN:
        raise ToolError(f"{name!r} can start other programs or run code, so run_command never runs it")
    if name not in allowlist:
        raise ToolError(f"program {name!r} is not in COMMAND_ALLOWLIST ({', '.join(allowlist)})")
    found = shutil.which(name, path=FIXED_PATH)
    if found is None:
        raise ToolError(f"program {name!r} is allowed but not installed on this machine")
    return found


def check_options(program: str, args: list[str]) -> None:
    """Refuse the few options of allowlisted programs that set the clock or start a helper program."""
    pattern = REFUSED_OPTIONS.get(program)
    for arg in args:
        if arg == "--":
            break
        if pattern is not None and pattern.match(arg):
            raise ToolError(f"option {arg!r} of {program} is not allowed in run_command")
    if program == "date":
        _check_date_operands(args)


def _check_date_operands(args: list[str]) -> None:
    """`date MMDDhhmm` sets the clock like `date -s`; only `+FORMAT` operands are allowed."""
    options_done, value_next = False, False
    for arg in args:
        if value_next:
            value_next = False
        elif arg == "--" and not options_done:
            options_done = True
        elif arg.startswith("-") and arg != "-" and not options_done:
            value_next = DATE_VALUE_OPTION.match(arg) is not None
        elif not arg.startswith("+"):
            raise ToolError(f"date operand {arg!r} would set the clock; only '+FORMAT' operands are allowed")


def check_path_arguments(args: list[str], cwd: Path, guard: PathGuard) -> None:
    """Arguments that name a path (or an existing entry) must resolve inside the allowed roots."""
    for arg in args:
        for value in _path_parts(arg):
            looks_like_path = "/" in value or value in (".", "..") or os.path.lexists(cwd / value)
            if looks_like_path:
                real = Path(os.path.realpath(guard.absolute(value, cwd)))
                guard.check(real, arg)


def _path_parts(arg: str) -> list[str]:
    """The parts of an argument that could be a path: the whole word, or an option's value."""
    if not arg.startswith("-"):
        return [arg]
    parts = [value] if "=" in arg and (value := arg.split("=", 1)[1]) else []
    if arg.startswith("--"):
        return parts
    # In a cluster such as `-uf/etc/passwd` the value may start after any flag letter, so every such tail counts.
    flags = len(arg) - 1 - len(arg[1:].lstrip(FLAG_LETTERS))
    if flags > MAX_FLAG_CLUSTER:
        raise ToolError(f"option cluster {arg[:40]!r}... is longer than {MAX_FLAG_CLUSTER} letters")
    return parts + [arg[index:] for index in range(2, min(len(arg), flags + 2))]


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add run_command and execute_python."""
    guard = PathGuard.shared(settings)
    if settings.python_sandbox == "none-unsafe":
        logger.warning("PYTHON_SANDBOX=none-unsafe: execute_python runs code without bubblewrap, on rlimits alone")

    @tool(mcp, "run_command")
    def run_command(
        command: Annotated[
            str | list[str],
            Field(description="Program and arguments, as an argv list or one string split like a shell "
                  "would split words (no pipes, redirection, chaining or substitution)."),
        ],
        working_dir: WorkingDir = None,
        timeout: Annotated[
            float | None, Field(gt=0, description="Seconds before the command is killed (at most COMMAND_TIMEOUT).")
        ] = None,
    ) -> dict[str, Any]:
        """Run one allowlisted program without a shell, inside an allowed folder; returns exit code and output."""
        argv = split_command(command)
        cwd = guard.base(working_dir)
        program = resolve_program(argv[0], settings.command_allowlist)
        check_options(argv[0], argv[1:])
        check_path_arguments(argv[1:], cwd, guard)
        limit = min(timeout or settings.command_timeout, settings.command_timeout)
        result = run_limited(
            [program, *FORCED_OPTIONS.get(argv[0], []), *argv[1:]], cwd=cwd, env=base_env(cwd), timeout=limit,
            max_output=settings.max_output_bytes,
        )
        if result.timed_out:
            raise ToolError(f"{argv[0]} was stopped after {limit:g} s (COMMAND_TIMEOUT)")
        return {"command": argv, "working_dir": guard.display(cwd), **result.as_dict()}

    @tool(mcp, "execute_python")
    def execute_python(
        code: Annotated[str, Field(description="Python source; stdlib maths/text/data modules only, no OS access.")],
        working_dir: Annotated[
            str | None, Field(description="Ignored for safety: code always runs in a fresh temporary folder.")
        ] = None,
    ) -> dict[str, Any]:
        """Run a Python snippet in a bubblewrap sandbox with resource limits; returns exit code and output."""
        # The sandbox is checked first: code reworked to pass the screen could not run without it anyway.
        bwrap = require_bwrap(settings.bwrap_path) if settings.python_sandbox == "bwrap" else None
        screen_python(code)
        limits = PythonLimits(
            timeout=settings.python_timeout, cpu_seconds=settings.python_cpu_seconds,
            memory_mb=settings.python_memory_mb, max_processes=settings.python_max_processes,
            max_output_bytes=settings.max_output_bytes,
        )
        result = run_python(code, limits, bwrap=bwrap)
        if result.timed_out:
            raise ToolError(f"the code was stopped after {limits.timeout:g} s (PYTHON_TIMEOUT)")
        return _python_result(result.as_dict(), limits)


def _python_result(result: dict[str, Any], limits: PythonLimits) -> dict[str, Any]:
    """Name the limit a killed run hit, so the caller knows why it stopped."""
    code = result["exit_code"]
    if code is not None and code < 0:
        signals = {-9: "killed (SIGKILL)", -24: f"CPU limit of {limits.cpu_seconds} s (PYTHON_CPU_SECONDS)",
                   -25: "file size limit"}
        result["stopped_by"] = signals.get(code, f"signal {-code}")
    elif "MemoryError" in result["stderr"]:
        result["stopped_by"] = f"memory limit of {limits.memory_mb} MiB (PYTHON_MEMORY_MB)"
    return result
