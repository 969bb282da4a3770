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
    read_only: bool


def _spec(name: str, family: str, risk: Risk, read_only: bool = False) -> ToolSpec:
    return ToolSpec(name, family, risk, read_only)


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        _spec("list_files", "filesystem", Risk.LOW, read_only=True),
        _spec("read_file", "filesystem", Risk.LOW, read_only=True),
        _spec("search_files", "filesystem", Risk.LOW, read_only=True),
        _spec("get_system_info", "filesystem", Risk.LOW, read_only=True),
        _spec("write_file", "filesystem", Risk.MEDIUM),
        _spec("create_directory", "filesystem", Risk.MEDIUM),
        _spec("run_command", "execution", Risk.HIGH),
        _spec("execute_python", "execution", Risk.CRITICAL),
        _spec("git_status", "git", Risk.LOW, read_only=True),
        _spec("git_diff", "git", Risk.LOW, read_only=True),
        _spec("git_log", "git", Risk.LOW, read_only=True),
        _spec("git_add", "git", Risk.MEDIUM),
        _spec("git_commit", "git", Risk.HIGH),
        _spec("web_scrape", "web", Risk.MEDIUM, read_only=True),
        _spec("web_screenshot", "web", Risk.MEDIUM),  # save_path writes a file
        _spec("web_analyze_ui", "web", Risk.MEDIUM, read_only=True),
        _spec("web_automate", "web", Risk.HIGH),
        _spec("notion_search", "notion", Risk.LOW, read_only=True),
        _spec("notion_create_page", "notion", Risk.MEDIUM),
        _spec("web_to_notion", "notion", Risk.MEDIUM),
        _spec("rag_query", "rag", Risk.LOW, read_only=True),
        _spec("rag_index", "rag", Risk.MEDIUM),
    )
}


def needs_approval(tool: str) -> bool:
    """True for tools whose calls wait for a second person unless an admin makes them."""
    return TOOLS[tool].risk >= Risk.HIGH
