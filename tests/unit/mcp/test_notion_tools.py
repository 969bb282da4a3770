"""Notion tools against a local server that speaks the Notion API (pages, block children, search)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import notion
from services.mcp_server.tools.browser import BrowserHolder
from services.mcp_server.tools.notion import markdown_blocks
from tests.support.fake_notion import FakeNotionServer
from tests.support.procs import free_port

module_loop = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = Path("/usr/bin/chromium")
ARTICLE = b"""<html><head><title>Tide tables</title></head><body><nav>menu</nav>
<article><h1>High water</h1><p>The tide turns at noon.</p><p>Boats leave at one.</p></article></body></html>"""


class Article(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(ARTICLE)))
        self.end_headers()
        self.wfile.write(ARTICLE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeNotionServer]:
    server = FakeNotionServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def article() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Article)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tides"
    server.shutdown()
    server.server_close()


def settings_for(fake: FakeNotionServer, **env: object) -> McpSettings:
    values: dict[str, object] = {"NOTION_API_KEY": fake.notion.token, "NOTION_API_URL": fake.url,
                                 "NOTION_PARENT_PAGE_ID": fake.notion.root_id,
                                 "CHROMIUM_PATH": CHROMIUM, "WEB_TIMEOUT": 10}
    values.update(env)
    return McpSettings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(fake: FakeNotionServer, article: str) -> AsyncIterator[Client]:
    # the article's server only, on its port (WEB_ALLOWED_HOSTS names host and port)
    settings = settings_for(fake, WEB_ALLOWED_HOSTS=urlsplit(article).netloc)
    holder = BrowserHolder(settings)
    mcp = FastMCP("notion-test")
    notion.register(mcp, settings, browser=holder)
    async with Client(mcp) as connected:
        yield connected
    await holder.close()


async def call_with(settings: McpSettings, tool: str, args: dict) -> dict:
    mcp = FastMCP("notion-variant")
    notion.register(mcp, settings)
    async with Client(mcp) as connected:
        return (await connected.call_tool(tool, args)).structured_content


def test_markdown_becomes_notion_blocks() -> None:
    text = ("# Title\n## Part\n#### Deep\nfirst line\nsame paragraph\n\n- bullet\n* star\n1. one\n2) two\n"
            "- [x] done\n> quoted\n---\n```python\nprint(1)\n\n```\nSee [docs](https://example.com/d) now.")
    blocks = markdown_blocks(text)
    kinds = [b["type"] for b in blocks]
    assert kinds == ["heading_1", "heading_2", "heading_3", "paragraph", "bulleted_list_item", "bulleted_list_item",
                     "numbered_list_item", "numbered_list_item", "to_do", "quote", "divider", "code", "paragraph"]
    assert blocks[3]["paragraph"]["rich_text"][0]["text"]["content"] == "first line\nsame paragraph"
    assert blocks[8]["to_do"]["checked"] is True
    assert blocks[11]["code"] == {"rich_text": [{"type": "text", "text": {"content": "print(1)\n", "link": None}}],
                                  "language": "python"}
    linked = blocks[12]["paragraph"]["rich_text"]
    assert [item["text"]["content"] for item in linked] == ["See ", "docs", " now."]
    assert linked[1]["text"]["link"] == {"url": "https://example.com/d"}


@module_loop
async def test_create_page_stores_title_and_blocks(client: Client, fake: FakeNotionServer) -> None:
    result = (await client.call_tool("notion_create_page", {
        "title": "Meeting notes", "content": "# Agenda\n- budget\n- hiring\n\nWe agreed."})).structured_content
    assert result["title"] == "Meeting notes" and result["blocks"] == 4
    assert fake.notion.title_of(result["id"]) == "Meeting notes"
    assert fake.notion.pages[result["id"]]["parent"]["page_id"] == fake.notion.root_id
    assert fake.notion.text_of(result["id"]) == [("heading_1", "Agenda"), ("bulleted_list_item", "budget"),
                                                 ("bulleted_list_item", "hiring"), ("paragraph", "We agreed.")]
    assert result["url"].endswith(result["id"].replace("-", ""))


@module_loop
async def test_long_content_is_split_within_notion_limits(client: Client, fake: FakeNotionServer) -> None:
    lines = "\n".join(f"- item {n}" for n in range(250))
    content = lines + "\n\n" + "x" * 4500
    fake.notion.requests.clear()
    result = (await client.call_tool("notion_create_page", {"title": "Long", "content": content})).structured_content
    stored = fake.notion.text_of(result["id"])
    assert len(stored) == 251 and stored[249] == ("bulleted_list_item", "item 249")
    assert stored[250] == ("paragraph", "x" * 4500)
    assert [(method, path.split("/")[2]) for method, path, _ in fake.notion.requests] == [
        ("POST", "pages"), ("PATCH", "blocks"), ("PATCH", "blocks")]
    assert [len(body["children"]) for _, _, body in fake.notion.requests] == [100, 100, 51]


@module_loop
async def test_search_finds_created_pages_by_title(client: Client, fake: FakeNotionServer) -> None:
    created = (await client.call_tool("notion_create_page", {"title": "Quarterly zebra report"})).structured_content
    found = (await client.call_tool("notion_search", {"query": "ZEBRA"})).structured_content
    assert [(page["id"], page["title"]) for page in found["results"]] == [(created["id"], "Quarterly zebra report")]
    assert fake.notion.requests[-1][2]["filter"] == {"property": "object", "value": "page"}
    assert (await client.call_tool("notion_search", {"query": "no such page"})).structured_content["results"] == []


@module_loop
async def test_notion_errors_become_tool_errors(client: Client, fake: FakeNotionServer) -> None:
    with pytest.raises(ToolError, match="404 object_not_found.*Could not find page"):
        await client.call_tool("notion_create_page", {"title": "Lost", "parent_page_id": "0" * 32})
    with pytest.raises(ToolError, match="400 validation_error.*body failed validation"):
        await client.call_tool("notion_create_page", {"title": "Bad", "parent_page_id": "not-an-id"})
    with pytest.raises(ToolError, match="401 unauthorized.*API token is invalid"):
        await call_with(settings_for(fake, NOTION_API_KEY="wrong"), "notion_search", {"query": "x"})


@module_loop
async def test_missing_key_parent_or_service_are_explained(fake: FakeNotionServer) -> None:
    with pytest.raises(ToolError, match="NOTION_API_KEY is not set"):
        await call_with(settings_for(fake, NOTION_API_KEY=None), "notion_search", {})
    with pytest.raises(ToolError, match="NOTION_PARENT_PAGE_ID"):
        await call_with(settings_for(fake, NOTION_PARENT_PAGE_ID=None), "notion_create_page", {"title": "x"})
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ToolError, match=f"cannot reach Notion at {down}"):
        await call_with(settings_for(fake, NOTION_API_URL=down), "notion_search", {})


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed")
@module_loop
async def test_web_to_notion_saves_text_with_source_link(client: Client, fake: FakeNotionServer,
                                                         article: str) -> None:
    result = (await client.call_tool("web_to_notion", {"url": article, "selector": "article"})).structured_content
    assert result["title"] == "Tide tables" and result["source"] == article
    blocks = fake.notion.blocks[result["id"]]
    assert blocks[0]["paragraph"]["rich_text"][1]["text"]["link"] == {"url": article}
    assert [text for _, text in fake.notion.text_of(result["id"])[2:]] == [
        "High water", "The tide turns at noon.", "Boats leave at one."]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed")
@module_loop
async def test_web_to_notion_is_ssrf_guarded(client: Client, fake: FakeNotionServer) -> None:
    fake.notion.requests.clear()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://10.0.0.8/"):
        with pytest.raises(ToolError, match="refused by the SSRF guard"):
            await client.call_tool("web_to_notion", {"url": url})
    assert fake.notion.requests == []
