"""Web tools in headless Chromium against pages served on loopback; the SSRF guard holds for every request."""

from __future__ import annotations

import base64
import json
import struct
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
from services.mcp_server.tools import web
from services.mcp_server.tools.browser import BrowserHolder

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed")

PAGES = {
    "/": """<html lang="en"><head><title>Home page</title></head>
<body style="font-family: serif; color: rgb(10, 20, 30)">
<h1>Welcome</h1><h2>Tools</h2><p id="intro">Local AI Suite reads pages.</p>
<div id="news"><p>First story</p><a href="/a">Story A</a></div><a href="/b">Other</a>
<img src="/pic.png"><img src="/pic.png" alt="described">
<form id="search" action="/find" method="post"><label for="q">Query</label><input id="q" name="q" required>
<button type="submit">Search</button></form><button>Plain</button>
<div style="height: 3000px">tall</div></body></html>""",
    "/form": """<html><head><title>Form</title></head><body><input id="name"><button id="go"
onclick="document.getElementById('out').innerText = 'Hello, ' + document.getElementById('name').value">Go</button>
<p id="out"></p><a id="away" href="/to/CANARY/clicked">away</a></body></html>""",
    "/leaky": """<html><head><title>Leaky</title></head><body><p>visible</p>
<img src="CANARY/img.png"><iframe src="CANARY/frame"></iframe><script>fetch("CANARY/fetch").catch(() => {});
</script><iframe src="/to/CANARY/redirected-frame"></iframe></body></html>""",
    "/long": "<html><head><title>Long</title></head><body><p>" + "word " * 5000 + "</p></body></html>",
}


class Pages(BaseHTTPRequestHandler):
    canary = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to/").replace("CANARY", self.canary))
            self.end_headers()
            return
        body = PAGES.get(self.path, "<html><body>missing</body></html>").replace("CANARY", self.canary).encode()
        self.send_response(200 if self.path in PAGES else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Canary(BaseHTTPRequestHandler):
    """A server on 127.0.0.2, which the guard must refuse: any hit is a leak."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler], host: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[str, list[str]]]:
    canary = _serve(Canary, "127.0.0.2")
    Pages.canary = f"http://127.0.0.2:{canary.server_address[1]}"
    pages = _serve(Pages, "127.0.0.1")
    yield f"http://127.0.0.1:{pages.server_address[1]}", Canary.hits
    for server in (pages, canary):
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web-root")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(root: Path, sites: tuple[str, list[str]]) -> AsyncIterator[Client]:
    page_server = urlsplit(sites[0]).netloc  # the pages' host and port; 127.0.0.2 (the canary) stays refused
    settings = McpSettings(_env_file=None, WEB_ALLOWED_HOSTS=page_server, WEB_TIMEOUT=10,  # type: ignore[call-arg]
                           MCP_ALLOWED_ROOTS=str(root), CHROMIUM_PATH=CHROMIUM)
    holder = BrowserHolder(settings)
    mcp = FastMCP("web-test")
    web.register(mcp, settings, browser=holder)
    async with Client(mcp) as connected:
        yield connected
    await holder.close()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_chromium
async def test_scrape_reads_title_text_and_links(client: Client, sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    result = (await client.call_tool("web_scrape", {"url": f"{base}/"})).structured_content
    assert result["title"] == "Home page"
    assert "Local AI Suite reads pages." in result["text"]
    assert {"text": "Story A", "href": f"{base}/a"} in result["links"]
    only = (await client.call_tool("web_scrape", {"url": f"{base}/", "selector": "#news"})).structured_content
    assert "First story" in only["text"] and "Welcome" not in only["text"]
    assert [link["href"] for link in only["links"]] == [f"{base}/a"]


@needs_chromium
async def test_scrape_caps_text_and_reports_missing_selector(client: Client, sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    result = (await client.call_tool("web_scrape", {"url": f"{base}/long", "max_chars": 500})).structured_content
    assert len(result["text"]) == 500 and result["truncated"] and result["chars"] > 20000
    with pytest.raises(ToolError, match="no element matches"):
        await client.call_tool("web_scrape", {"url": f"{base}/", "selector": "#absent"})


@needs_chromium
async def test_screenshot_returns_png_and_saves_under_the_root(client: Client, sites: tuple[str, list[str]],
                                                               root: Path) -> None:
    base, _ = sites
    shot = await client.call_tool("web_screenshot", {"url": f"{base}/"})
    image = shot.content[0]
    assert image.type == "image" and image.mime_type == "image/png"
    assert _png_size(base64.b64decode(image.data)) == (1280, 800)
    full = await client.call_tool("web_screenshot", {"url": f"{base}/", "full_page": True,
                                                     "save_path": "shots/home.png", "working_dir": str(root)})
    width, height = _png_size(base64.b64decode(full.content[0].data))
    assert width == 1280 and height > 3000
    assert _png_size((root / "shots" / "home.png").read_bytes()) == (width, height)
    assert "saved to" in full.content[1].text
    with pytest.raises(ToolError, match="outside the allowed roots"):
        await client.call_tool("web_screenshot", {"url": f"{base}/", "save_path": "/tmp/escape.png"})


@needs_chromium
async def test_analyze_ui_describes_structure(client: Client, sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    report = (await client.call_tool("web_analyze_ui", {"url": f"{base}/"})).structured_content
    assert report["headings"] == [{"level": 1, "text": "Welcome"}, {"level": 2, "text": "Tools"}]
    assert report["forms"][0]["id"] == "search" and report["forms"][0]["method"] == "post"
    assert report["forms"][0]["fields"] == [{"tag": "input", "type": "text", "name": "q", "required": True,
                                             "label": "Query"}]
    assert report["buttons"] == {"count": 2, "labels": ["Search", "Plain"]}
    assert report["links"]["count"] == 2
    assert report["images"]["count"] == 2 and report["images"]["without_alt"] == [f"{base}/pic.png"]
    assert report["colors"][0]["value"] == "rgb(10, 20, 30)"
    assert "serif" in report["fonts"][0]["value"]
    assert report["viewport"]["width"] == 1280 and report["document_size"]["height"] > 3000


@needs_chromium
async def test_automate_fills_clicks_extracts_and_screenshots(client: Client, sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    steps = [{"action": "fill", "selector": "#name", "value": "Ada"}, {"action": "click", "selector": "#go"},
             {"action": "wait_for", "selector": "#out:has-text('Hello')"},
             {"action": "extract", "selector": "#out"}, {"action": "screenshot"}]
    result = await client.call_tool("web_automate", {"start_url": f"{base}/form", "steps": steps})
    summary = json.loads(result.content[0].text)
    assert summary["steps"][3]["text"] == "Hello, Ada"
    assert summary["title"] == "Form"
    assert result.content[1].type == "image"


@needs_chromium
async def test_automate_names_the_failing_step(client: Client, sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    with pytest.raises(ToolError, match=r"step 2 \(fill"):
        await client.call_tool("web_automate", {"steps": [{"action": "goto", "url": f"{base}/form"},
                                                          {"action": "fill", "value": "x"}]})


@needs_chromium
async def test_a_step_that_never_succeeds_times_out(sites: tuple[str, list[str]]) -> None:
    base, _ = sites
    settings = McpSettings(_env_file=None, WEB_ALLOWED_HOSTS=urlsplit(base).netloc,  # type: ignore[call-arg]
                           WEB_TIMEOUT=1)
    holder = BrowserHolder(settings)
    mcp = FastMCP("impatient")
    web.register(mcp, settings, browser=holder)
    try:
        async with Client(mcp) as impatient:
            with pytest.raises(ToolError, match=r"timed out after 1s step 1 \(click\)"):
                await impatient.call_tool("web_automate", {"start_url": f"{base}/form",
                                                           "steps": [{"action": "click", "selector": "#never"}]})
    finally:
        await holder.close()


@needs_chromium
@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://2852039166/",
                                 "http://192.168.0.1/", "http://127.0.0.2/", "file:///etc/passwd"])
async def test_tools_refuse_private_targets(client: Client, url: str) -> None:
    for tool in ("web_scrape", "web_screenshot", "web_analyze_ui"):
        with pytest.raises(ToolError, match="refused by the SSRF guard|only http and https"):
            await client.call_tool(tool, {"url": url})
    with pytest.raises(ToolError, match="refused by the SSRF guard|only http and https"):
        await client.call_tool("web_automate", {"steps": [{"action": "goto", "url": url}]})


@needs_chromium
async def test_redirects_subresources_and_clicks_cannot_reach_refused_hosts(
        client: Client, sites: tuple[str, list[str]]) -> None:
    base, hits = sites
    with pytest.raises(ToolError, match="navigation refused.*metadata"):
        await client.call_tool("web_scrape", {"url": f"{base}/to/http://169.254.169.254/latest/"})
    with pytest.raises(ToolError, match="navigation refused"):
        await client.call_tool("web_scrape", {"url": f"{base}/to/CANARY/redirected"})
    page = (await client.call_tool("web_scrape", {"url": f"{base}/leaky"})).structured_content
    assert page["title"] == "Leaky"
    with pytest.raises(ToolError, match="navigation refused"):
        await client.call_tool("web_automate", {"start_url": f"{base}/form",
                                                "steps": [{"action": "click", "selector": "#away"}]})
    assert hits == []


async def test_missing_chromium_says_how_to_fix(tmp_path: Path) -> None:
    settings = McpSettings(_env_file=None, CHROMIUM_PATH=tmp_path / "no-chromium")  # type: ignore[call-arg]
    holder = BrowserHolder(settings)
    mcp = FastMCP("no-browser")
    web.register(mcp, settings, browser=holder)
    async with Client(mcp) as connected:
        with pytest.raises(ToolError, match="CHROMIUM_PATH.*apt-get install chromium"):
            await connected.call_tool("web_scrape", {"url": "http://93.184.216.34/"})
    await holder.close()
