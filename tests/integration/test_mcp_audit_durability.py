"""An answered call that changes something keeps its audit row through a hard kill of the MCP server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from fastmcp.client import Client
from fastmcp.client.transports import StreamableHttpTransport

from services.mcp_server.gate.audit import verify
from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration


async def test_audit_rows_of_answered_writes_survive_sigkill(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    root.mkdir()
    port = free_port()
    env = {"DATA_DIR": str(data), "MCP_ALLOWED_ROOTS": str(root), "MCP_PORT": str(port), "LOG_JSON": "false",
           "LOG_LEVEL": "WARNING"}
    server = Service("mcp-server", python_module("services.mcp_server"), env, f"http://127.0.0.1:{port}/health",
                     tmp_path / "mcp.log").start()
    key = (data / "security" / "owner.key").read_text().strip()
    transport = StreamableHttpTransport(f"http://127.0.0.1:{port}/mcp", headers={"Authorization": f"Bearer {key}"})
    answers = []
    try:
        try:
            async with Client(transport) as client:
                for i in range(3):
                    result = await client.call_tool("write_file", {"path": f"f{i}.txt", "content": "x",
                                                                   "working_dir": str(root)})
                    answers.append(result.data)
                assert server.proc is not None
                os.killpg(server.proc.pid, signal.SIGKILL)  # at once after the last answer
                server.proc.wait()
        except Exception:  # noqa: BLE001, S110 - closing the session of a killed server may fail; rows matter
            pass
    finally:
        server.stop()
    assert len(answers) == 3 and (root / "f2.txt").read_text() == "x"
    db_path = data / "security" / "security.db"
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT tool, status, args FROM audit_log ORDER BY id").fetchall()
    assert [(tool, status, json.loads(args)["path"]) for tool, status, args in rows] == [
        ("write_file", "allowed", f"f{i}.txt") for i in range(3)
    ]
    assert verify(db_path).ok
