"""Calling MCP tools in process, through fastmcp.Client, the way the tests of each tool family do."""

from __future__ import annotations

from typing import Any

from fastmcp import Client


async def call(client: Client, tool: str, **args: Any) -> Any:
    """The structured result of one tool call; a refusal raises fastmcp's ToolError."""
    return (await client.call_tool(tool, args)).data


async def call_in_repo(client: Client, tool: str, **args: Any) -> Any:
    """`call` with working_dir "repo" (where the git tests keep their repository) unless another is given."""
    return await call(client, tool, **{"working_dir": "repo", **args})
