"""Filesystem tools in process through fastmcp.Client, including the path attacks from issue 4."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import filesystem
from tests.support.mcp import call

FS_TOOLS = {"list_files", "read_file", "write_file", "create_directory", "search_files", "get_system_info"}


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed, evil, outside = tmp_path / "allowed", tmp_path / "allowed-evil", tmp_path / "outside"
    for folder in (allowed / "src" / "pkg", evil, outside):
        folder.mkdir(parents=True)
    (allowed / "src" / "main.py").write_text("import os\nprint('hello world')\n")
    (allowed / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'Hello'\n")
    (allowed / "notes.md").write_text("# notes\n")
    (allowed / ".hidden").write_text("h")
    (evil / "secret.txt").write_text("evil secret")
    (outside / "secret.txt").write_text("hello outside secret")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    return {"allowed": allowed, "evil": evil, "outside": outside}


@pytest.fixture()
def settings(tree: dict[str, Path]) -> McpSettings:
    env = {"MCP_ALLOWED_ROOTS": str(tree["allowed"]), "TOOL_MAX_READ_BYTES": "2048"}
    return McpSettings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.fixture()
async def client(settings: McpSettings):
    mcp = FastMCP("fs-test")
    filesystem.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected



async def test_the_family_registers_its_six_catalog_names_with_descriptions(client):
    tools = {tool.name: tool for tool in await client.list_tools()}
    assert set(tools) == FS_TOOLS
    assert all(tool.description for tool in tools.values())
    assert tools["read_file"].annotations.read_only_hint is True
    assert "working_dir" in tools["write_file"].input_schema["properties"]


async def test_list_files_shows_types_and_hides_dotfiles_by_default(client):
    listing = await call(client, "list_files")
    kinds = {entry["name"]: entry["type"] for entry in listing["entries"]}
    assert kinds == {"src": "directory", "escape": "symlink", "notes.md": "file"}
    hidden = await call(client, "list_files", include_hidden=True)
    assert ".hidden" in {entry["name"] for entry in hidden["entries"]}
    sub = await call(client, "list_files", path="pkg", working_dir="src")
    assert [entry["name"] for entry in sub["entries"]] == ["util.py"]


async def test_read_file_returns_text_and_refuses_big_binary_and_folders(client, tree):
    result = await call(client, "read_file", path="src/main.py")
    assert result["content"] == "import os\nprint('hello world')\n"
    assert result["path"] == str(tree["allowed"] / "src" / "main.py")
    (tree["allowed"] / "big.txt").write_text("x" * 2049)
    with pytest.raises(ToolError, match="TOOL_MAX_READ_BYTES"):
        await call(client, "read_file", path="big.txt")
    (tree["allowed"] / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(ToolError, match="binary"):
        await call(client, "read_file", path="blob.bin")
    with pytest.raises(ToolError, match="directory"):
        await call(client, "read_file", path="src")
    os.mkfifo(tree["allowed"] / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        await call(client, "read_file", path="pipe")


async def test_write_file_creates_overwrites_and_makes_parents_on_request(client, tree):
    created = await call(client, "write_file", path="out/a.txt", content="one", create_parents=True)
    assert created["created"] is True and created["bytes_written"] == 3
    again = await call(client, "write_file", path="out/a.txt", content="twö")
    assert again["created"] is False
    assert (tree["allowed"] / "out" / "a.txt").read_text() == "twö"
    assert [p.name for p in (tree["allowed"] / "out").iterdir()] == ["a.txt"]
    with pytest.raises(ToolError, match="create_parents"):
        await call(client, "write_file", path="nowhere/b.txt", content="x")
    assert not (tree["allowed"] / "nowhere").exists()


async def test_create_directory_makes_the_chain_and_is_idempotent(client, tree):
    assert (await call(client, "create_directory", path="a/b/c"))["created"] is True
    assert (tree["allowed"] / "a" / "b" / "c").is_dir()
    assert (await call(client, "create_directory", path="a/b/c"))["created"] is False
    with pytest.raises(ToolError, match="not a directory"):
        await call(client, "create_directory", path="notes.md")


async def test_search_files_by_name_and_content_without_following_links_out(client):
    by_name = await call(client, "search_files", pattern="*.py")
    assert sorted(match["path"] for match in by_name["matches"]) == ["src/main.py", "src/pkg/util.py"]
    by_content = await call(client, "search_files", content="HELLO")
    assert {(m["path"], m["line"]) for m in by_content["matches"]} == {("src/main.py", 2), ("src/pkg/util.py", 2)}
    assert "secret" not in json.dumps(by_content)
    bounded = await call(client, "search_files", pattern="*", max_results=1)
    assert len(bounded["matches"]) == 1 and bounded["truncated"] is True


async def test_get_system_info_describes_the_machine_without_secrets(client, monkeypatch, tree):
    monkeypatch.setenv("API_KEY", "sk-do-not-leak-1234")
    info = await call(client, "get_system_info")
    assert info["memory"]["total"] > 0 and info["cpu"]["logical"] >= 1 and info["python"].count(".") == 2
    disk = psutil.disk_usage(str(tree["allowed"]))  # read from the folder's descriptor, the same numbers
    assert info["disk"]["total"] == disk.total and abs(info["disk"]["percent"] - disk.percent) < 1
    assert "sk-do-not-leak-1234" not in json.dumps(info)


async def test_links_that_stay_inside_a_root_still_work_for_every_tool(client, tree):
    """Paths are resolved first, so an in-root link is followed to its real place, which is then opened link-free."""
    (tree["allowed"] / "linked").symlink_to(tree["allowed"] / "src", target_is_directory=True)
    read = await call(client, "read_file", path="linked/main.py")
    assert read["path"] == str(tree["allowed"] / "src" / "main.py") and "hello world" in read["content"]
    listing = await call(client, "list_files", path="linked")
    assert {entry["name"] for entry in listing["entries"]} == {"pkg", "main.py"}
    found = await call(client, "search_files", path="linked", content="helper")
    assert [match["path"] for match in found["matches"]] == ["pkg/util.py"]
    await call(client, "write_file", path="linked/pkg/new.txt", content="x")
    assert (tree["allowed"] / "src" / "pkg" / "new.txt").read_text() == "x"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_file", {"path": "notes.md/x"}),
        ("read_file", {"path": "missing/x.txt"}),
        ("list_files", {"path": "notes.md"}),
        ("search_files", {"path": "notes.md"}),
        ("write_file", {"path": "notes.md/x.txt", "content": "x"}),
        ("create_directory", {"path": "notes.md/sub"}),
        ("read_file", {"path": "x" * 300}),
    ],
)
async def test_failures_are_told_in_words_never_as_an_errno(client, tool, args):
    with pytest.raises(ToolError) as failed:
        await call(client, tool, **args)
    assert "Errno" not in str(failed.value) and "Error calling tool" not in str(failed.value)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_file", {"path": "../outside/secret.txt"}),
        ("read_file", {"path": "OUTSIDE/secret.txt"}),
        ("read_file", {"path": "/etc/passwd"}),
        ("read_file", {"path": "EVIL/secret.txt"}),
        ("read_file", {"path": "escape/secret.txt"}),
        ("read_file", {"path": "secret.txt", "working_dir": "OUTSIDE"}),
        ("list_files", {"path": ".."}),
        ("list_files", {"path": "escape"}),
        ("search_files", {"path": "../outside"}),
        ("get_system_info", {"working_dir": "EVIL"}),
    ],
)
async def test_reads_outside_the_roots_are_refused(client, tree, tool, args):
    """Traversal, absolute paths, the /allowed-evil prefix twin and symlink escapes all fail."""
    args = {key: _expand(value, tree) for key, value in args.items()}
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, tool, **args)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("write_file", {"path": "../outside/new.txt", "content": "pwned"}),
        ("write_file", {"path": "OUTSIDE/new.txt", "content": "pwned"}),
        ("write_file", {"path": "EVIL/new.txt", "content": "pwned"}),
        ("write_file", {"path": "escape/new.txt", "content": "pwned"}),
        ("write_file", {"path": "../outside/deep/new.txt", "content": "pwned", "create_parents": True}),
        ("create_directory", {"path": "escape/new"}),
        ("create_directory", {"path": "../outside/new"}),
        ("create_directory", {"path": "EVIL/new"}),
    ],
)
async def test_writes_outside_the_roots_fail_and_leave_no_trace(client, tree, tool, args):
    args = {key: _expand(value, tree) for key, value in args.items()}
    before = _snapshot(tree)
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, tool, **args)
    assert _snapshot(tree) == before
    assert not (tree["outside"] / "new.txt").exists() and not (tree["evil"] / "new.txt").exists()


async def test_writing_through_a_planted_symlink_leaves_the_target_unchanged(client, tree):
    (tree["allowed"] / "planted.txt").symlink_to(tree["outside"] / "secret.txt")
    (tree["allowed"] / "dangling.txt").symlink_to(tree["outside"] / "created-by-attack.txt")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, "write_file", path="planted.txt", content="pwned")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await call(client, "write_file", path="dangling.txt", content="pwned")
    assert (tree["outside"] / "secret.txt").read_text() == "hello outside secret"
    assert not (tree["outside"] / "created-by-attack.txt").exists()
    assert (tree["allowed"] / "planted.txt").is_symlink()


def _expand(value: Any, tree: dict[str, Path]) -> Any:
    if isinstance(value, str):
        return value.replace("OUTSIDE", str(tree["outside"])).replace("EVIL", str(tree["evil"]))
    return value


def _snapshot(tree: dict[str, Path]) -> list[str]:
    root = tree["allowed"].parent
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))
