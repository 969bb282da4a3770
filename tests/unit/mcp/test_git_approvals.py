"""Approvals that depend on arguments: writes that steer git need approval, and an approved commit is pinned to the
tree that was staged when it was approved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from services.mcp_server.server import build_server
from services.mcp_server.tools import git
from services.mcp_server.tools.git_runner import GitRunner
from tests.unit.mcp.security_support import make_settings


def sh_git(repo: Path, *args: str) -> str:
    """Set up and inspect fixtures with the real git (test code, not the tool under test)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "allowed" / "repo"
    repo.mkdir(parents=True)
    sh_git(repo, "init", "-q", "-b", "main")
    sh_git(repo, "config", "user.name", "Test User")
    sh_git(repo, "config", "user.email", "test@example.invalid")
    (repo / "a.txt").write_text("a1\n")
    sh_git(repo, "add", ".")
    sh_git(repo, "commit", "-q", "-m", "initial commit")
    return repo


def server(tmp_path: Path, families: list[str], **overrides: Any) -> Any:
    settings = make_settings(tmp_path, MCP_ALLOWED_ROOTS=str(tmp_path / "allowed"), **overrides)
    return build_server(settings, families)


async def pending(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must wait for approval; return the request id."""
    with pytest.raises(ToolError) as err:
        await client.call_tool(tool, args)
    body = json.loads(str(err.value))
    assert body["approval_required"] is True, body
    return str(body["request_id"])


async def test_an_approved_commit_is_refused_when_the_index_changed_after_approval(tmp_path: Path, repo: Path) -> None:
    mcp, layer = server(tmp_path, ["git"])
    head = sh_git(repo, "rev-parse", "HEAD")
    args = {"message": "reviewed change", "working_dir": "repo"}
    async with Client(mcp) as client:
        (repo / "a.txt").write_text("a2\n")
        await client.call_tool("git_add", {"file_paths": ["a.txt"], "working_dir": "repo"})
        approved_tree = sh_git(repo, "write-tree")
        request_id = await pending(client, "git_commit", args)
        layer.approvals.decide(request_id, "admin", approve=True)
        (repo / "sneaked.txt").write_text("not reviewed\n")
        await client.call_tool("git_add", {"file_paths": ["sneaked.txt"], "working_dir": "repo"})
        with pytest.raises(ToolError, match=r"changed since it was approved \(staged_tree \w+ is now \w+\)"):
            await client.call_tool("git_commit", args)
        assert sh_git(repo, "rev-parse", "HEAD") == head
        # Asking again binds the new approval to what is staged now, and that is what gets committed.
        again = await pending(client, "git_commit", args)
        assert again != request_id
        layer.approvals.decide(again, "admin", approve=True)
        done = (await client.call_tool("git_commit", args)).data
    assert done["subject"] == "reviewed change"
    assert sh_git(repo, "rev-parse", "HEAD^{tree}") != approved_tree
    assert sh_git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["a.txt", "sneaked.txt"]


async def test_an_unchanged_index_commits_the_approved_tree(tmp_path: Path, repo: Path) -> None:
    mcp, layer = server(tmp_path, ["git"])
    args = {"message": "reviewed change", "working_dir": "repo"}
    async with Client(mcp) as client:
        (repo / "a.txt").write_text("a2\n")
        await client.call_tool("git_add", {"file_paths": ["a.txt"], "working_dir": "repo"})
        approved_tree = sh_git(repo, "write-tree")
        request_id = await pending(client, "git_commit", args)
        shown = layer.approvals.get(request_id).public()
        assert shown["bound"] == {"staged_tree": approved_tree}  # the approver sees what the approval covers
        layer.approvals.decide(request_id, "admin", approve=True)
        await client.call_tool("git_commit", args)
    assert sh_git(repo, "rev-parse", "HEAD^{tree}") == approved_tree


GIT_CONTROL = [
    ("write_file", "repo/.git/config"),
    ("write_file", "repo/.git/hooks/pre-commit"),
    ("write_file", "repo/src/../.git/info/attributes"),
    ("write_file", "repo/link/config"),  # a symlink to .git
    ("write_file", "store/config"),  # a git folder that a `.git` file points to
    ("write_file", "repo/.gitattributes"),
    ("write_file", "repo/src/.gitattributes"),
    ("write_file", "repo/.gitmodules"),
    ("write_file", ".gitconfig"),
    ("write_file", ".config/git/attributes"),
    ("write_file", "repo/.git"),
    ("create_directory", "repo/.git/hooks/more"),
    ("create_directory", "fresh/.git"),
]


def git_control_tree(repo: Path) -> None:
    (repo / "src").mkdir()
    (repo / "link").symlink_to(repo / ".git", target_is_directory=True)
    allowed = repo.parent
    sh_git(allowed, "init", "-q", "--bare", "store")
    linked = allowed / "linked"
    linked.mkdir()
    (linked / ".git").write_text("gitdir: ../store\n")
    (allowed / ".config" / "git").mkdir(parents=True)


@pytest.mark.parametrize(("tool", "path"), GIT_CONTROL)
async def test_writes_that_steer_git_wait_for_approval(tmp_path: Path, repo: Path, tool: str, path: str) -> None:
    git_control_tree(repo)
    target = tmp_path / "allowed" / path
    before = target.read_bytes() if target.is_file() else None
    mcp, _ = server(tmp_path, ["filesystem"])
    args = {"path": path, "content": "[core]\n\tfsmonitor = touch /tmp/pwned\n"} if tool == "write_file" else \
        {"path": path}
    async with Client(mcp) as client:
        await pending(client, tool, args)
    assert (target.read_bytes() if target.is_file() else None) == before
    assert target.is_dir() == (path in ("repo/.git",))


@pytest.mark.parametrize("path", ["repo/notes.txt", "repo/.github/workflow.yml", "repo/src/git/config",
                                  "repo/.gitignore", "repo/src/config"])
async def test_ordinary_writes_still_run_directly(tmp_path: Path, repo: Path, path: str) -> None:
    git_control_tree(repo)
    mcp, _ = server(tmp_path, ["filesystem"])
    async with Client(mcp) as client:
        await client.call_tool("write_file", {"path": path, "content": "x\n", "create_parents": True})
    assert (tmp_path / "allowed" / path).read_text() == "x\n"


async def test_an_admin_writes_git_control_files_without_approval(tmp_path: Path, repo: Path) -> None:
    mcp, _ = server(tmp_path, ["filesystem"], MCP_OWNER_ROLE="admin")
    async with Client(mcp) as client:
        await client.call_tool("write_file", {"path": "repo/.gitattributes", "content": "*.txt text\n"})
    assert (repo / ".gitattributes").read_text() == "*.txt text\n"


async def test_a_change_racing_the_approved_call_is_caught_by_the_tool_itself(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index changes after the middleware let the call through but before git_commit reads it."""
    mcp, layer = server(tmp_path, ["git"])
    head = sh_git(repo, "rev-parse", "HEAD")
    args = {"message": "reviewed change", "working_dir": "repo"}
    commit_index = git.commit_index

    def racing(runner: GitRunner, message: str, approved_tree: str | None) -> str:
        (repo / "raced.txt").write_text("staged in the gap\n")
        sh_git(repo, "add", "raced.txt")
        return commit_index(runner, message, approved_tree)

    async with Client(mcp) as client:
        (repo / "a.txt").write_text("a2\n")
        await client.call_tool("git_add", {"file_paths": ["a.txt"], "working_dir": "repo"})
        layer.approvals.decide(await pending(client, "git_commit", args), "admin", approve=True)
        monkeypatch.setattr(git, "commit_index", racing)
        with pytest.raises(ToolError, match="staged changes are not the ones approved"):
            await client.call_tool("git_commit", args)
    assert sh_git(repo, "rev-parse", "HEAD") == head
