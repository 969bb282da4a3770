"""Every git tool over a repository whose config, attributes, includes, hooks and submodule name programs: none runs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import git
from tests.support.mcp import call_in_repo as call

FILTERED = ["data.txt", "name.eq", "x.inc", "y.info", "z.more", "README.md"]  # each names a filter somewhere
HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-checkout", "post-index-change",
         "reference-transaction", "pre-auto-gc", "post-rewrite", "fsmonitor-watchman", "pre-push")


def sh_git(repo: Path, *args: str) -> str:
    """Set up fixtures with the real git (test code, not the tool under test)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def program(markers: Path, name: str) -> str:
    """A shell command that leaves a marker if git ever runs it, and passes its input through like a filter."""
    return f"touch {markers}/{name}; cat"


def plant_hooks(folder: Path, markers: Path, tag: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        (folder / hook).write_text(f"#!/bin/sh\ntouch {markers}/{tag}-{hook}\n")
        (folder / hook).chmod(0o755)


def make_nested(repo: Path, markers: Path) -> None:
    """A repository inside the worktree (a gitlink in the outer index) with its own filter and fsmonitor."""
    nested = repo / "vendor" / "lib"
    nested.mkdir(parents=True)
    sh_git(nested, "init", "-q", "-b", "main")
    sh_git(nested, "config", "user.name", "Nested")
    sh_git(nested, "config", "user.email", "nested@example.invalid")
    (nested / "code.c").write_text("int a;\n")
    sh_git(nested, "add", "code.c")
    sh_git(nested, "commit", "-q", "-m", "nested")
    (nested / ".gitattributes").write_text("*.c filter=nested diff=nested\n")
    sh_git(nested, "config", "filter.nested.clean", program(markers, "nested-clean"))
    sh_git(nested, "config", "diff.nested.textconv", program(markers, "nested-textconv"))
    plant_hooks(nested / ".git" / "hooks", markers, "nested-hook")


def make_hostile(repo: Path, markers: Path, home: Path) -> None:
    """Config, includes, attributes (tree, info and global), hooks, a global config and a nested repository."""
    configs = {
        "filter.evil.clean": "clean", "filter.evil.smudge": "smudge", "filter.evil.process": "process",
        "filter.a=b.clean": "eq-clean", "diff.evil.textconv": "textconv", "diff.evil.command": "diff-command",
        "diff.external": "external", "merge.evil.driver": "merge", "core.fsmonitor": "fsmonitor",
        "core.pager": "pager", "core.editor": "editor", "sequence.editor": "sequence-editor",
        "core.sshCommand": "ssh", "core.askPass": "askpass", "credential.helper": "credential",
        "core.alternateRefsCommand": "alternate-refs", "gpg.program": "gpg", "gpg.ssh.program": "gpg-ssh",
        "pager.log": "pager-log", "pager.diff": "pager-diff", "pager.status": "pager-status",
    }
    for key, name in configs.items():
        sh_git(repo, "config", key, program(markers, name))
    for key, value in {"commit.gpgSign": "true", "log.showSignature": "true", "core.attributesFile":
                       str(repo / ".git" / "more-attributes"), "core.hooksPath": str(repo / ".git" / "evil-hooks"),
                       "include.path": str(repo / ".git" / "included"),
                       f"includeIf.gitdir:{repo}/.path": str(repo / ".git" / "included-if")}.items():
        sh_git(repo, "config", key, value)
    (repo / ".git" / "included").write_text(
        f'[filter "inc"]\n\tclean = {program(markers, "include-clean")}\n'
        f'[core]\n\tfsmonitor = {program(markers, "include-fsmonitor")}\n')
    (repo / ".git" / "included-if").write_text(f'[diff "incif"]\n\ttextconv = {program(markers, "includeif")}\n')
    (repo / ".git" / "more-attributes").write_text("*.more filter=evil\n")
    (repo / ".git" / "info" / "attributes").write_text("*.info filter=evil diff=evil\n")
    (repo / ".gitattributes").write_text(
        "*.txt filter=evil diff=evil merge=evil\n*.eq filter=a=b\n*.inc filter=inc diff=incif\n"
        "*.py diff=evil merge=evil\n*.md filter=global\n")
    plant_hooks(repo / ".git" / "hooks", markers, "hook")
    plant_hooks(repo / ".git" / "evil-hooks", markers, "hookspath")
    # The server user's own (global) config must not define a driver for a tool either.
    (home / ".gitconfig").write_text(f'[filter "global"]\n\tclean = {program(markers, "global-clean")}\n')


@pytest.fixture()
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    allowed, markers, home = tmp_path / "allowed", tmp_path / "markers", tmp_path / "home"
    repo = allowed / "repo"
    for folder in (repo, markers, home):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    sh_git(repo, "init", "-q", "-b", "main")
    sh_git(repo, "config", "user.name", "Test User")
    sh_git(repo, "config", "user.email", "test@example.invalid")
    files = {"data.txt": "one\n", "name.eq": "one\n", "x.inc": "one\n", "y.info": "one\n", "z.more": "one\n",
             "README.md": "one\n", "app.py": "one\n"}
    for name, text in files.items():
        (repo / name).write_text(text)
    sh_git(repo, "add", ".")
    sh_git(repo, "commit", "-q", "-m", "initial commit")
    make_nested(repo, markers)
    sh_git(repo, "add", "vendor/lib")
    sh_git(repo, "commit", "-q", "-m", "add the nested repository")
    make_hostile(repo, markers, home)
    # The same size, new content: git must read each file (through any clean filter) to see the change.
    for name in files:
        (repo / name).write_text("two\n")
    (repo / "vendor" / "lib" / "code.c").write_text("int b;\n")
    return {"allowed": allowed, "repo": repo, "markers": markers}


@pytest.fixture()
async def client(hostile: dict[str, Path]):
    mcp = FastMCP("git-hostile")
    settings = McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=str(hostile["allowed"]), COMMAND_TIMEOUT="20")  # type: ignore[call-arg]
    git.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected



async def refusal(client: Client, tool: str, **args: Any) -> str | None:
    """The ToolError text, or None when the call went through."""
    try:
        await call(client, tool, **args)
    except ToolError as exc:
        return str(exc)
    return None


async def test_no_program_a_hostile_repository_names_ever_runs(client, hostile):
    markers = hostile["markers"]
    status = await call(client, "git_status")
    assert {"data.txt", "name.eq", "README.md", "app.py"} <= {e["path"] for e in status["entries"]}
    assert "+two" in (await call(client, "git_diff"))["diff"]
    await call(client, "git_diff", file_path="data.txt")
    filtered = await refusal(client, "git_add", file_paths=FILTERED)
    await call(client, "git_add", file_paths=["app.py", ".gitattributes"])
    staged = await call(client, "git_diff", staged=True)
    assert "+two" in staged["diff"]
    commit = await call(client, "git_commit", message="through a hostile repository")
    log = await call(client, "git_log")
    data_log = await call(client, "git_log", file_path="data.txt")
    await call(client, "git_status")
    assert sorted(p.name for p in markers.iterdir()) == []
    assert commit["subject"] == "through a hostile repository"
    assert len(log["commits"]) == 3 and len(data_log["commits"]) == 1
    # A path whose attributes name a filter is refused: staging it unfiltered could commit what the filter
    # exists to keep out (an LFS object, a git-crypt plaintext).
    assert filtered is not None and "filter" in filtered
    assert "data.txt" not in sh_git(hostile["repo"], "diff", "--cached", "--name-only")


async def test_core_worktree_cannot_move_the_work_tree_outside_the_roots(client, hostile, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the roots\n")
    sh_git(hostile["repo"], "config", "core.worktree", str(outside))
    status = await call(client, "git_status")
    assert status["repository"] == str(hostile["repo"])
    assert "secret.txt" not in {e["path"] for e in status["entries"]}
    assert sorted(p.name for p in hostile["markers"].iterdir()) == []
