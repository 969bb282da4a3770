"""git on a hostile repository: git never reads the repository's own config, hooks or info files that name programs.

Every program git can run from configuration (filters, diff and merge drivers, textconv, fsmonitor, hooks, pager,
editor, sshCommand, askpass, credential helpers, gpg) is named in a config file; attributes only name a driver that
config must define. So git runs against a private common folder whose `config` is ours and which has no `hooks`;
objects, refs and logs are linked from the real repository, and GIT_DIR still points at the real per-worktree files
(HEAD, the index). System and global config are off, and HOME is an empty folder. See docs/adr/0006.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fastmcp.exceptions import ToolError

from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.guards.sandbox import FIXED_PATH, RunResult, run_limited
from services.mcp_server.settings import McpSettings

# Plain data worth keeping from the repository's config (and, for the identity, the server user's own):
# none of these names a program.
REPO_DATA_KEYS = frozenset({
    "user.name", "user.email", "core.filemode", "core.symlinks", "core.ignorecase", "core.autocrlf", "core.eol",
    "core.safecrlf",
})
GLOBAL_DATA_KEYS = frozenset({"user.name", "user.email"})
REPO_FORMAT_KEYS = frozenset({"extensions.objectformat", "extensions.refstorage"})
# Left out of the private common folder: what names programs, and where git would look for more config.
NOT_LINKED = frozenset({"config", "config.worktree", "hooks", "commondir"})
MAX_GITFILE_BYTES = 4096
OWN_CONFIG = """\
[core]
\trepositoryformatversion = {version}
\tbare = false
\tlogAllRefUpdates = true
\thooksPath = /dev/null
\tfsmonitor = false
\tattributesFile = /dev/null
\texcludesFile = /dev/null
\tquotePath = false
{extensions}[commit]
\tgpgSign = false
[tag]
\tgpgSign = false
[log]
\tshowSignature = false
[diff]
\tignoreSubmodules = all
[status]
\tsubmoduleSummary = false
[submodule]
\trecurse = false
[gc]
\tauto = 0
[maintenance]
\tauto = false
[protocol]
\tallow = never
[color]
\tui = false
"""


@dataclass(frozen=True)
class Layout:
    """Where a repository lives: its work tree, its own git folder (HEAD, index) and the common one (objects, refs)."""

    top: Path
    git_dir: Path
    common_dir: Path


def _git_program() -> str:
    found = shutil.which("git", path=FIXED_PATH)
    if found is None:
        raise ToolError("git is not installed on this machine")
    return found


def find_layout(start: Path, guard: PathGuard) -> Layout:
    """Find the repository above `start` the way git would, but honour no config (core.worktree is ignored)."""
    shown = guard.display(start)
    for folder in (start, *start.parents):
        entry = folder / ".git"
        if os.path.lexists(entry):
            break
    else:
        raise ToolError(f"{shown!r} is not inside a git repository")
    if not guard.is_allowed(folder):
        raise ToolError(f"the repository {guard.display(folder)!r} is outside the allowed roots ({guard.roots_text()})")
    git_dir = _git_dir(entry, shown)
    common_dir = _common_dir(git_dir, shown)
    for path in {git_dir, common_dir}:
        if not guard.is_allowed(path):
            raise ToolError(f"the git folder {guard.display(path)!r} is outside the allowed roots "
                            f"({guard.roots_text()})")
    if start == git_dir or start.is_relative_to(git_dir):
        raise ToolError(f"{shown!r} is inside the git folder; use a folder of the work tree")
    return Layout(folder, git_dir, common_dir)


def _git_dir(entry: Path, shown: str) -> Path:
    """The folder a `.git` entry stands for: itself, or where its `gitdir:` line points."""
    real = Path(os.path.realpath(entry))
    if real.is_dir():
        return real
    try:
        with open(real, "rb") as handle:
            first = handle.read(MAX_GITFILE_BYTES).decode("utf-8", "replace").splitlines()[:1]
    except OSError as exc:
        raise ToolError(f"cannot read {str(entry)!r}: {exc.strerror or exc}") from exc
    if not first or not first[0].startswith("gitdir: "):
        raise ToolError(f"{shown!r} is not inside a git repository (.git is neither a folder nor a gitdir file)")
    target = Path(os.path.realpath(entry.parent / first[0].removeprefix("gitdir: ").strip()))
    if not (target / "HEAD").is_file():
        raise ToolError(f"{shown!r} is not inside a git repository (.git points at {str(target)!r})")
    return target


def _common_dir(git_dir: Path, shown: str) -> Path:
    """A linked worktree's git folder names the common one in `commondir`; otherwise they are the same."""
    pointer = git_dir / "commondir"
    common = git_dir
    if pointer.is_file():
        try:
            text = pointer.read_text(encoding="utf-8", errors="replace").strip()
        except OSError as exc:
            raise ToolError(f"cannot read {str(pointer)!r}: {exc.strerror or exc}") from exc
        common = Path(os.path.realpath(git_dir / text))
    if not ((common / "objects").is_dir() and (common / "refs").is_dir() and (git_dir / "HEAD").is_file()):
        raise ToolError(f"{shown!r} is not inside a git repository ({str(git_dir)!r} is not a git folder)")
    return common


class GitRunner:
    """Runs git in one repository with a scrubbed environment and none of the repository's own config.

    Use it as a context manager: it owns a private temporary folder (the common folder git sees, and HOME).
    """

    def __init__(self, settings: McpSettings, guard: PathGuard, working_dir: str | None) -> None:
        self.settings, self.guard = settings, guard
        self.cwd = guard.base(working_dir)
        self.layout = find_layout(self.cwd, guard)
        self.top = self.layout.top
        self._private: Path | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> GitRunner:
        self._private = Path(tempfile.mkdtemp(prefix="mcp-git-"))
        try:
            self.env = self._prepare(self._private)
        except BaseException:
            shutil.rmtree(self._private, ignore_errors=True)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)

    def _prepare(self, private: Path) -> dict[str, str]:
        """Build the private common folder and the environment every git call gets."""
        home, common = private / "home", private / "common"
        home.mkdir()
        common.mkdir()
        base = {
            "PATH": FIXED_PATH, "LANG": "C.UTF-8", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "1",
            "GIT_NO_REPLACE_OBJECTS": "1", "GIT_CEILING_DIRECTORIES": str(private),
        }
        data = self._global_data(home, base) | self._config_data(self.layout.common_dir / "config", REPO_DATA_KEYS,
                                                                   home, base)
        object_format = data.pop("extensions.objectformat", "sha1").lower()
        ref_storage = data.pop("extensions.refstorage", "files").lower()
        if object_format not in ("sha1", "sha256") or ref_storage != "files":
            raise ToolError(f"the repository stores objects as {object_format!r} and refs as {ref_storage!r}; "
                            "these tools read sha1 or sha256 objects with files refs only")
        extensions = "" if object_format == "sha1" else f"[extensions]\n\tobjectFormat = {object_format}\n"
        (common / "config").write_text(
            OWN_CONFIG.format(version=0 if object_format == "sha1" else 1, extensions=extensions), encoding="utf-8")
        for name in os.listdir(self.layout.common_dir):
            if name not in NOT_LINKED and not name.endswith(".lock"):
                os.symlink(self.layout.common_dir / name, common / name)
        env = base | {"GIT_DIR": str(self.layout.git_dir), "GIT_COMMON_DIR": str(common),
                      "GIT_WORK_TREE": str(self.top), "GIT_CONFIG_COUNT": str(len(data))}
        # Data travels as command-line config (GIT_CONFIG_KEY_n), never written into a file git would parse.
        for index, (key, value) in enumerate(sorted(data.items())):
            env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
        return env

    def _global_data(self, home: Path, env: dict[str, str]) -> dict[str, str]:
        """The server user's git identity (only that) from their global config."""
        real_home = Path(os.environ.get("HOME") or Path.home())
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or real_home / ".config")
        found: dict[str, str] = {}
        for path in (xdg / "git" / "config", real_home / ".gitconfig"):  # the later one wins, as in git
            found |= self._config_data(path, GLOBAL_DATA_KEYS, home, env, must_be_allowed=False)
        return found

    def _config_data(self, path: Path, keys: frozenset[str], home: Path, env: dict[str, str], *,
                     must_be_allowed: bool = True) -> dict[str, str]:
        """Chosen plain values of one config file, read by `git config --file` without includes."""
        real = Path(os.path.realpath(path))
        try:
            regular = stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            return {}
        if not regular or (must_be_allowed and not self.guard.is_allowed(real)):
            return {}
        result = self._spawn(["config", "--file", str(real), "--no-includes", "--list", "-z"], home, env)
        if result.exit_code != 0:
            raise ToolError(f"cannot read the git config {self.guard.display(real)!r}: {result.stderr.strip()}")
        # The repository's format is data too: the private config must declare the same one.
        wanted = keys | REPO_FORMAT_KEYS if must_be_allowed else keys
        found: dict[str, str] = {}
        for record in result.stdout.split("\0"):
            key, _, value = record.partition("\n")
            if key.lower() in wanted:
                found[key.lower()] = value
        return found

    def _spawn(self, args: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> RunResult:
        return run_limited(
            [_git_program(), "--no-pager", *args], cwd=cwd, env=env, timeout=self.settings.command_timeout,
            max_output=self.settings.max_output_bytes, stdin_data=stdin,
        )

    def run(self, args: list[str], stdin: bytes | None = None, ok_codes: tuple[int, ...] = (0,)) -> RunResult:
        """Run git in the repository root; a failure becomes a ToolError carrying git's message."""
        if self._private is None:
            raise RuntimeError("GitRunner is used outside its `with` block")
        result = self._spawn(args, self.top, self.env, stdin)
        if result.timed_out:
            raise ToolError(f"git {args[0]} was stopped after {self.settings.command_timeout:g} s")
        if result.exit_code not in ok_codes:
            message = (result.stderr or result.stdout).strip() or f"exit code {result.exit_code}"
            raise ToolError(f"git {args[0]} failed: {message}")
        return result

    def keep_reflogs(self) -> None:
        """Before a ref changes: a repository without a `logs` folder gets one, so its reflog lands in it."""
        if self._private is None:
            raise RuntimeError("GitRunner is used outside its `with` block")
        real, linked = self.layout.common_dir / "logs", self._private / "common" / "logs"
        if not os.path.lexists(linked):
            real.mkdir(exist_ok=True)
            os.symlink(real, linked)

    def pathspec(self, path: str) -> str:
        """A user path as a pathspec relative to the repository root; it must stay inside the repository."""
        refuse_option(path, "path")
        # The last component stays as named: a symlink inside the repo is added as a link, not followed.
        real = self.guard.resolve_entry(path, self.cwd)
        if not (real == self.top or real.is_relative_to(self.top)):
            raise ToolError(f"path {path!r} is outside the repository {self.guard.display(self.top)!r}")
        self.guard.check(real, path)
        if real.is_relative_to(self.top / ".git") or real.is_relative_to(self.layout.git_dir):
            raise ToolError(f"path {path!r} is inside the .git folder")
        return str(real.relative_to(self.top)) or "."


def refuse_option(value: str, what: str) -> None:
    """Any user argument that git could read as an option is refused."""
    if value.startswith("-"):
        raise ToolError(f"{what} {value!r} starts with '-': options cannot be passed to git")
    if "\0" in value:
        raise ToolError(f"{what} contains a NUL byte")
