"""The suite's own data stays shut to the tools even where DATA_DIR lies inside an allowed root (the default:
./data in the repository, inside your home): the audit key, the owner key and the databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import execution, filesystem, git
from tests.support.mcp import call

KEY = "5f3c1e0a9b7d6c4e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e"


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    security = tmp_path / "repo" / "data" / "security"
    security.mkdir(parents=True)
    (security / "audit.key").write_text(KEY)
    (security / "owner.key").write_text("owner-" + KEY)
    (security / "security.db").write_bytes(b"SQLite format 3\x00" + bytes(64))
    (tmp_path / "repo" / "data" / "documents").mkdir()
    (tmp_path / "repo" / "data" / "documents" / "note.md").write_text("a note for the index")
    (tmp_path / "repo" / "README.md").write_text("readme")
    return tmp_path


@pytest.fixture()
async def client(home: Path):
    settings = McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=str(home),  # type: ignore[call-arg]
                           DATA_DIR=str(home / "repo" / "data"), COMMAND_ALLOWLIST="cat,ls,grep")
    mcp = FastMCP("own-data")
    for family in (filesystem, execution, git):
        family.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected



@pytest.mark.parametrize(("tool", "args"), [
    ("read_file", {"path": "repo/data/security/audit.key"}),
    ("read_file", {"path": "repo/data/security/owner.key"}),
    ("list_files", {"path": "repo/data/security"}),
    ("write_file", {"path": "repo/data/security/security.db", "content": "gone"}),
    ("write_file", {"path": "repo/data/security/audit.key", "content": "0" * 64}),
    ("create_directory", {"path": "repo/data/security/extra"}),
    ("search_files", {"path": "repo/data/security", "pattern": "*"}),
    ("run_command", {"command": ["cat", "repo/data/security/audit.key"]}),
    ("run_command", {"command": ["grep", "-r", "5f3c", "repo/data/security"]}),
])
async def test_tools_refuse_the_keys_and_databases(client: Client, home: Path, tool: str, args: dict) -> None:
    with pytest.raises(ToolError, match="the suite's own data"):
        await call(client, tool, **args)
    assert (home / "repo" / "data" / "security" / "audit.key").read_text() == KEY
    assert not (home / "repo" / "data" / "security" / "extra").exists()


async def test_a_search_from_above_neither_lists_nor_reads_them(client: Client) -> None:
    by_name = await call(client, "search_files", path="repo", pattern="*.key")
    assert by_name["matches"] == []
    by_content = await call(client, "search_files", path=".", pattern="*", content="5f3c1e0a")
    assert by_content["matches"] == []
    found = await call(client, "search_files", path=".", pattern="*.md")
    assert {match["path"] for match in found["matches"]} == {"repo/README.md", "repo/data/documents/note.md"}


async def test_the_documents_folder_stays_open(client: Client) -> None:
    assert (await call(client, "read_file", path="repo/data/documents/note.md"))["content"] == "a note for the index"
    await call(client, "write_file", path="repo/data/documents/new.md", content="new")
