"""Attacks found in the security review of the MCP server, each kept as a regression test."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server import approvals_cli
from services.mcp_server.gate.redact import for_approver, redact
from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.server import build_server
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import execution, filesystem
from tests.unit.mcp.security_support import make_settings

COMMANDS = "ls,cat,date,sort,wc,du,file,grep,diff"


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top-secret-line\n")
    (allowed / "a.txt").write_text("alpha\nbeta\n")
    # A list of names for --files0-from / file -f: the name inside points outside the root.
    (allowed / "names").write_bytes(str(outside / "secret.txt").encode() + b"\0")
    return {"allowed": allowed, "outside": outside}


def _settings(tree: dict[str, Path]) -> McpSettings:
    env = {"MCP_ALLOWED_ROOTS": str(tree["allowed"]), "COMMAND_ALLOWLIST": COMMANDS, "COMMAND_TIMEOUT": "5"}
    return McpSettings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.fixture()
async def client(tree: dict[str, Path]):
    mcp = FastMCP("review")
    settings = _settings(tree)
    execution.register(mcp, settings)
    filesystem.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected


async def run(client: Client, argv: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = (await client.call_tool("run_command", {"command": argv})).data
    return result


@pytest.mark.parametrize("template", [
    ["date", "-uf{secret}"],            # -u -f FILE in one cluster: date echoes each line of FILE
    ["sort", "-ro{target}", "a.txt"],   # -r -o FILE: writes outside the root
    ["grep", "-hf{secret}", "a.txt"],
])
async def test_option_cluster_values_are_path_checked(
    client: Client, tree: dict[str, Path], template: list[str]
) -> None:
    target = tree["outside"] / "written.txt"
    argv = [arg.format(secret=tree["outside"] / "secret.txt", target=target) for arg in template]
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await run(client, argv)
    assert not target.exists()


async def test_overlong_option_cluster_is_refused(client: Client, tree: dict[str, Path]) -> None:
    with pytest.raises(ToolError, match="option cluster"):
        await run(client, ["date", "-" + "u" * 40 + f"f{tree['outside'] / 'secret.txt'}"])


@pytest.mark.parametrize("argv", [
    ["sort", "--files0-from=names"], ["sort", "--fil=names"], ["wc", "--files0-from=names"], ["wc", "--f=names"],
    ["du", "--files0-from=names"], ["file", "-f", "names"], ["file", "-bf", "names"], ["file", "--files-from=names"],
    ["grep", "-R", "secret", "."], ["grep", "-iR", "secret"], ["grep", "--dereference-recursive", "secret"],
])
async def test_options_that_reach_unchecked_files_are_refused(client: Client, argv: list[str]) -> None:
    with pytest.raises(ToolError, match="is not allowed in run_command"):
        await run(client, argv)


async def test_diff_never_reads_through_a_symlink(client: Client, tree: dict[str, Path]) -> None:
    allowed = tree["allowed"]
    (allowed / "d1").mkdir()
    (allowed / "d2").mkdir()
    (allowed / "d1" / "f").symlink_to(tree["outside"] / "secret.txt")
    (allowed / "d2" / "f").write_text("other\n")
    for argv in (["diff", "d1", "d2"], ["diff", "-r", "d1", "d2"]):
        result = await run(client, argv)
        assert "top-secret" not in result["stdout"] + result["stderr"]
        assert "symbolic link" in result["stdout"]


async def test_ordinary_commands_still_run(client: Client) -> None:
    assert (await run(client, ["sort", "-r", "a.txt"]))["stdout"] == "beta\nalpha\n"
    assert (await run(client, ["grep", "-n", "beta", "a.txt"]))["stdout"] == "2:beta\n"
    assert (await run(client, ["wc", "-l", "a.txt"]))["stdout"].split()[0] == "2"
    assert (await run(client, ["diff", "-u", "a.txt", "a.txt"]))["exit_code"] == 0
    assert "a.txt" in (await run(client, ["ls", "-la"]))["stdout"]


def test_bad_working_dir_and_overlong_paths_are_tool_errors(tree: dict[str, Path]) -> None:
    guard = PathGuard(_settings(tree))
    with pytest.raises(ToolError, match="NUL"):
        guard.base(f"{tree['allowed']}\0")
    with pytest.raises(ToolError, match="cannot resolve"):
        guard.resolve("a/" * 3000 + "x")
    with pytest.raises(ToolError, match="cannot use"):
        guard.base("a" * 5000)


async def test_write_through_a_hard_link_leaves_the_outside_file_alone(
    client: Client, tree: dict[str, Path]
) -> None:
    """Known limit (docs/mcp.md): a planted hard link can be read; a write replaces the name and breaks the link."""
    secret = tree["outside"] / "secret.txt"
    os.link(secret, tree["allowed"] / "hard.txt")
    read = (await client.call_tool("read_file", {"path": "hard.txt"})).data
    assert read["content"] == "top-secret-line\n"
    await client.call_tool("write_file", {"path": "hard.txt", "content": "replaced"})
    assert secret.read_text() == "top-secret-line\n"
    assert (tree["allowed"] / "hard.txt").read_text() == "replaced"


def test_typed_form_values_are_not_written_down() -> None:
    steps = {"url": "https://example.org/login", "steps": [
        {"action": "fill", "selector": "input[type=password]", "value": "hunter2hunter2"},
        {"action": "fill", "selector": "#user", "value": "ann@example.org"},
        {"action": "press", "value": "Enter"},
    ]}
    audited = redact(steps)
    assert "hunter2hunter2" not in json.dumps(audited) and "ann@example.org" not in json.dumps(audited)
    assert audited["steps"][0]["value"] == "[redacted]"
    assert audited["steps"][1]["value"] == "[15 chars]"
    assert audited["steps"][2]["value"] == "Enter"
    shown = for_approver(steps)  # what an approver sees
    assert shown["steps"][0]["value"] == "[redacted]" and shown["steps"][1]["value"] == "ann@example.org"


CODE = "print('harmless')\n" + "#" * 600 + "\nprint('the part that matters')\nkey=__payload_in_token_shape__\n"


def guarded_tools(mcp: FastMCP, settings: McpSettings) -> None:
    """A CRITICAL tool to approve, and a tool whose error message echoes its argument."""

    @mcp.tool(name="execute_python")
    def execute_python(code: str) -> str:
        """Never runs in these tests."""
        return code

    @mcp.tool(name="read_file")
    def read_file(path: str) -> str:
        """Fails with the argument in the message, as many real refusals do."""
        raise ToolError(f"path {path!r} is outside the allowed roots")


async def test_approver_sees_the_whole_call_and_audit_details_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)
    mcp, layer = build_server(settings, [guarded_tools])
    async with Client(mcp) as client:
        with pytest.raises(ToolError) as err:
            await client.call_tool("execute_python", {"code": CODE})
        with pytest.raises(ToolError):
            await client.call_tool("read_file", {"path": "--token=abcdefghijklmnop"})
    request_id = json.loads(str(err.value))["request_id"]
    stored = layer.approvals.get(request_id)
    assert stored is not None and json.loads(stored.args)["code"] == CODE
    monkeypatch.setenv("SECURITY_DB_PATH", str(settings.security_db_path()))
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    assert approvals_cli.main(["--list"]) == 0
    assert f"--show {request_id}" in capsys.readouterr().out.replace("\n", "")
    assert approvals_cli.main(["--show", request_id]) == 0
    shown = capsys.readouterr().out
    assert "the part that matters" in shown and "key=__payload_in_token_shape__" in shown
    conn = sqlite3.connect(settings.security_db_path())
    details = [row[0] for row in conn.execute("SELECT detail FROM audit_log WHERE tool = 'read_file'")]
    conn.close()
    assert len(details) == 1 and "abcdefghijklmnop" not in details[0] and "[redacted]" in details[0]


async def test_a_file_name_that_is_not_utf8_does_not_break_listing(client: Client, tree: dict[str, Path]) -> None:
    folder = os.fsencode(tree["allowed"] / "odd")
    os.mkdir(folder)
    with open(folder + b"/bad\xffname.txt", "w") as handle:
        handle.write("needle\n")
    listed = (await client.call_tool("list_files", {"path": "odd"})).data
    assert [entry["name"] for entry in listed["entries"]] == ["bad\ufffdname.txt"]
    found = (await client.call_tool("search_files", {"path": "odd", "content": "needle"})).data
    assert found["matches"] == [{"path": "bad\ufffdname.txt", "line": 1, "text": "needle"}]


@pytest.mark.parametrize("args", [["0101000030"], ["-u", "010100002030.00"], ["--", "0101"], ["-Id", "0101"]])
def test_date_operands_cannot_set_the_clock(args: list[str]) -> None:
    # Checked without running date: a regression must not set the clock of a machine that runs tests as root.
    with pytest.raises(ToolError, match="would set the clock"):
        execution.check_options("date", args)


async def test_date_still_formats_and_parses(client: Client) -> None:
    assert (await run(client, ["date", "-u", "-d", "2020-01-02", "+%F"]))["stdout"] == "2020-01-02\n"
    assert (await run(client, ["date", "--date", "@0", "-u", "+%Y"]))["stdout"] == "1970\n"
    assert (await run(client, ["date", "-ud", "@0", "+%Y"]))["stdout"] == "1970\n"
