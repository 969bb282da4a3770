"""Git tools on a repository under an allowed root; no option injection, no code execution from repo config."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from services.mcp_server.security.paths import PathGuard
from services.mcp_server.security.sandbox import FIXED_PATH, RunResult, run_limited
from services.mcp_server.settings import McpSettings

MAX_LOG_COUNT = 200
# Config keys that make git run a program; a hostile repository's own config may set them, so they are blanked.
EXECUTING_KEYS = re.compile(
    r"^(core\.(fsmonitor|hookspath|sshcommand|editor|pager|askpass|gitproxy|alternaterefscommand)"
    r"|sequence\.editor|diff\.external|diff\..+\.(textconv|command)|filter\..+\.(clean|smudge|process)"
    r"|merge\..+\.driver|gpg\.program|gpg\..+\.program|credential\.helper|credential\..+\.helper"
    r"|uploadpack\.packobjectshook|remote\..+\.(uploadpack|receivepack)|protocol\..+\.allow|alias\..+)$"
)
SAFE_CONFIG = [
    "core.fsmonitor=false", "core.hooksPath=/dev/null", "core.pager=cat", "core.editor=true",
    "diff.external=", "commit.gpgSign=false", "tag.gpgSign=false", "gc.auto=0", "color.ui=false",
    "protocol.allow=never", "core.quotePath=false",
    # A root server in a container sees the user's repos as owned by someone else; git's ownership check guards
    # against code from their config, which the blanking of EXECUTING_KEYS already prevents.
    "safe.directory=*",
]

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WorkingDir = Annotated[
    str | None, Field(description="A folder inside the repository (default: the first allowed root).")
]


def _git_program() -> str:
    found = shutil.which("git", path=FIXED_PATH)
    if found is None:
        raise ToolError("git is not installed on this machine")
    return found


def refuse_option(value: str, what: str) -> None:
    """Any user argument that git could read as an option is refused."""
    if value.startswith("-"):
        raise ToolError(f"{what} {value!r} starts with '-': options cannot be passed to git")
    if "\0" in value:
        raise ToolError(f"{what} contains a NUL byte")


class GitRunner:
    """Runs git in one repository with a fixed, scrubbed environment and neutralised executing config."""

    def __init__(self, settings: McpSettings, guard: PathGuard, working_dir: str | None) -> None:
        self.settings, self.guard = settings, guard
        self.cwd = guard.base(working_dir)
        self.env = {
            "PATH": FIXED_PATH, "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", str(self.cwd)),
            "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "1",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_NO_REPLACE_OBJECTS": "1",
        }
        self.config = list(SAFE_CONFIG)
        self.top = self._toplevel()
        self.config += [f"{key}=" for key in self._executing_keys()]

    def _toplevel(self) -> Path:
        result = self._raw(["rev-parse", "--show-toplevel", "--absolute-git-dir"], self.cwd)
        if result.exit_code != 0:
            raise ToolError(f"{self.guard.display(self.cwd)!r} is not inside a git repository")
        top, git_dir = (Path(os.path.realpath(line)) for line in result.stdout.splitlines()[:2])
        for what, path in (("repository", top), ("git folder", git_dir)):
            if not self.guard.is_allowed(path):
                raise ToolError(
                    f"the {what} {self.guard.display(path)!r} is outside the allowed roots ({self.guard.roots_text()})"
                )
        return top

    def _executing_keys(self) -> list[str]:
        listed = self._raw(["config", "--list", "--name-only", "--show-scope"], self.top)
        pinned = {item.split("=", 1)[0].lower() for item in SAFE_CONFIG}
        keys: list[str] = []
        for line in listed.stdout.splitlines():
            scope, _, key = line.partition("\t")
            # Keys SAFE_CONFIG already pins keep their safe value; blanking them could mean "default" again.
            if scope in ("local", "worktree") and EXECUTING_KEYS.match(key.lower()) and key.lower() not in pinned:
                keys.append(key)
        return keys

    def _raw(self, args: list[str], cwd: Path, stdin: bytes | None = None) -> RunResult:
        argv = [_git_program(), "--no-pager"]
        for item in self.config:
            argv += ["-c", item]
        return run_limited(
            argv + args, cwd=cwd, env=self.env, timeout=self.settings.command_timeout,
            max_output=self.settings.max_output_bytes, stdin_data=stdin,
        )

    def run(self, args: list[str], stdin: bytes | None = None, ok_codes: tuple[int, ...] = (0,)) -> RunResult:
        """Run git in the repository root; a failure becomes a ToolError carrying git's message."""
        result = self._raw(args, self.top, stdin)
        if result.timed_out:
            raise ToolError(f"git {args[0]} was stopped after {self.settings.command_timeout:g} s")
        if result.exit_code not in ok_codes:
            message = (result.stderr or result.stdout).strip() or f"exit code {result.exit_code}"
            raise ToolError(f"git {args[0]} failed: {message}")
        return result

    def pathspec(self, path: str) -> str:
        """A user path as a pathspec relative to the repository root; it must stay inside the repository."""
        refuse_option(path, "path")
        # The last component stays as named: a symlink inside the repo is added as a link, not followed.
        real = self.guard.resolve_entry(path, self.cwd)
        if not (real == self.top or real.is_relative_to(self.top)):
            raise ToolError(f"path {path!r} is outside the repository {self.guard.display(self.top)!r}")
        self.guard.check(real, path)
        if real.is_relative_to(self.top / ".git"):
            raise ToolError(f"path {path!r} is inside the .git folder")
        return str(real.relative_to(self.top)) or "."


def parse_status(raw: str) -> dict[str, Any]:
    """Parse `git status --porcelain=v1 --branch -z` into the branch and entries."""
    records = raw.split("\0")
    branch = records[0][3:] if records and records[0].startswith("## ") else None
    entries: list[dict[str, Any]] = []
    index = 1 if branch is not None else 0
    while index < len(records):
        record = records[index]
        index += 1
        if len(record) < 4:
            continue
        entry: dict[str, Any] = {"path": record[3:], "index": record[0], "worktree": record[1]}
        if record[0] in "RC":
            entry["from"] = records[index]
            index += 1
        entries.append(entry)
    return {"branch": branch, "clean": not entries, "entries": entries}


LOG_FORMAT = "%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"


def parse_log(raw: str) -> list[dict[str, str]]:
    """Parse records written with LOG_FORMAT."""
    commits = []
    for record in raw.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 5:
            commits.append(dict(zip(("commit", "author", "email", "date", "subject"), fields, strict=True)))
    return commits


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add the five git tools."""
    guard = PathGuard(settings)

    @mcp.tool(name="git_status", annotations=READ_ONLY)
    def git_status(working_dir: WorkingDir = None) -> dict[str, Any]:
        """Show the branch and changed, staged and untracked files of the repository."""
        git = GitRunner(settings, guard, working_dir)
        result = git.run(["status", "--porcelain=v1", "--branch", "-z", "--untracked-files=normal"])
        return {"repository": guard.display(git.top), **parse_status(result.stdout), "truncated": result.truncated}

    @mcp.tool(name="git_diff", annotations=READ_ONLY)
    def git_diff(
        file_path: Annotated[str | None, Field(description="Only this file or folder.")] = None,
        staged: Annotated[bool, Field(description="Diff the index against HEAD instead of the worktree.")] = False,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Show the unified diff of unstaged (or staged) changes."""
        git = GitRunner(settings, guard, working_dir)
        args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"] + (["--cached"] if staged else [])
        args.append("--")
        if file_path is not None:
            args.append(git.pathspec(file_path))
        result = git.run(args)
        return {"repository": guard.display(git.top), "diff": result.stdout, "truncated": result.truncated}

    @mcp.tool(name="git_log", annotations=READ_ONLY)
    def git_log(
        max_count: Annotated[int, Field(ge=1, le=MAX_LOG_COUNT, description="Most commits to return.")] = 20,
        file_path: Annotated[str | None, Field(description="Only commits touching this path.")] = None,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """List recent commits (hash, author, date, subject)."""
        git = GitRunner(settings, guard, working_dir)
        args = ["log", f"--max-count={max_count}", f"--format={LOG_FORMAT}", "--no-color", "--"]
        if file_path is not None:
            args.append(git.pathspec(file_path))
        result = git.run(args, ok_codes=(0, 128))
        if result.exit_code != 0 and "does not have any commits" not in result.stderr:
            raise ToolError(f"git log failed: {result.stderr.strip()}")
        commits = parse_log(result.stdout) if result.exit_code == 0 else []
        return {"repository": guard.display(git.top), "commits": commits}

    @mcp.tool(name="git_add", annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    def git_add(
        file_paths: Annotated[list[str] | str, Field(description="Paths to stage, inside the repository.")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Stage files for the next commit."""
        paths = [file_paths] if isinstance(file_paths, str) else list(file_paths)
        if not paths:
            raise ToolError("file_paths is empty")
        git = GitRunner(settings, guard, working_dir)
        specs = [git.pathspec(path) for path in paths]
        git.run(["add", "--", *specs])
        status = parse_status(git.run(["status", "--porcelain=v1", "--branch", "-z"]).stdout)
        staged = [entry["path"] for entry in status["entries"] if entry["index"] not in " ?"]
        return {"repository": guard.display(git.top), "added": specs, "staged": staged}

    @mcp.tool(name="git_commit", annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    def git_commit(
        message: Annotated[str, Field(min_length=1, description="Commit message (first line is the subject).")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Commit the staged changes (hooks do not run)."""
        if not message.strip() or "\0" in message:
            raise ToolError("the commit message is empty or contains a NUL byte")
        git = GitRunner(settings, guard, working_dir)
        # The message goes through stdin, so its text can never be read as an option.
        git.run(["commit", "--no-verify", "--cleanup=strip", "--file=-"], stdin=message.encode("utf-8"))
        head = git.run(["log", "-1", f"--format={LOG_FORMAT}"])
        return {"repository": guard.display(git.top), **parse_log(head.stdout)[0]}
