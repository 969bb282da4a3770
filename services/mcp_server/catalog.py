"""Every tool the server offers, with its risk level and family: the one list RBAC, the CLI and docs read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Risk(IntEnum):
    """How much harm a call can do; HIGH and CRITICAL need another user's approval unless the caller is admin."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


@dataclass(frozen=True)
class ToolSpec:
    name: str
    family: str
    risk: Risk
    read_only: bool = False


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("list_files", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("read_file", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("search_files", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("get_system_info", "filesystem", Risk.LOW, read_only=True),
        ToolSpec("write_file", "filesystem", Risk.MEDIUM),
        ToolSpec("create_directory", "filesystem", Risk.MEDIUM),
        ToolSpec("run_command", "execution", Risk.HIGH),
        ToolSpec("execute_python", "execution", Risk.CRITICAL),
        ToolSpec("git_status", "git", Risk.LOW, read_only=True),
        ToolSpec("git_diff", "git", Risk.LOW, read_only=True),
        ToolSpec("git_log", "git", Risk.LOW, read_only=True),
        ToolSpec("git_add", "git", Risk.MEDIUM),
        ToolSpec("git_commit", "git", Risk.HIGH),
        ToolSpec("web_scrape", "web", Risk.MEDIUM, read_only=True),
        ToolSpec("web_screenshot", "web", Risk.MEDIUM),  # save_path writes a file
        ToolSpec("web_analyze_ui", "web", Risk.MEDIUM, read_only=True),
        ToolSpec("web_automate", "web", Risk.HIGH),
        ToolSpec("notion_search", "notion", Risk.LOW, read_only=True),
        ToolSpec("notion_create_page", "notion", Risk.MEDIUM),
        ToolSpec("web_to_notion", "notion", Risk.MEDIUM),
        ToolSpec("rag_query", "rag", Risk.LOW, read_only=True),
        ToolSpec("rag_index", "rag", Risk.MEDIUM),
    )
}
