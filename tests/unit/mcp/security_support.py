"""Helpers for the security tests: a small tool family, settings in a temp folder, and a live HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastmcp import FastMCP
from fastmcp.client import Client
from fastmcp.client.transports import StreamableHttpTransport

from services.mcp_server.app import create_app
from services.mcp_server.settings import McpSettings
from tests.support.procs import free_port

RAN: list[tuple[str, dict[str, Any]]] = []


def fake_tools(mcp: FastMCP, settings: McpSettings) -> None:
    """Catalog names with trivial bodies: a LOW read, a MEDIUM write, a HIGH and a CRITICAL tool, and a failure."""

    @mcp.tool(name="read_file")
    def read_file(path: str) -> str:
        """Echo the path."""
        RAN.append(("read_file", {"path": path}))
        return f"contents of {path}"

    @mcp.tool(name="write_file")
    def write_file(path: str, content: str) -> str:
        """Pretend to write."""
        RAN.append(("write_file", {"path": path}))
        return f"wrote {len(content)} chars"

    @mcp.tool(name="run_command")
    def run_command(command: str) -> str:
        """Pretend to run a command."""
        RAN.append(("run_command", {"command": command}))
        return f"ran {command}"

    @mcp.tool(name="execute_python")
    def execute_python(code: str) -> str:
        """Always fails, to record an error row."""
        raise ValueError("boom")


def make_settings(tmp: Path, **overrides: Any) -> McpSettings:
    """Settings isolated in `tmp`; everything not given keeps its default, read from no .env file."""
    values: dict[str, Any] = {"DATA_DIR": tmp, "MCP_ALLOWED_ROOTS": str(tmp), "RATE_LIMIT_TOOLS": "{}"}
    values.update(overrides)
    return McpSettings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class LiveServer:
    url: str
    app: Any

    def client(self, key: str | None) -> Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return Client(StreamableHttpTransport(f"{self.url}/mcp", headers=headers))


@contextmanager
def live_server(settings: McpSettings, families: Any = (fake_tools,)) -> Iterator[LiveServer]:
    """uvicorn on a free loopback port in a thread; stopped and joined on exit."""
    port = free_port()
    app = create_app(settings, families=families)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("MCP test server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
