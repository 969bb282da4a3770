"""`ai --mcp TOOL`, `ai --mcp-list` and `ai --approvals`: the suite's MCP server over streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from services.cli.client import error_message, normalise_base_url
from services.cli.exitcodes import ExitCode
from services.cli.mcp_render import local_time, render_approvals, render_tools, result_text, tool_rows
from services.cli.rag import DOCKER_DIR
from services.cli.render import Notes

if TYPE_CHECKING:
    from fastmcp import Client
    from fastmcp.client.client import CallToolResult
    from mcp.types import Tool

DEFAULT_MCP_PORT = "8020"
POLL_SECONDS = 2.0
# The server decides expiry; this margin only stops a poller whose server never says "expired".
EXPIRY_GRACE_SECONDS = 5.0
APPROVE_HINT = "approve with: ai-approvals --approve {id}"

ClientFactory = Callable[[], "Client[Any]"]


class McpUnreachable(Exception):
    """Nothing answers at the MCP URL."""


class McpCallError(Exception):
    """The server refused or failed the call; the message says why."""


class NotApproved(Exception):
    """An approval-gated call was rejected or expired."""

    def __init__(self, request_id: str, status: str, reason: str | None) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"request {request_id} was {status}{detail}; the call did not run")
        self.status = status


@dataclass(frozen=True)
class McpTarget:
    """Where the server is and who the caller is."""

    url: str
    api_key: str | None
    timeout: float
    key_source: str = "none"

    @property
    def base_url(self) -> str:
        """The server root that serves /health and /api/approvals (the MCP URL without its /mcp path)."""
        url = self.url.rstrip("/")
        return normalise_base_url(url[: -len("/mcp")] if url.endswith("/mcp") else url)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def mcp_url(env: Mapping[str, str]) -> str:
    """MCP_URL, else the local server on MCP_PORT."""
    return env.get("MCP_URL") or f"http://127.0.0.1:{env.get('MCP_PORT', DEFAULT_MCP_PORT)}/mcp"


def owner_key_path(env: Mapping[str, str]) -> Path:
    """Where the server writes the local owner's key: beside SECURITY_DB_PATH, else DATA_DIR/security."""
    if env.get("SECURITY_DB_PATH"):
        return Path(env["SECURITY_DB_PATH"]).expanduser().resolve().parent / "owner.key"
    data_dir = Path(env.get("DATA_DIR", "../data")).expanduser()
    # relative DATA_DIR values count from docker/, as in compose and the native runner
    return ((data_dir if data_dir.is_absolute() else DOCKER_DIR / data_dir) / "security" / "owner.key").resolve()


def resolve_target(env: Mapping[str, str], timeout: float) -> McpTarget:
    """URL and key: MCP_API_KEY wins, then the owner key file; no key means an anonymous (guest) caller."""
    url = mcp_url(env)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"MCP_URL must start with http:// or https://, got {url!r}")
    if env.get("MCP_API_KEY"):
        return McpTarget(url, env["MCP_API_KEY"], timeout, "MCP_API_KEY")
    path = owner_key_path(env)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        return McpTarget(url, None, timeout)
    return McpTarget(url, key or None, timeout, str(path))


def parse_tool_args(text: str | None) -> dict[str, Any]:
    """`--mcp-args` as a JSON object; raise ValueError with a usage message otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--mcp-args is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"--mcp-args must be a JSON object like '{{\"path\": \"README.md\"}}', got {text!r}")
    return value


def http_client_factory(target: McpTarget) -> ClientFactory:
    """Fresh fastmcp clients on streamable HTTP, carrying the caller's key."""
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    def make() -> Client[Any]:
        return Client(StreamableHttpTransport(target.url, headers=target.headers()), timeout=target.timeout)

    return make


def with_working_dir(tool: Tool, args: Mapping[str, Any], cwd: Path) -> dict[str, Any]:
    """The caller's folder as `working_dir` when the tool takes one and the arguments leave it out."""
    properties = (tool.input_schema or {}).get("properties") or {}
    if "working_dir" in properties and args.get("working_dir") is None:
        return {**args, "working_dir": str(cwd)}
    return dict(args)


@dataclass(frozen=True)
class PendingApproval:
    """The structured metadata of an approval-required failure."""

    request_id: str
    expires_at: str
    status: str
    message: str


def pending_approval(message: str) -> PendingApproval | None:
    """Parse a ToolError message; None unless it is the server's approval-required JSON."""
    try:
        body = json.loads(message)
    except json.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("approval_required") is not True or not body.get("request_id"):
        return None
    return PendingApproval(str(body["request_id"]), str(body.get("expires_at") or ""),
                           str(body.get("status") or "pending"), str(body.get("message") or ""))


def _epoch(stamp: str | None) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


class ApprovalPoller:
    """Polls GET /api/approvals/{id}/status until the request leaves "pending"."""

    def __init__(self, target: McpTarget, interval: float | None = None, out: TextIO | None = None) -> None:
        self.target = target
        self.interval = POLL_SECONDS if interval is None else interval
        self.out = out

    async def status(self, http: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
        try:
            response = await http.get(f"/api/approvals/{request_id}/status")
        except httpx.TransportError as exc:
            raise McpUnreachable(f"cannot reach {self.target.base_url} to poll request {request_id}: {exc}") from exc
        if response.status_code >= 400:
            raise McpCallError(f"polling request {request_id} failed ({response.status_code}): "
                               f"{error_message(response)}")
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def wait(self, tool: str, pending: PendingApproval) -> dict[str, Any]:
        """Show a spinner until the request is decided or expires; return its last status body."""
        from rich.console import Console

        console = Console(file=self.out or sys.stderr, highlight=False)
        expires = _epoch(pending.expires_at)
        label = (f"waiting for approval of [bold]{tool}[/] (request {pending.request_id}, expires "
                 f"{local_time(pending.expires_at)}); {APPROVE_HINT.format(id=pending.request_id)} (Ctrl-C stops)")
        async with httpx.AsyncClient(base_url=self.target.base_url, headers=self.target.headers(),
                                     trust_env=False, timeout=httpx.Timeout(10.0, connect=5.0)) as http:
            with console.status(label):
                while True:
                    body = await self.status(http, pending.request_id)
                    state = str(body.get("status") or "pending")
                    expires = _epoch(body.get("expires_at")) or expires
                    if state != "pending":
                        return body
                    if expires is not None and time.time() > expires + EXPIRY_GRACE_SECONDS:
                        return {**body, "status": "expired"}
                    await asyncio.sleep(self.interval)


async def list_tools(factory: ClientFactory) -> list[Tool]:
    async with factory() as client:
        return list(await client.list_tools())


async def call_tool(factory: ClientFactory, name: str, args: Mapping[str, Any], cwd: Path,
                    poller: ApprovalPoller, notes: Notes) -> CallToolResult:
    """Call a tool once; if it needs approval, wait for the decision and rerun it once when approved."""
    from fastmcp.exceptions import ToolError

    async with factory() as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
        if name not in tools:
            raise McpCallError(f"no tool {name!r} on this server (or not for your role); `ai --mcp-list` shows them")
        # filled once: the retry must send exactly the arguments that were approved
        final_args = with_working_dir(tools[name], args, cwd)
        try:
            return await client.call_tool(name, final_args)
        except ToolError as exc:
            pending = pending_approval(str(exc))
            if pending is None:
                raise McpCallError(str(exc)) from None
    notes.say(f"{name} needs approval: request {pending.request_id}, expires {local_time(pending.expires_at)}",
              "yellow")
    notes.say(APPROVE_HINT.format(id=pending.request_id), "yellow")
    try:
        decided = await poller.wait(name, pending)
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels us, then raises KeyboardInterrupt
        notes.say(f"stopped waiting; request {pending.request_id} stays open until it expires, and the same "
                  "command runs once after it is approved", "yellow")
        raise
    if decided.get("status") != "approved":
        raise NotApproved(pending.request_id, str(decided.get("status")), decided.get("reason"))
    notes.say(f"request {pending.request_id} approved; running {name}", "green")
    async with factory() as client:
        try:
            return await client.call_tool(name, final_args)
        except ToolError as exc:
            raise McpCallError(str(exc)) from None


def fetch_approvals(target: McpTarget) -> list[dict[str, Any]]:
    """GET /api/approvals: the caller's own requests."""
    try:
        with httpx.Client(base_url=target.base_url, headers=target.headers(), trust_env=False,
                          timeout=httpx.Timeout(target.timeout, connect=5.0)) as http:
            response = http.get("/api/approvals")
    except httpx.TransportError as exc:
        raise McpUnreachable(f"cannot reach the MCP server at {target.base_url}: {exc}") from exc
    if response.status_code >= 400:
        raise McpCallError(f"the MCP server answered {response.status_code}: {error_message(response)}")
    body = response.json()
    requests = body.get("requests") if isinstance(body, dict) else None
    return [r for r in requests or [] if isinstance(r, dict)]


def _connect_errors(target: McpTarget, exc: Exception) -> Exception:
    """Turn fastmcp's connection failures into our two kinds, with a hint for the usual cause."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and "failed to connect" in text.lower():
        return McpUnreachable(f"cannot reach the MCP server at {target.url}: {text}")
    hint = (f" (key from {target.key_source})" if target.api_key else
            " (no key: set MCP_API_KEY, or start the server once so it writes the owner key)")
    return McpCallError(f"the MCP server at {target.url} refused the request: {text}{hint}")


def run_list(target: McpTarget, notes: Notes, factory: ClientFactory | None = None,
             out: TextIO | None = None) -> ExitCode:
    """`ai --mcp-list`."""
    from mcp.shared.exceptions import MCPError

    try:
        tools = asyncio.run(list_tools(factory or http_client_factory(target)))
    except (McpUnreachable, McpCallError) as exc:
        return _fail(exc, notes)
    except (RuntimeError, OSError, MCPError) as exc:  # fastmcp's connect failures and HTTP error answers
        return _fail(_connect_errors(target, exc), notes)
    render_tools(tool_rows(tools), out)
    return ExitCode.OK


def run_call(target: McpTarget, name: str, args: Mapping[str, Any], notes: Notes, *, cwd: Path | None = None,
             factory: ClientFactory | None = None, poller: ApprovalPoller | None = None,
             out: TextIO | None = None) -> ExitCode:
    """`ai --mcp TOOL --mcp-args JSON`: print what the tool returns."""
    from mcp.shared.exceptions import MCPError

    stream = out or sys.stdout
    try:
        result = asyncio.run(call_tool(factory or http_client_factory(target), name, args, cwd or Path.cwd(),
                                       poller or ApprovalPoller(target), notes))
    except NotApproved as exc:
        notes.error(str(exc))
        return ExitCode.NOT_APPROVED
    except (McpUnreachable, McpCallError) as exc:
        return _fail(exc, notes)
    except (RuntimeError, OSError, MCPError) as exc:
        return _fail(_connect_errors(target, exc), notes)
    text = result_text(result)
    stream.write(text + ("" if text.endswith("\n") else "\n"))
    stream.flush()
    return ExitCode.OK


def run_approvals(target: McpTarget, notes: Notes, out: TextIO | None = None) -> ExitCode:
    """`ai --approvals`."""
    try:
        requests = fetch_approvals(target)
    except (McpUnreachable, McpCallError) as exc:
        return _fail(exc, notes)
    if not requests:
        notes.say("you have no approval requests")
        return ExitCode.OK
    render_approvals(requests, out)
    return ExitCode.OK


def _fail(exc: Exception, notes: Notes) -> ExitCode:
    notes.error(str(exc))
    if isinstance(exc, McpUnreachable):
        notes.say("start it with `ai-suite up p3` (or `make up-p3`)", "yellow")
        return ExitCode.UNREACHABLE
    return ExitCode.API_ERROR
