"""The FastMCP server: every tool family, behind the security middleware."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import FastMCP

from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.middleware import Observer, Refusals, SecurityMiddleware
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools.browser import BrowserHolder

FAMILIES = ("filesystem", "execution", "git", "web", "notion", "rag")
BROWSER_FAMILIES = ("web", "notion")
Register = Callable[[FastMCP, McpSettings], None]


def _register_family(mcp: FastMCP, settings: McpSettings, family: str | Register, browser: BrowserHolder) -> None:
    """A family is a module name under `services.mcp_server.tools` or a `register` function (tests)."""
    if callable(family):
        family(mcp, settings)
        return
    module = importlib.import_module(f"services.mcp_server.tools.{family}")
    if family in BROWSER_FAMILIES:
        module.register(mcp, settings, browser=browser)  # one Chromium for every web tool, closed at shutdown
    else:
        module.register(mcp, settings)


def build_server(
    settings: McpSettings,
    families: Iterable[str | Register] | None = None,
    *,
    observe: Observer | None = None,
    refused: Refusals | None = None,
) -> tuple[FastMCP, SecurityLayer]:
    """The server and its security layer; the server's lifespan starts and flushes the audit writer."""
    layer = SecurityLayer.open(settings)
    browser = BrowserHolder(settings)

    @asynccontextmanager
    async def lifespan(_: FastMCP) -> AsyncIterator[dict[str, Any]]:
        layer.start()
        try:
            yield {}
        finally:
            await browser.close()
            await layer.stop()

    mcp: FastMCP = FastMCP(
        "local-ai-suite",
        instructions="Local AI Suite tools: files, commands, git, web, Notion and RAG. Every call is checked "
        "against your role; HIGH and CRITICAL calls wait for another user's approval.",
        lifespan=lifespan,
        middleware=[SecurityMiddleware(layer, observe, refused)],
    )
    for family in FAMILIES if families is None else families:
        _register_family(mcp, settings, family, browser)
    return mcp, layer


def create_mcp(settings: McpSettings, families: Iterable[str | Register] | None = None) -> FastMCP:
    """The MCP server with every tool family (or only `families`) and the security middleware."""
    return build_server(settings, families)[0]
