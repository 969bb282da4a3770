"""The MCP server over real streamable HTTP with the official `mcp` client, and `ai-suite` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


def ai_suite(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`ai-suite ARGS` with `env` on top of this process's environment; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "services.stack", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@asynccontextmanager
async def session(url: str, key: str) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        async with streamable_http_client(f"{url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as opened:
                await opened.initialize()
                yield opened


async def call(client: ClientSession, tool: str, args: dict[str, Any]) -> Any:
    """A tool call that must succeed; its structured result (or its text)."""
    result = await client.call_tool(tool, args)
    text = "".join(getattr(item, "text", "") for item in result.content)
    assert not result.is_error, f"{tool}: {text}"
    return result.structured_content if result.structured_content is not None else text
