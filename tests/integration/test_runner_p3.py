"""`ai-suite up p3` natively: every MCP tool over real streamable HTTP with the official `mcp` client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from services.mcp_server.catalog import TOOLS
from services.stack.runner import Stack
from tests.support.fake_notion import FakeNotionServer
from tests.support.mcp_http import ai_suite, call, session
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

PAGE = (b"<html><head><title>Suite page</title></head><body><h1>Orbit</h1><p>Phobos orbits Mars.</p>"
        b"<form><input id='q' name='q'><button id='go' type='button' "
        b"onclick=\"document.getElementById('out').textContent='hello '+document.getElementById('q').value\">"
        b"Go</button></form><div id='out'></div></body></html>")


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def p3(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, site: str) -> Iterator[dict[str, Any]]:
    data, work = tmp_path_factory.mktemp("p3-data"), tmp_path_factory.mktemp("p3-work")
    (data / "documents").mkdir()
    (data / "documents" / "phobos.md").write_text("# Phobos\nPhobos is the larger moon of Mars.\n")
    notion = FakeNotionServer().start()
    ports = {name: str(free_port()) for name in ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT",
                                                 "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT", "MCP_PORT")}
    env = {**ports, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir), "LOG_JSON": "false",
           "N_THREADS": "1", "EMBEDDING_THREADS": "1", "RAG_LLM_TIMEOUT": "60", "MCP_ALLOWED_ROOTS": str(work),
           "WEB_ALLOWED_HOSTS": urlsplit(site).netloc, "NOTION_API_URL": notion.url,
           "NOTION_API_KEY": notion.notion.token, "NOTION_PARENT_PAGE_ID": notion.notion.root_id}
    stack = Stack("p3", env=env)
    stack.up()
    try:
        added = ai_suite(env, "mcp", "user", "add", "tester", "--role", "admin")
        admin_key = added.stdout.strip().splitlines()[-1]
        owner_key = (data / "security" / "owner.key").read_text().strip()
        yield {"env": env, "stack": stack, "work": work, "notion": notion, "admin": admin_key, "owner": owner_key,
               "url": f"http://127.0.0.1:{env['MCP_PORT']}"}
    finally:
        stack.down()
        notion.stop()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


async def test_every_tool_answers_over_streamable_http(p3: dict[str, Any], site: str) -> None:
    work: Path = p3["work"]
    repo = work / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Tester")
    called: set[str] = set()
    async with session(p3["url"], p3["admin"]) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed == set(TOOLS)

        async def run(tool: str, args: dict[str, Any]) -> Any:
            called.add(tool)
            return await call(client, tool, args)

        await run("write_file", {"path": "notes/plan.md", "content": "launch at dawn", "create_parents": True,
                                 "working_dir": str(work)})
        assert (work / "notes" / "plan.md").read_text() == "launch at dawn"
        assert "launch at dawn" in json.dumps(await run("read_file", {"path": str(work / "notes" / "plan.md")}))
        await run("create_directory", {"path": str(work / "made")})
        assert (work / "made").is_dir()
        assert "plan.md" in json.dumps(await run("list_files", {"path": "notes", "working_dir": str(work)}))
        assert "plan.md" in json.dumps(await run("search_files", {"pattern": "*.md", "content": "dawn",
                                                                  "working_dir": str(work)}))
        assert "python" in json.dumps(await run("get_system_info", {"working_dir": str(work)})).lower()
        assert "hi there" in json.dumps(await run("run_command", {"command": "echo hi there",
                                                                  "working_dir": str(work)}))
        assert "42" in json.dumps(await run("execute_python", {"code": "print(6 * 7)"}))

        (repo / "a.txt").write_text("one\n")
        assert "a.txt" in json.dumps(await run("git_status", {"working_dir": str(repo)}))
        await run("git_add", {"file_paths": ["a.txt"], "working_dir": str(repo)})
        assert "one" in json.dumps(await run("git_diff", {"staged": True, "working_dir": str(repo)}))
        await run("git_commit", {"message": "Add a", "working_dir": str(repo)})
        assert "Add a" in git(repo, "log", "--format=%s")
        assert "Add a" in json.dumps(await run("git_log", {"max_count": 5, "working_dir": str(repo)}))

        assert "Phobos orbits Mars" in json.dumps(await run("web_scrape", {"url": site}))
        shot = await client.call_tool("web_screenshot", {"url": site})
        called.add("web_screenshot")
        assert not shot.is_error and any(getattr(item, "type", "") == "image" for item in shot.content)
        assert "Orbit" in json.dumps(await run("web_analyze_ui", {"url": site}))
        steps = [{"action": "fill", "selector": "#q", "value": "suite"}, {"action": "click", "selector": "#go"},
                 {"action": "extract", "selector": "#out"}]
        assert "hello suite" in json.dumps(await run("web_automate", {"start_url": site, "steps": steps}))

        await run("notion_create_page", {"title": "Launch plan", "content": "# Plan\n- dawn"})
        assert "Launch plan" in json.dumps(await run("notion_search", {"query": "Launch"}))
        await run("web_to_notion", {"url": site, "title": "Saved orbit page"})
        assert "Saved orbit page" in json.dumps(await run("notion_search", {"query": "Saved"}))

        await run("rag_index", {"paths": ["phobos.md"], "collection": "moons"})
        answer = await run("rag_query", {"question": "Which moon of Mars is larger?", "collection": "moons"})
        assert "phobos.md" in json.dumps(answer)
    assert called == set(TOOLS)


async def test_owner_needs_approval_and_runs_once(p3: dict[str, Any]) -> None:
    args = {"command": "echo approved-run", "working_dir": str(p3["work"])}
    async with session(p3["url"], p3["owner"]) as client:
        first = await client.call_tool("run_command", args)
        assert first.is_error
        pending = json.loads(first.content[0].text)
        assert pending["approval_required"] is True and pending["status"] == "pending"
        request_id = pending["request_id"]
        status = httpx.get(f"{p3['url']}/api/approvals/{request_id}/status", trust_env=False,
                           headers={"Authorization": f"Bearer {p3['owner']}"}, timeout=10)
        assert status.status_code == 200 and status.json()["status"] == "pending"
        approved = subprocess.run([sys.executable, "-m", "services.mcp_server.approvals_cli", "--approve", request_id],
                                  env={**os.environ, **p3["stack"].services["mcp-server"].env},
                                  capture_output=True, text=True, timeout=60)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        assert "approved-run" in json.dumps(await call(client, "run_command", args))
        replay = await client.call_tool("run_command", args)
        assert replay.is_error and json.loads(replay.content[0].text)["request_id"] != request_id
    verified = ai_suite(p3["env"], "audit", "verify")
    assert verified.returncode == 0


def test_ai_waits_for_approval_then_reruns_the_call_once(p3: dict[str, Any]) -> None:
    env = {**os.environ, "MCP_URL": f"{p3['url']}/mcp", "MCP_API_KEY": p3["owner"], "NO_COLOR": "1"}
    args = json.dumps({"command": "echo cli-waited", "working_dir": str(p3["work"])})
    waiting = subprocess.Popen([sys.executable, "-m", "services.cli", "--mcp", "run_command", "--mcp-args", args],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        headers = {"Authorization": f"Bearer {p3['owner']}"}
        request_id = None
        deadline = time.monotonic() + 60
        while request_id is None and time.monotonic() < deadline:
            listed = httpx.get(f"{p3['url']}/api/approvals", headers=headers, timeout=10, trust_env=False).json()
            request_id = next((r["request_id"] for r in listed["requests"]
                               if r["status"] == "pending" and "cli-waited" in json.dumps(r)), None)
            time.sleep(0.2)
        assert request_id, "the CLI's call never showed up as a pending request"
        approved = subprocess.run([sys.executable, "-m", "services.mcp_server.approvals_cli", "--approve", request_id],
                                  env={**os.environ, **p3["stack"].services["mcp-server"].env},
                                  capture_output=True, text=True, timeout=60)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, out + err
    assert "cli-waited" in out and request_id in err
    final = httpx.get(f"{p3['url']}/api/approvals/{request_id}/status", headers=headers, timeout=10, trust_env=False)
    assert final.json()["status"] == "used"
