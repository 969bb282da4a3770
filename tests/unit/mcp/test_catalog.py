"""The catalog is the one description of the tools: every family registers exactly its entries, with its hints."""

from __future__ import annotations

from pathlib import Path

from fastmcp import Client

from services.mcp_server.catalog import TOOLS
from services.mcp_server.server import FAMILIES, create_mcp
from tests.unit.mcp.security_support import make_settings


async def test_the_registered_tools_are_the_catalog_with_its_hints(tmp_path: Path) -> None:
    mcp = create_mcp(make_settings(tmp_path))
    async with Client(mcp) as client:
        listed = {tool.name: tool for tool in await client.list_tools()}
    assert set(listed) == set(TOOLS)
    assert {spec.family for spec in TOOLS.values()} == set(FAMILIES)
    for name, spec in TOOLS.items():
        hints = listed[name].annotations
        assert hints is not None, name
        assert (hints.read_only_hint, hints.destructive_hint, hints.open_world_hint) == (
            spec.read_only, spec.destructive, spec.open_world), name
        assert listed[name].description, name
