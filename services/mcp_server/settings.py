"""Settings of the MCP server, read from the environment and `.env`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.common.settings import SuiteSettings
from services.mcp_server.gate.audit_key import default_key_path
from services.mcp_server.guards.ssrf import parse_allowed_hosts

DEFAULT_COMMANDS = "ls,cat,head,tail,wc,grep,echo,pwd,date,whoami,uname,du,df,sort,uniq,diff,file,stat,tree"
# DATA_DIR's folders that hold the suite's own state; its documents folder stays open to the tools.
STATE_FOLDERS = ("security", "postgresql", "vectors", "conversations", "run", "cache", "backups", "prometheus",
                 "alertmanager")
DEFAULT_TOOL_LIMITS = '{"run_command": [2, 10], "execute_python": [1, 5], "web_automate": [1, 5]}'
# Calls of one tool that run at once; the heaviest (a sandboxed interpreter, a scripted browser) get fewer.
DEFAULT_TOOL_CONCURRENCY = '{"execute_python": 2, "run_command": 4, "web_automate": 4, "web_screenshot": 4}'


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class McpSettings(SuiteSettings):
    """Where tools may act, how each guard is tuned, and which other services the tools reach."""

    port: int = Field(8020, alias="MCP_PORT", ge=0, le=65535, description="Port of the streamable HTTP server.")
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.home()], alias="MCP_ALLOWED_ROOTS",
        description="Comma-separated folders that file, git and command tools may touch (default: your home).",
    )
    host_root: Path | None = Field(
        None, alias="MCP_HOST_ROOT",
        description="Where the host filesystem is mounted inside a container (/mnt/host); host paths map under it.",
    )
    security_db: Path | None = Field(
        None, alias="SECURITY_DB_PATH", description="SQLite file of users, roles, approvals and audit "
        "(default DATA_DIR/security/security.db).",
    )
    rbac_enabled: bool = Field(True, alias="RBAC_ENABLED", description="Check every call against the caller's role.")
    approval_enabled: bool = Field(
        True, alias="APPROVAL_WORKFLOW_ENABLED",
        description="HIGH and CRITICAL calls from non-admins wait for another user's approval.",
    )
    approval_timeout: int = Field(
        300, alias="APPROVAL_TIMEOUT", ge=1,
        description="Seconds a request waits for a decision, and an approval lives (the server's value, when used).",
    )
    owner_role: str = Field(
        "developer", alias="MCP_OWNER_ROLE", description="Role of the local owner (stdio and the owner key file)."
    )
    approval_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:3000", "http://localhost:3000"], alias="MCP_APPROVAL_ORIGINS",
        description="Comma-separated origins (scheme://host:port) whose pages may approve or reject requests "
        "over HTTP: the chat app's own. A decision from any other Origin, or none, is refused with 403.",
    )
    anonymous_role: str = Field(
        "guest", alias="MCP_ANONYMOUS_ROLE",
        description="Role of an HTTP caller without a key, on loopback only; empty refuses such callers.",
    )
    audit_enabled: bool = Field(True, alias="AUDIT_ENABLED", description="Append every call to the audit chain.")
    audit_verify_interval: float = Field(
        3600.0, alias="AUDIT_VERIFY_INTERVAL", ge=0,
        description="Seconds between the server's own checks of the audit chain (the first runs at start; its "
        "result and time are metrics); 0 checks only at start.",
    )
    rate_limit_enabled: bool = Field(True, alias="RATE_LIMIT_ENABLED", description="Token buckets per user and tool.")
    rate_limit_per_second: float = Field(
        50.0, alias="RATE_LIMIT_PER_SECOND", gt=0, description="Refill rate of each user's bucket per tool."
    )
    rate_limit_burst: int = Field(200, alias="RATE_LIMIT_BURST", ge=1, description="Size of each bucket.")
    rate_limit_tools: dict[str, tuple[float, int]] = Field(
        default_factory=lambda: json.loads(DEFAULT_TOOL_LIMITS), alias="RATE_LIMIT_TOOLS",
        description='JSON of per-tool [per_second, burst] overrides, e.g. {"run_command": [2, 10]}.',
    )
    tool_concurrency: int = Field(
        8, alias="MCP_TOOL_CONCURRENCY", ge=1,
        description="Calls of one tool that run at once, from all clients together; more wait their turn. "
        "Blocking tools run in worker threads, so slow calls overlap instead of queueing.",
    )
    tool_concurrency_tools: dict[str, int] = Field(
        default_factory=lambda: json.loads(DEFAULT_TOOL_CONCURRENCY), alias="MCP_TOOL_CONCURRENCY_TOOLS",
        description='JSON of per-tool overrides of MCP_TOOL_CONCURRENCY, e.g. {"web_scrape": 4}.',
    )
    command_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: DEFAULT_COMMANDS.split(","), alias="COMMAND_ALLOWLIST",
        description="Comma-separated programs run_command may start (never through a shell).",
    )
    command_timeout: float = Field(30.0, alias="COMMAND_TIMEOUT", gt=0, description="Seconds per command.")
    max_output_bytes: int = Field(
        65536, alias="TOOL_MAX_OUTPUT_BYTES", ge=1024, description="Output kept from a command or Python run."
    )
    max_read_bytes: int = Field(
        1024 * 1024, alias="TOOL_MAX_READ_BYTES", ge=1024, description="Largest file read_file returns."
    )
    python_timeout: float = Field(10.0, alias="PYTHON_TIMEOUT", gt=0, description="Wall seconds per execute_python.")
    python_cpu_seconds: int = Field(5, alias="PYTHON_CPU_SECONDS", ge=1, description="CPU seconds per execute_python.")
    python_memory_mb: int = Field(256, alias="PYTHON_MEMORY_MB", ge=32, description="Address space per run, MiB.")
    python_max_processes: int = Field(
        16, alias="PYTHON_MAX_PROCESSES", ge=1, description="Processes the sandboxed user may own."
    )
    chromium_path: Path = Field(
        Path("/usr/bin/chromium"), alias="CHROMIUM_PATH", description="Chromium binary Playwright drives."
    )
    web_timeout: float = Field(20.0, alias="WEB_TIMEOUT", gt=0, description="Seconds per page load or web step.")
    web_allow_private: bool = Field(
        False, alias="WEB_ALLOW_PRIVATE",
        description="Let web tools reach private, loopback and link-local addresses (SSRF guard off).",
    )
    web_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WEB_ALLOWED_HOSTS",
        description="Comma-separated host:port pairs (names, addresses or CIDR networks) web tools may reach "
        "even when private, e.g. 127.0.0.1:8080.",
    )
    notion_api_key: str | None = Field(None, alias="NOTION_API_KEY", description="Notion integration token.")
    notion_api_url: str = Field(
        "https://api.notion.com", alias="NOTION_API_URL", description="Base URL of the Notion API."
    )
    notion_parent_page_id: str | None = Field(
        None, alias="NOTION_PARENT_PAGE_ID", description="Page new Notion pages go under by default."
    )
    rag_url: str = Field("http://127.0.0.1:8002", alias="RAG_URL", description="Base URL of the RAG service.")
    rag_timeout: float = Field(120.0, alias="RAG_LLM_TIMEOUT", gt=0, description="Seconds per RAG call.")
    python_sandbox: Literal["bwrap", "none-unsafe"] = Field(
        "bwrap", alias="PYTHON_SANDBOX",
        description="How execute_python confines code: bwrap (bubblewrap; refuses to run without it) or "
        "none-unsafe (rlimits and an unprivileged user only: not a sandbox).",
    )
    bwrap_path: Path = Field(
        Path("/usr/bin/bwrap"), alias="BWRAP_PATH", description="bubblewrap binary execute_python runs code inside."
    )
    audit_key: Path | None = Field(
        None, alias="AUDIT_KEY_PATH",
        description="HMAC key of the audit chain, mode 0600 (default: audit.key beside the security database).",
    )

    _split_lists = field_validator(
        "allowed_roots", "command_allowlist", "web_allowed_hosts", "approval_origins", mode="before"
    )(_csv)

    @field_validator("web_allowed_hosts")
    @classmethod
    def _hosts_with_ports(cls, value: list[str]) -> list[str]:
        parse_allowed_hosts(value)  # a bare host is refused at start-up, not at the first web call
        return value

    @field_validator("tool_concurrency_tools", mode="before")
    @classmethod
    def _json_concurrency(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("tool_concurrency_tools")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = sorted(name for name, limit in value.items() if limit < 1)
        if bad:
            raise ValueError(f"each tool needs a concurrency of at least 1: {', '.join(bad)}")
        return value

    def concurrency_of(self, tool: str) -> int:
        return self.tool_concurrency_tools.get(tool, self.tool_concurrency)

    @field_validator("rate_limit_tools", mode="before")
    @classmethod
    def _json_limits(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    def security_db_path(self) -> Path:
        """The SQLite file of the security layer."""
        return self.security_db or self.data_dir / "security" / "security.db"

    def owner_key_path(self) -> Path:
        """Where the local owner's API key is kept (mode 0600)."""
        return self.security_db_path().parent / "owner.key"

    def audit_key_path(self) -> Path:
        """The audit chain's key, kept outside the database so that whoever can write it cannot re-sign it."""
        return self.audit_key or default_key_path(self.security_db_path())

    def own_data(self) -> list[Path]:
        """What no tool may touch, even inside an allowed root: the security folder, both keys, and the
        suite's state under DATA_DIR (databases, vectors, conversations, run state, caches)."""
        return [self.security_db_path().parent, self.audit_key_path(), self.owner_key_path(),
                *(self.data_dir / folder for folder in STATE_FOLDERS)]

    def roots(self) -> list[Path]:
        """Allowed roots, resolved, and mapped under the host mount in a container."""
        return [Path(_mapped(self.host_root, root)).resolve() for root in self.allowed_roots]


def _mapped(host_root: Path | None, path: Path) -> Path:
    if host_root is None or not path.is_absolute():
        return path
    return host_root / path.relative_to(path.anchor)
