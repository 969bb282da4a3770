"""docs/mcp.md stays true to the code: the tool table matches the catalog, every setting is documented,
and the client configuration snippets are valid JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.common.settings import SuiteSettings
from services.mcp_server.catalog import TOOLS
from services.mcp_server.settings import McpSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "mcp.md").read_text(encoding="utf-8")
TOOL_ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<family>\w+) \| (?P<risk>[A-Z]+) \| (?P<ro>yes|no) \|", re.MULTILINE)


def test_tool_table_lists_exactly_the_catalog_with_its_risks() -> None:
    rows = [m.groupdict() for m in TOOL_ROW.finditer(DOC)]
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)), "a tool is listed twice"
    assert set(names) == set(TOOLS)
    for row in rows:
        spec = TOOLS[row["name"]]
        assert (row["family"], row["risk"], row["ro"] == "yes") == (spec.family, spec.risk.name, spec.read_only), row


def test_every_mcp_setting_is_documented_here_and_in_env_example() -> None:
    own = set(McpSettings.model_fields) - set(SuiteSettings.model_fields)
    names = {McpSettings.model_fields[field].alias for field in own}
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert sorted(n for n in names if n and f"`{n}`" not in DOC) == []
    assert sorted(n for n in names if n and n not in env_example) == []


def test_client_snippets_are_valid_json_for_both_transports() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)]
    servers = [s for block in blocks for s in (block.get("mcpServers") or block.get("servers") or {}).values()]
    stdio = [s for s in servers if s.get("args", [])[-2:] == ["mcp", "--stdio"]]
    assert stdio and all(Path(s["command"]).is_absolute() for s in stdio)
    assert any("http://127.0.0.1:8020/mcp" in s.get("args", []) for s in servers)  # through a bridge
    assert any(s.get("url") == "http://127.0.0.1:8020/mcp" and "Authorization" in s.get("headers", {})
               for s in servers)
