"""Git tools on a repository under an allowed root; no option injection, and nothing in the repository runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from services.mcp_server.catalog import tool
from services.mcp_server.gate.approvals import approved_state
from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools.git_runner import GitRunner

MAX_LOG_COUNT = 200
# Set by the security middleware while a call runs under an approval bound to the staged tree.
BOUND_TREE = "staged_tree"
# Merge, cherry-pick and revert states that a plain commit of the index would silently drop.
UNFINISHED = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD")

WorkingDir = Annotated[
    str | None, Field(description="A folder inside the repository (default: the first allowed root).")
]


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


def filtered_paths(git: GitRunner, specs: list[str]) -> list[str]:
    """Paths `git add` would stage whose attributes name a filter driver (which these tools never run)."""
    listed = git.run(["ls-files", "-z", "--others", "--modified", "--exclude-standard", "--", *specs])
    paths = sorted({path for path in listed.stdout.split("\0") if path})
    if not paths:
        return []
    checked = git.run(["check-attr", "-z", "--stdin", "filter"], stdin="\0".join(paths).encode("utf-8"))
    if listed.truncated or checked.truncated:
        raise ToolError("too many files to check for filter attributes; stage fewer paths at a time")
    fields = checked.stdout.split("\0")
    return [fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] not in ("unspecified", "unset", "set")]


def staged_tree(git: GitRunner) -> str:
    """The tree the index would commit (`git write-tree`), which also stores that tree's objects."""
    return git.run(["write-tree"]).stdout.strip()


def bind_staged_tree(settings: McpSettings, args: dict[str, Any]) -> dict[str, str]:
    """What an approval of git_commit is bound to: the tree staged in the repository `args` names."""
    working_dir = args.get("working_dir")
    with GitRunner(settings, PathGuard.shared(settings), working_dir if isinstance(working_dir, str) else None) as git:
        return {BOUND_TREE: staged_tree(git)}


def commit_index(git: GitRunner, message: str, approved_tree: str | None) -> str:
    """Commit the index with plumbing (no hooks, no editor, no signing); with `approved_tree`, only that tree."""
    for name in UNFINISHED:
        if (git.layout.git_dir / name).exists():
            raise ToolError(f"git commit failed: {name} exists, so a merge, cherry-pick or revert is unfinished; "
                            "finish it with git itself")
    tree = staged_tree(git)
    if approved_tree is not None and tree != approved_tree:
        raise ToolError(f"the staged changes are not the ones approved (approved tree {approved_tree[:12]}, staged "
                        f"now {tree[:12]}); nothing was committed; call git_commit again to ask for a new approval")
    found = git.run(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], ok_codes=(0, 1))
    head = found.stdout.strip() if found.exit_code == 0 else None
    if head is not None and git.run(["rev-parse", f"{head}^{{tree}}"]).stdout.strip() == tree:
        raise ToolError("git commit failed: nothing to commit (the index matches HEAD); stage changes with git_add")
    # The same clean-up as `git commit --cleanup=strip`: no comment lines, no trailing blank lines.
    text = git.run(["stripspace", "--strip-comments"], stdin=message.encode("utf-8")).stdout
    if not text.strip():
        raise ToolError("the commit message is empty once comment lines are removed")
    parents = ["-p", head] if head else []
    commit = git.run(["commit-tree", "--no-gpg-sign", tree, *parents, "-F", "-"], stdin=text.encode("utf-8"))
    new = commit.stdout.strip()
    subject = text.splitlines()[0]
    git.keep_reflogs()
    # The old value makes the update fail, rather than lose a commit, if HEAD moved meanwhile ("" = unborn).
    git.run(["update-ref", "-m", f"commit{'' if head else ' (initial)'}: {subject}", "HEAD", new, head or ""])
    return new


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add the five git tools."""
    guard = PathGuard.shared(settings)

    @tool(mcp, "git_status")
    def git_status(working_dir: WorkingDir = None) -> dict[str, Any]:
        """Show the branch and changed, staged and untracked files of the repository."""
        with GitRunner(settings, guard, working_dir) as git:
            result = git.run(["status", "--porcelain=v1", "--branch", "-z", "--untracked-files=normal",
                              "--ignore-submodules=all"])
        return {"repository": guard.display(git.top), **parse_status(result.stdout), "truncated": result.truncated}

    @tool(mcp, "git_diff")
    def git_diff(
        file_path: Annotated[str | None, Field(description="Only this file or folder.")] = None,
        staged: Annotated[bool, Field(description="Diff the index against HEAD instead of the worktree.")] = False,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Show the unified diff of unstaged (or staged) changes."""
        with GitRunner(settings, guard, working_dir) as git:
            args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color", "--ignore-submodules=all"]
            args += (["--cached"] if staged else []) + ["--"]
            if file_path is not None:
                args.append(git.pathspec(file_path))
            result = git.run(args)
        return {"repository": guard.display(git.top), "diff": result.stdout, "truncated": result.truncated}

    @tool(mcp, "git_log")
    def git_log(
        max_count: Annotated[int, Field(ge=1, le=MAX_LOG_COUNT, description="Most commits to return.")] = 20,
        file_path: Annotated[str | None, Field(description="Only commits touching this path.")] = None,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """List recent commits (hash, author, date, subject)."""
        with GitRunner(settings, guard, working_dir) as git:
            args = ["log", f"--max-count={max_count}", f"--format={LOG_FORMAT}", "--no-color", "--"]
            if file_path is not None:
                args.append(git.pathspec(file_path))
            result = git.run(args, ok_codes=(0, 128))
        if result.exit_code != 0 and "does not have any commits" not in result.stderr:
            raise ToolError(f"git log failed: {result.stderr.strip()}")
        commits = parse_log(result.stdout) if result.exit_code == 0 else []
        return {"repository": guard.display(git.top), "commits": commits}

    @tool(mcp, "git_add")
    def git_add(
        file_paths: Annotated[list[str] | str, Field(description="Paths to stage, inside the repository.")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Stage files for the next commit (files whose attributes name a filter driver are refused)."""
        paths = [file_paths] if isinstance(file_paths, str) else list(file_paths)
        if not paths:
            raise ToolError("file_paths is empty")
        with GitRunner(settings, guard, working_dir) as git:
            specs = [git.pathspec(path) for path in paths]
            # Staged without its filter, such a file could commit what the filter exists to keep out
            # (an LFS object, a git-crypt plaintext), so it is refused rather than added unfiltered.
            if refused := filtered_paths(git, specs):
                raise ToolError(f"these paths name a filter driver in their attributes, which git_add does not run; "
                                f"stage them with git itself: {', '.join(refused[:20])}")
            git.run(["add", "--", *specs])
            status = parse_status(git.run(["status", "--porcelain=v1", "--branch", "-z",
                                           "--ignore-submodules=all"]).stdout)
        staged = [entry["path"] for entry in status["entries"] if entry["index"] not in " ?"]
        return {"repository": guard.display(git.top), "added": specs, "staged": staged}

    @tool(mcp, "git_commit")
    def git_commit(
        message: Annotated[str, Field(min_length=1, description="Commit message (first line is the subject).")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Commit the staged changes (no hooks, no signing); an approval covers exactly the tree staged then."""
        if not message.strip() or "\0" in message:
            raise ToolError("the commit message is empty or contains a NUL byte")
        bound = approved_state() or {}
        with GitRunner(settings, guard, working_dir) as git:
            commit = commit_index(git, message, bound.get(BOUND_TREE))
            head = git.run(["log", "-1", f"--format={LOG_FORMAT}", commit])
        return {"repository": guard.display(git.top), **parse_log(head.stdout)[0]}
