"""Per-tool limits on the calls that run at once, from every client together; a call past its limit waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from services.mcp_server.catalog import TOOLS

if TYPE_CHECKING:
    from services.mcp_server.settings import McpSettings

OTHER = "other"  # names missing from the catalog share one limit, so made-up names cannot grow the table


class ToolSlots:
    """One semaphore per tool, sized by MCP_TOOL_CONCURRENCY(_TOOLS); `running` counts calls in flight."""

    def __init__(self, settings: McpSettings) -> None:
        self.settings = settings
        self.running: dict[str, int] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _semaphore(self, tool: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a semaphore belongs to the loop it first waited on
            self._loop, self._slots = loop, {}
        slots = self._slots.get(tool)
        if slots is None:
            slots = self._slots[tool] = asyncio.Semaphore(self.settings.concurrency_of(tool))
        return slots

    @asynccontextmanager
    async def slot(self, tool: str) -> AsyncIterator[None]:
        """Hold one of `tool`'s slots while the call runs."""
        name = tool if tool in TOOLS else OTHER
        async with self._semaphore(name):
            self.running[name] = self.running.get(name, 0) + 1
            try:
                yield
            finally:
                self.running[name] -= 1
