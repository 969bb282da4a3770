"""How `ai` shows MCP results: tool output as text, the tool table and the approvals table."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from services.mcp_server.catalog import TOOLS

if TYPE_CHECKING:
    from fastmcp.client.client import CallToolResult
    from mcp.types import Tool

RISK_STYLES = {"LOW": "green", "MEDIUM": "yellow", "HIGH": "red", "CRITICAL": "bold red"}


def local_time(stamp: str | None, layout: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO 8601 time from the server in local time (unchanged if it does not parse)."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime(layout) if stamp else "-"
    except ValueError:
        return str(stamp)


def result_text(result: CallToolResult) -> str:
    """What a tool returned, as text: its structured value as JSON (or a bare string), else its text blocks."""
    value: Any = result.structured_content
    if isinstance(value, dict) and (result.meta or {}).get("fastmcp", {}).get("wrap_result"):
        value = value.get("result")
    if value is not None:
        return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        if text is not None:
            parts.append(text)
        else:
            size = len(getattr(block, "data", "") or "") * 3 // 4  # base64 -> bytes
            parts.append(f"[{block.type} content, {getattr(block, 'mime_type', '?')}, about {size:,} bytes]")
    return "\n".join(parts)


@dataclass(frozen=True)
class ToolRow:
    name: str
    family: str
    risk: str
    description: str


def tool_rows(tools: list[Tool]) -> list[ToolRow]:
    """One row per served tool, with the catalog's family and risk, in catalog order."""
    order = {name: index for index, name in enumerate(TOOLS)}
    rows = []
    for tool in sorted(tools, key=lambda t: (order.get(t.name, len(order)), t.name)):
        spec = TOOLS.get(tool.name)
        lines = (tool.description or "").strip().splitlines()
        rows.append(ToolRow(tool.name, spec.family if spec else "?", spec.risk.name if spec else "?",
                            lines[0] if lines else ""))
    return rows


def render_tools(rows: list[ToolRow], out: TextIO | None = None) -> None:
    """A table: name, family, risk (coloured), description."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="MCP tools (HIGH and CRITICAL wait for approval unless you are admin)")
    for column in ("tool", "family", "risk", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.name, row.family, f"[{RISK_STYLES.get(row.risk, 'white')}]{row.risk}[/]", row.description)
    Console(file=out or sys.stdout, highlight=False).print(table)


def render_approvals(requests: Sequence[Mapping[str, Any]], out: TextIO | None = None) -> None:
    """The caller's approval requests, newest first as the server sends them, one line each."""
    from rich.console import Console
    from rich.markup import escape

    styles = {"pending": "yellow", "approved": "green", "used": "dim", "rejected": "red", "expired": "dim"}
    console = Console(file=out or sys.stdout, highlight=False)
    # Lines, not a table: the id is copied into `ai-approvals --approve ID` and must never be cut.
    for item in requests:
        status = str(item.get("status", "?"))
        created, expires = (local_time(item.get(key), "%m-%d %H:%M") for key in ("created_at", "expires_at"))
        reason = f"  ({escape(str(item['reason']))})" if item.get("reason") else ""
        console.print(f"{escape(str(item.get('request_id', '?')))}  [{styles.get(status, 'white')}]{status}[/]  "
                      f"{escape(str(item.get('tool', '?')))}  created {created}  expires {expires}{reason}",
                      soft_wrap=True)
