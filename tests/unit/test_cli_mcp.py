"""`ai --mcp`, `ai --mcp-list` and `ai --approvals` against a small MCP server on real streamable HTTP.

The server speaks the suite's contract: Bearer keys, the approval-required ToolError JSON,
GET /api/approvals/{id}/status and GET /api/approvals. An approval is decided after a few polls.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

from services.cli import config as cli_config
from services.cli import mcp as cli_mcp
from services.cli.exitcodes import ExitCode
from services.cli.main import build_parser, main
from services.cli.mcp_render import render_approvals
from services.cli.render import Notes
from services.mcp_server.catalog import TOOLS
from tests.support.procs import free_port

KEY = "owner-key-123"


@dataclass
class FakeMcp:
    """What the fake server saw and how it decides approval requests."""

    url: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    decision: str = "approved"  # what a pending request becomes after `polls_before_decision` polls
    polls_before_decision: int = 2
    expires_in: float = 300.0

    def reset(self) -> None:
        self.runs.clear()
        self.requests.clear()
        self.decision, self.polls_before_decision, self.expires_in = "approved", 2, 300.0


def _gate(state: FakeMcp, tool: str, args: dict[str, Any]) -> None:
    """Run only under an approved request for exactly these arguments; consume it."""
    digest = json.dumps([tool, args], sort_keys=True)
    for request in state.requests.values():
        if request["digest"] == digest and request["status"] == "approved":
            request["status"] = "used"
            return
    request_id = uuid.uuid4().hex
    expires = (datetime.now(UTC) + timedelta(seconds=state.expires_in)).isoformat(timespec="seconds")
    state.requests[request_id] = {"request_id": request_id, "tool": tool, "digest": digest, "status": "pending",
                                  "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "expires_at": expires, "reason": None, "polls": 0}
    raise ToolError(json.dumps({"approval_required": True, "request_id": request_id, "expires_at": expires,
                                "status": "pending", "message": f"{tool} needs approval"}))


def _server(state: FakeMcp) -> FastAPI:
    mcp = FastMCP("fake-suite")

    @mcp.tool(name="read_file")
    def read_file(path: str, working_dir: str | None = None) -> str:
        """Read a text file."""
        state.runs.append({"tool": "read_file", "path": path, "working_dir": working_dir})
        return f"contents of {path}"

    @mcp.tool(name="run_command")
    def run_command(command: list[str], working_dir: str | None = None) -> dict[str, Any]:
        """Run an allowlisted program without a shell."""
        _gate(state, "run_command", {"command": command, "working_dir": working_dir})
        state.runs.append({"tool": "run_command", "command": command, "working_dir": working_dir})
        return {"exit_code": 0, "stdout": "hello\n"}

    @mcp.tool(name="get_system_info")
    def get_system_info() -> dict[str, str]:
        """Describe this machine."""
        return {"os": "test"}

    inner = mcp.http_app(path="/mcp")
    app = FastAPI(lifespan=inner.lifespan)

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "unknown API key"}}, status_code=401)
        response: Response = await call_next(request)
        return response

    @app.get("/api/approvals")
    def approvals() -> dict[str, Any]:
        return {"requests": [{k: v for k, v in r.items() if k not in ("digest", "polls")}
                             for r in state.requests.values()]}

    @app.get("/api/approvals/{request_id}/status")
    def status(request_id: str) -> Response:
        request = state.requests.get(request_id)
        if request is None:
            return JSONResponse({"error": {"message": "no such request"}}, status_code=404)
        request["polls"] += 1
        if request["status"] == "pending" and request["polls"] >= state.polls_before_decision:
            request["status"] = state.decision
            request["reason"] = "too risky" if state.decision == "rejected" else None
        return JSONResponse({k: v for k, v in request.items() if k not in ("digest", "polls")})

    app.mount("/", inner)
    return app


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeMcp]:
    state = FakeMcp()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_server(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "fake MCP server did not start"
        time.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}/mcp"
    yield state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(fake_server: FakeMcp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeMcp:
    fake_server.reset()
    monkeypatch.setattr(cli_config, "SUITE_ENV_FILE", tmp_path / "no.env")
    monkeypatch.setattr(cli_mcp, "POLL_SECONDS", 0.01)
    monkeypatch.setenv("MCP_URL", fake_server.url)
    monkeypatch.setenv("MCP_API_KEY", KEY)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return fake_server


# -- arguments ---------------------------------------------------------------------------------------


def test_flags_parse() -> None:
    args = build_parser().parse_args(["--mcp", "read_file", "--mcp-args", '{"path": "a"}'])
    assert (args.mcp, args.mcp_args, args.mcp_list, args.approvals) == ("read_file", '{"path": "a"}', False, False)
    assert build_parser().parse_args(["--mcp-list"]).mcp_list
    assert build_parser().parse_args(["--approvals"]).approvals


@pytest.mark.parametrize("argv", [
    ["--mcp", "read_file", "--mcp-list"],
    ["--mcp-list", "--approvals"],
    ["--mcp", "read_file", "--rag", "q"],
    ["--mcp", "read_file", "-i"],
    ["--mcp", "read_file", "stray", "words"],
    ["--mcp-args", "{}"],
    ["--mcp", "read_file", "--mcp-args", "{not json"],
    ["--mcp", "read_file", "--mcp-args", "[1, 2]"],
])
def test_usage_errors_exit_2_before_any_call(argv: list[str], server: FakeMcp) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == ExitCode.USAGE
    assert server.runs == [] and server.requests == {}


def test_parse_tool_args() -> None:
    assert cli_mcp.parse_tool_args(None) == {} and cli_mcp.parse_tool_args("") == {}
    assert cli_mcp.parse_tool_args('{"path": "x", "n": 2}') == {"path": "x", "n": 2}
    with pytest.raises(ValueError, match="JSON object"):
        cli_mcp.parse_tool_args('"x"')


def test_target_url_and_key(tmp_path: Path) -> None:
    assert cli_mcp.mcp_url({}) == "http://127.0.0.1:8020/mcp"
    assert cli_mcp.mcp_url({"MCP_PORT": "9020"}) == "http://127.0.0.1:9020/mcp"
    target = cli_mcp.resolve_target({"MCP_URL": "http://h:1/mcp/", "MCP_API_KEY": "k"}, 5.0)
    assert (target.api_key, target.base_url, target.headers()) == ("k", "http://h:1", {"Authorization": "Bearer k"})
    # without MCP_API_KEY the owner's key file is used, where the server writes it
    key_file = tmp_path / "data" / "security" / "owner.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("owner-secret\n")
    target = cli_mcp.resolve_target({"DATA_DIR": str(tmp_path / "data")}, 5.0)
    assert target.api_key == "owner-secret" and target.key_source == str(key_file)
    db_target = cli_mcp.resolve_target({"SECURITY_DB_PATH": str(key_file.parent / "security.db")}, 5.0)
    assert db_target.api_key == "owner-secret"
    assert cli_mcp.resolve_target({"DATA_DIR": str(tmp_path / "none")}, 5.0).api_key is None
    # a relative DATA_DIR counts from docker/, as compose and the native runner count it
    expected = cli_mcp.DOCKER_DIR.parent / "data" / "security" / "owner.key"
    assert cli_mcp.owner_key_path({"DATA_DIR": "../data"}) == expected
    with pytest.raises(ValueError, match="http"):
        cli_mcp.resolve_target({"MCP_URL": "ftp://x"}, 5.0)


def test_approval_metadata_is_recognised_only_in_the_servers_shape() -> None:
    body = {"approval_required": True, "request_id": "r1", "expires_at": "2026-01-01T00:00:00+00:00",
            "status": "pending", "message": "m"}
    assert cli_mcp.pending_approval(json.dumps(body)) == cli_mcp.PendingApproval(
        "r1", "2026-01-01T00:00:00+00:00", "pending", "m")
    assert cli_mcp.pending_approval("permission denied: tool.run_command") is None
    assert cli_mcp.pending_approval(json.dumps({**body, "approval_required": False})) is None
    assert cli_mcp.pending_approval("[1]") is None


# -- over streamable HTTP ----------------------------------------------------------------------------------


def test_call_prints_the_result_and_fills_working_dir(server: FakeMcp, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mcp", "read_file", "--mcp-args", '{"path": "README.md"}']) == ExitCode.OK
    assert capsys.readouterr().out == "contents of README.md\n"
    assert server.runs == [{"tool": "read_file", "path": "README.md", "working_dir": str(tmp_path)}]
    # an explicit working_dir wins; a tool without the parameter gets none
    assert main(["--mcp", "read_file", "--mcp-args", '{"path": "a", "working_dir": "/srv"}']) == ExitCode.OK
    assert server.runs[-1]["working_dir"] == "/srv"
    assert main(["--mcp", "get_system_info"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out.split("contents of a\n", 1)[1]) == {"os": "test"}


def test_list_shows_each_tool_with_catalog_risk(server: FakeMcp, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mcp-list"]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line for line in lines if line.startswith("│") and "tool" not in line.split()[1]}
    assert set(rows) == {"read_file", "run_command", "get_system_info"}
    assert "filesystem" in rows["read_file"] and "LOW" in rows["read_file"] and "Read a text file." in rows["read_file"]
    assert "execution" in rows["run_command"] and TOOLS["run_command"].risk.name in rows["run_command"]
    # catalog order, not alphabetical
    names = [line.split()[1] for line in lines if line.startswith("│") and line.split()[1] in rows]
    assert names == ["read_file", "get_system_info", "run_command"]


def test_call_waits_for_approval_then_runs_exactly_once(server: FakeMcp, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--mcp", "run_command", "--mcp-args", '{"command": ["echo", "hello"]}'])
    captured = capsys.readouterr()
    assert code == ExitCode.OK
    assert json.loads(captured.out) == {"exit_code": 0, "stdout": "hello\n"}
    (request,) = server.requests.values()
    assert request["status"] == "used" and request["polls"] == 2
    assert f"ai-approvals --approve {request['request_id']}" in captured.err
    # the retry sent exactly the arguments that were approved, working_dir included
    assert server.runs == [{"tool": "run_command", "command": ["echo", "hello"], "working_dir": str(tmp_path)}]


@pytest.mark.parametrize("decision", ["rejected", "expired"])
def test_rejected_or_expired_requests_never_run(decision: str, server: FakeMcp,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    server.decision = decision
    assert main(["--mcp", "run_command", "--mcp-args", '{"command": ["ls"]}']) == ExitCode.NOT_APPROVED
    assert server.runs == []
    err = capsys.readouterr().err
    assert f"was {decision}" in err and "did not run" in err
    if decision == "rejected":
        assert "too risky" in err


def test_wait_ends_when_the_request_runs_out_of_time(server: FakeMcp, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a server that keeps saying "pending" past the expiry must not keep the command waiting
    server.polls_before_decision, server.expires_in = 10**9, -1.0
    monkeypatch.setattr(cli_mcp, "EXPIRY_GRACE_SECONDS", 0.0)
    assert main(["--mcp", "run_command", "--mcp-args", '{"command": ["ls"]}']) == ExitCode.NOT_APPROVED
    assert server.runs == [] and "was expired" in capsys.readouterr().err


def test_approvals_lists_the_callers_requests(server: FakeMcp, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--approvals"]) == ExitCode.OK
    assert "no approval requests" in capsys.readouterr().err
    server.decision = "rejected"
    main(["--mcp", "run_command", "--mcp-args", '{"command": ["ls"]}'])
    capsys.readouterr()
    assert main(["--approvals"]) == ExitCode.OK
    out = capsys.readouterr().out
    (request_id,) = server.requests
    assert request_id in out and "run_command" in out and "rejected" in out and "too risky" in out


def test_tool_errors_unknown_tools_and_bad_keys_exit_1(server: FakeMcp, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mcp", "no_such_tool"]) == ExitCode.API_ERROR
    assert "no tool 'no_such_tool'" in capsys.readouterr().err
    assert main(["--mcp", "read_file", "--mcp-args", '{"wrong": 1}']) == ExitCode.API_ERROR
    assert "path" in capsys.readouterr().err
    monkeypatch.setenv("MCP_API_KEY", "wrong")
    assert main(["--mcp-list"]) == ExitCode.API_ERROR
    assert "refused" in capsys.readouterr().err
    assert main(["--approvals"]) == ExitCode.API_ERROR
    assert "401" in capsys.readouterr().err


def test_unreachable_server_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_config, "SUITE_ENV_FILE", tmp_path / "no.env")
    monkeypatch.setenv("MCP_URL", f"http://127.0.0.1:{free_port()}/mcp")
    for argv in (["--mcp-list"], ["--mcp", "git_status"], ["--approvals"]):
        assert main(argv) == ExitCode.UNREACHABLE
        assert "ai-suite up p3" in capsys.readouterr().err


def test_result_text_of_blocks_without_structured_content() -> None:
    from fastmcp.client.client import CallToolResult
    from mcp.types import ImageContent, TextContent

    result = CallToolResult(content=[TextContent(type="text", text="saved"),
                                     ImageContent(type="image", data="aGVsbG8=", mime_type="image/png")],
                            structured_content=None, meta=None)
    assert cli_mcp.result_text(result) == "saved\n[image content, image/png, about 6 bytes]"


def test_notes_go_to_stderr_only(server: FakeMcp, capsys: pytest.CaptureFixture[str]) -> None:
    # stdout holds only the tool's result, so `ai --mcp ... > file` keeps it clean
    notes = Notes()
    target = cli_mcp.resolve_target({"MCP_URL": server.url, "MCP_API_KEY": KEY}, 10.0)
    assert cli_mcp.run_call(target, "run_command", {"command": ["x"]}, notes,
                            poller=cli_mcp.ApprovalPoller(target, interval=0.01)) == ExitCode.OK
    out = capsys.readouterr().out
    assert json.loads(out)["stdout"] == "hello\n"


def test_approvals_keep_whole_ids_on_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    request_id = "6b7a280c1ca641e1a9620e0af4657d7e"
    render_approvals([{"request_id": request_id, "tool": "run_command", "status": "rejected",
                       "created_at": "2026-11-26T00:31:49+00:00", "expires_at": "2026-11-26T00:36:49+00:00",
                       "reason": "too broad"}], out)
    text = out.getvalue()
    assert request_id in text and "rejected" in text and "too broad" in text
