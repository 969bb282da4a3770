"""Every tool the server offers, with its risk, family and MCP hints: the one list RBAC, the tools' own
registration, the CLI and the docs read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from services.mcp_server import approval_rules

if TYPE_CHECKING:
    from fastmcp import FastMCP
    from mcp.types import ToolAnnotations

    from services.mcp_server.settings import McpSettings

# Why this call needs approval although the tool's risk does not demand it (None: it does not).
Escalate = Callable[["McpSettings", dict[str, Any]], "str | None"]
# The state an approval of this call is bound to, recomputed when the approval is used.
Bind = Callable[["McpSettings", dict[str, Any]], dict[str, str]]


class Risk(IntEnum):
    """How much harm a call can do; HIGH and CRITICAL need another user's approval unless the caller is admin."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


@dataclass(frozen=True)
class ToolSpec:
    """One tool. `read_only`: it changes nothing (its audit row is not waited for); `destructive`: it may
    overwrite or delete; `open_world`: it reaches beyond this machine (the web, Notion)."""

    name: str
    family: str
    risk: Risk
    read_only: bool = False
    destructive: bool = False
    open_world: bool = False
    escalate: Escalate | None = None
    bind: Bind | None = None

    def annotations(self) -> ToolAnnotations:
        """The MCP hints clients show, from this entry."""
        # imported here: `ai-suite` reads the catalog where only the cli extra is installed, without `mcp`
        from mcp.types import ToolAnnotations

        return ToolAnnotations(read_only_hint=self.read_only, destructive_hint=self.destructive,
                               open_world_hint=self.open_world)


def tool(mcp: FastMCP, name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register a tool function under its catalog name, with the catalog's hints."""
    return mcp.tool(name=name, annotations=TOOLS[name].annotations(), **options)


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("list_files", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("read_file", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("search_files", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("get_system_info", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("write_file", "filesystem", Risk.MEDIUM, destructive=True, escalate=approval_rules.git_control_write),
        ToolSpec("create_directory", "filesystem", Risk.MEDIUM, escalate=approval_rules.git_control_write),
        ToolSpec("run_command", "execution", Risk.HIGH, destructive=True),
        ToolSpec("execute_python", "execution", Risk.CRITICAL, destructive=True),
        ToolSpec("git_status", "git", Risk.LOW, read_only=True),
        ToolSpec("git_diff", "git", Risk.LOW, read_only=True),
        ToolSpec("git_log", "git", Risk.LOW, read_only=True),
        ToolSpec("git_add", "git", Risk.MEDIUM),
        ToolSpec("git_commit", "git", Risk.HIGH, bind=approval_rules.staged_tree),
        ToolSpec("web_scrape", "web", Risk.MEDIUM, read_only=True, open_world=True),
        ToolSpec("web_screenshot", "web", Risk.MEDIUM, open_world=True),  # save_path writes a file
        ToolSpec("web_analyze_ui", "web", Risk.MEDIUM, read_only=True, open_world=True),
        # scripted steps can submit forms and press buttons on remote sites
        ToolSpec("web_automate", "web", Risk.HIGH, destructive=True, open_world=True),
        ToolSpec("notion_search", "notion", Risk.LOW, read_only=True, open_world=True),
        ToolSpec("notion_create_page", "notion", Risk.MEDIUM, open_world=True),
        ToolSpec("web_to_notion", "notion", Risk.MEDIUM, open_world=True),
        ToolSpec("rag_query", "rag", Risk.LOW, read_only=True),
        ToolSpec("rag_index", "rag", Risk.MEDIUM),
    )
}
