"""Git tools on a temporary repository, with option injection and escapes (hostile repositories: test_git_hostile)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import git
from tests.support.mcp import call_in_repo as call


def sh_git(repo: Path, *args: str) -> str:
    """Set up fixtures with the real git (test code, not the tool under test)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    repo = allowed / "repo"
    (repo / "src").mkdir(parents=True)
    outside.mkdir()
    sh_git(repo, "init", "-q", "-b", "main")
    sh_git(repo, "config", "user.name", "Test User")
    sh_git(repo, "config", "user.email", "test@example.invalid")
    (repo / "README.md").write_text("hello\n")
    (repo / "src" / "app.py").write_text("print('v1')\n")
    sh_git(repo, "add", ".")
    sh_git(repo, "commit", "-q", "-m", "initial commit")
    (allowed / "x").write_text("outside the repo but inside the root\n")
    return {"allowed": allowed, "repo": repo, "outside": outside}


def settings_for(root: Path) -> McpSettings:
    return McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=str(root), COMMAND_TIMEOUT="20")  # type: ignore[call-arg]


@pytest.fixture()
async def client(tree: dict[str, Path]):
    mcp = FastMCP("git-test")
    git.register(mcp, settings_for(tree["allowed"]))
    async with Client(mcp) as connected:
        yield connected



async def test_status_diff_add_commit_and_log_round_trip(client, tree):
    repo = tree["repo"]
    clean = await call(client, "git_status")
    assert clean["clean"] is True and clean["branch"] == "main" and clean["repository"] == str(repo)
    (repo / "src" / "app.py").write_text("print('v2')\n")
    (repo / "new file.txt").write_text("new\n")
    status = await call(client, "git_status")
    assert {(e["path"], e["index"], e["worktree"]) for e in status["entries"]} == {
        ("src/app.py", " ", "M"), ("new file.txt", "?", "?")}
    diff = await call(client, "git_diff")
    assert "-print('v1')" in diff["diff"] and "+print('v2')" in diff["diff"]
    added = await call(client, "git_add", file_paths=["src/app.py", "new file.txt"])
    assert sorted(added["staged"]) == ["new file.txt", "src/app.py"]
    assert (await call(client, "git_diff"))["diff"] == ""
    staged = await call(client, "git_diff", staged=True, file_path="src/app.py")
    assert "+print('v2')" in staged["diff"] and "new file.txt" not in staged["diff"]
    commit = await call(client, "git_commit", message="Update app\n\nBody text.")
    assert commit["subject"] == "Update app" and len(commit["commit"]) == 40
    log = await call(client, "git_log", max_count=5)
    assert [c["subject"] for c in log["commits"]] == ["Update app", "initial commit"]
    assert (await call(client, "git_log", max_count=1))["commits"][0]["commit"] == commit["commit"]


async def test_paths_resolve_from_a_subfolder_and_a_single_string_is_accepted(client, tree):
    (tree["repo"] / "src" / "app.py").write_text("print('v3')\n")
    added = await call(client, "git_add", file_paths="app.py", working_dir="repo/src")
    assert added["added"] == ["src/app.py"]
    one = await call(client, "git_log", file_path="../README.md", working_dir="repo/src")
    assert len(one["commits"]) == 1


async def test_a_commit_message_that_looks_like_an_option_is_just_text(client, tree):
    (tree["repo"] / "README.md").write_text("changed\n")
    await call(client, "git_add", file_paths="README.md")
    commit = await call(client, "git_commit", message="--amend --author=evil")
    assert commit["subject"] == "--amend --author=evil"
    assert len((await call(client, "git_log"))["commits"]) == 2


async def test_committing_nothing_fails_clearly(client):
    with pytest.raises(ToolError, match="git commit failed"):
        await call(client, "git_commit", message="empty")


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("git_diff", {"file_path": "--output=OUT/injected"}),
        ("git_diff", {"file_path": "-o"}),
        ("git_log", {"file_path": "--output=OUT/injected"}),
        ("git_add", {"file_paths": ["--chmod=+x", "README.md"]}),
        ("git_add", {"file_paths": "-A"}),
    ],
)
async def test_option_injection_is_refused_and_writes_nothing(client, tree, tool, args):
    out = str(tree["outside"])
    args = {key: _expand(value, out) for key, value in args.items()}
    with pytest.raises(ToolError, match="options cannot be passed to git"):
        await call(client, tool, **args)
    assert not (tree["outside"] / "injected").exists()
    assert (await call(client, "git_status"))["clean"] is True


@pytest.mark.parametrize("path", ["../x", "../../outside", "OUT/file", "src/../../x", "escape/file", ".git/config"])
async def test_git_add_cannot_reach_outside_the_repository(client, tree, path):
    (tree["outside"] / "file").write_text("outside\n")
    (tree["repo"] / "escape").symlink_to(tree["outside"], target_is_directory=True)
    with pytest.raises(ToolError, match="outside|inside the .git folder"):
        await call(client, "git_add", file_paths=[_expand(path, str(tree["outside"]))])
    status = await call(client, "git_status")
    assert [e for e in status["entries"] if e["index"] not in " ?"] == []


async def test_a_repository_above_the_allowed_root_is_refused(tree):
    mcp = FastMCP("git-narrow")
    git.register(mcp, settings_for(tree["repo"] / "src"))
    async with Client(mcp) as narrow:
        with pytest.raises(ToolError, match="repository .* outside the allowed roots"):
            await narrow.call_tool("git_status", {})


async def test_a_folder_outside_the_roots_is_refused(client, tree):
    sh_git(tree["outside"], "init", "-q")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, "git_status", working_dir=str(tree["outside"]))
    with pytest.raises(ToolError, match="not inside a git repository"):
        await call(client, "git_status", working_dir=".")


async def test_a_git_folder_outside_the_roots_is_refused(client, tree):
    """A `.git` file can point the repository's objects and config anywhere; that place must be allowed too."""
    sh_git(tree["outside"], "init", "-q", "store")
    linked = tree["allowed"] / "linked"
    linked.mkdir()
    (linked / ".git").write_text(f"gitdir: {tree['outside'] / 'store' / '.git'}\n")
    with pytest.raises(ToolError, match="git folder .* outside the allowed roots"):
        await call(client, "git_status", working_dir="linked")


def _expand(value: Any, outside: str) -> Any:
    if isinstance(value, list):
        return [_expand(item, outside) for item in value]
    return value.replace("OUT", outside) if isinstance(value, str) else value


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository to another owner")
async def test_a_repository_owned_by_another_user_still_works_for_a_root_server(client, tree):
    for path in [tree["repo"], *tree["repo"].rglob("*")]:
        os.lchown(path, 1000, 1000)
    assert (await call(client, "git_status"))["clean"] is True


async def test_the_first_commit_of_an_empty_repository_keeps_its_reflog(client, tree, monkeypatch):
    """Identity comes from the server user's global config when the repository has none."""
    home = tree["outside"] / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Global Person\n\temail = global@example.invalid\n")
    monkeypatch.setenv("HOME", str(home))
    fresh = tree["allowed"] / "fresh"
    fresh.mkdir()
    sh_git(fresh, "init", "-q", "-b", "trunk")
    (fresh / "one.txt").write_text("1\n")
    assert (await call(client, "git_status", working_dir="fresh"))["branch"] == "No commits yet on trunk"
    await call(client, "git_add", file_paths="one.txt", working_dir="fresh")
    commit = await call(client, "git_commit", message="# a comment line\nFirst\n\n", working_dir="fresh")
    assert (commit["subject"], commit["author"], commit["email"]) == ("First", "Global Person",
                                                                    "global@example.invalid")
    assert sh_git(fresh, "log", "--format=%B").strip() == "First"
    assert sh_git(fresh, "reflog", "--format=%gs", "trunk").strip() == "commit (initial): First"


async def test_a_linked_worktree_and_its_own_index(client, tree):
    repo, linked = tree["repo"], tree["allowed"] / "linked-wt"
    sh_git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    (linked / "side.txt").write_text("side\n")
    await call(client, "git_add", file_paths="side.txt", working_dir="linked-wt")
    commit = await call(client, "git_commit", message="On the side", working_dir="linked-wt")
    assert sh_git(repo, "log", "-1", "--format=%H", "side").strip() == commit["commit"]
    assert (await call(client, "git_status"))["clean"] is True  # the main worktree's index is untouched
    assert sh_git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


async def test_a_commit_during_an_unfinished_merge_is_refused(client, tree):
    repo = tree["repo"]
    head = sh_git(repo, "rev-parse", "HEAD").strip()
    (repo / ".git" / "MERGE_HEAD").write_text(head + "\n")
    (repo / "README.md").write_text("merged\n")
    await call(client, "git_add", file_paths="README.md")
    with pytest.raises(ToolError, match="MERGE_HEAD exists"):
        await call(client, "git_commit", message="would drop the second parent")
    assert sh_git(repo, "rev-parse", "HEAD").strip() == head
