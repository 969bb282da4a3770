"""Notion tools: create a page from markdown-ish text, search pages, and save a scraped web page to Notion."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from notion_client import AsyncClient, RetryOptions
from notion_client.errors import APIResponseError, RequestTimeoutError, UnknownHTTPResponseError
from pydantic import Field

from services.mcp_server.catalog import tool
from services.mcp_server.tools.browser import BrowserHolder
from services.mcp_server.tools.web import open_page, scrape_page

if TYPE_CHECKING:
    from services.mcp_server.settings import McpSettings

log = logging.getLogger("services.mcp_server.notion")

NOTION_TIMEOUT_S = 30
MAX_TEXT = 2000  # Notion's limit per rich text object
MAX_CHILDREN = 100  # Notion's limit of blocks per request
MAX_CONTENT = 100_000
LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
NUMBERED = re.compile(r"^\d+[.)]\s+")
LANGUAGES = {"bash", "c", "c++", "css", "diff", "go", "html", "java", "javascript", "json", "markdown", "python",
             "rust", "shell", "sql", "typescript", "yaml"}

PageId = Annotated[str | None, Field(description="Parent page id (default NOTION_PARENT_PAGE_ID).")]


def rich_text(text: str) -> list[dict[str, Any]]:
    """Notion rich text for `text`, with [label](url) links, in pieces of at most 2000 characters."""
    items: list[dict[str, Any]] = []
    position = 0
    for match in LINK.finditer(text):
        items += _plain(text[position:match.start()])
        items += _plain(match.group(1), match.group(2))
        position = match.end()
    return items + _plain(text[position:])


def _plain(text: str, url: str | None = None) -> list[dict[str, Any]]:
    link = {"url": url} if url else None
    return [{"type": "text", "text": {"content": text[i:i + MAX_TEXT], "link": link}}
            for i in range(0, len(text), MAX_TEXT)]


def _block(kind: str, text: str, **extra: Any) -> list[dict[str, Any]]:
    """One block, or several when the text is longer than one block's 100 rich text items should hold."""
    pieces = [text[i:i + MAX_TEXT * 50] for i in range(0, len(text), MAX_TEXT * 50)] or [""]
    return [{"object": "block", "type": kind, kind: {"rich_text": rich_text(piece), **extra}} for piece in pieces]


def _line_block(line: str) -> list[dict[str, Any]] | None:
    """The block a single markdown line stands for, or None for paragraph text."""
    stripped = line.strip()
    heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
    if heading:
        return _block(f"heading_{min(len(heading.group(1)), 3)}", heading.group(2))
    todo = re.match(r"^[-*+]\s+\[([ xX])\]\s+(.*)$", stripped)
    if todo:
        return _block("to_do", todo.group(2), checked=todo.group(1) != " ")
    if re.match(r"^[-*+]\s+", stripped):
        return _block("bulleted_list_item", stripped[2:].strip())
    if NUMBERED.match(stripped):
        return _block("numbered_list_item", NUMBERED.sub("", stripped, count=1))
    if stripped.startswith(">"):
        return _block("quote", stripped[1:].strip())
    if stripped in ("---", "***", "___"):
        return [{"object": "block", "type": "divider", "divider": {}}]
    return None


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """Blocks for markdown-ish text: headings, bullets, numbered and to-do items, quotes, code, dividers."""
    blocks: list[dict[str, Any]] = []
    paragraph: list[str] = []
    code: list[str] | None = None
    language = "plain text"

    def flush() -> None:
        if paragraph:
            blocks.extend(_block("paragraph", "\n".join(paragraph)))
            paragraph.clear()

    for line in text.splitlines():
        if code is not None:
            if line.strip().startswith("```"):
                blocks.extend(_block("code", "\n".join(code), language=language))
                code = None
            else:
                code.append(line)
        elif line.strip().startswith("```"):
            flush()
            tag = line.strip()[3:].strip().lower()
            language, code = (tag if tag in LANGUAGES else "plain text"), []
        elif not line.strip():
            flush()
        elif (block := _line_block(line)) is not None:
            flush()
            blocks.extend(block)
        else:
            paragraph.append(line.strip())
    if code is not None:
        blocks.extend(_block("code", "\n".join(code), language=language))
    flush()
    return blocks


def page_title(page: dict[str, Any]) -> str:
    """The plain title of a page object, whatever its title property is called."""
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return "".join(item.get("plain_text") or item.get("text", {}).get("content", "")
                           for item in prop.get("title", []))
    return ""


def _require_key(settings: McpSettings) -> None:
    if not settings.notion_api_key:
        raise ToolError("NOTION_API_KEY is not set: create an internal integration at "
                        "https://www.notion.so/my-integrations, share a page with it, and set the key")


@asynccontextmanager
async def notion_api(settings: McpSettings) -> AsyncIterator[AsyncClient]:
    """A Notion client for one call, with Notion's errors turned into ToolErrors."""
    _require_key(settings)
    # our own logger: notion-client's default adds a new console handler for every client
    client = AsyncClient(auth=settings.notion_api_key, base_url=settings.notion_api_url.rstrip("/"),
                         timeout_ms=NOTION_TIMEOUT_S * 1000, logger=log,
                         retry=RetryOptions(max_retries=2, max_retry_delay_ms=5000))
    try:
        yield client
    except APIResponseError as exc:
        code = getattr(exc.code, "value", exc.code)
        raise ToolError(f"Notion refused the request ({exc.status} {code}): {exc}") from exc
    except UnknownHTTPResponseError as exc:
        raise ToolError(f"Notion answered HTTP {exc.status}: {exc.body[:300]}") from exc
    except RequestTimeoutError as exc:
        raise ToolError(f"Notion did not answer within {NOTION_TIMEOUT_S}s") from exc
    except httpx.HTTPError as exc:
        raise ToolError(f"cannot reach Notion at {settings.notion_api_url}: {exc}") from exc
    finally:
        await client.aclose()


def _parent(settings: McpSettings, parent_page_id: str | None) -> str:
    parent = (parent_page_id or settings.notion_parent_page_id or "").strip()
    if not parent:
        raise ToolError("no parent page: pass parent_page_id or set NOTION_PARENT_PAGE_ID")
    return parent


async def create_page(settings: McpSettings, title: str, blocks: list[dict[str, Any]],
                      parent_page_id: str | None) -> dict[str, Any]:
    """Create the page with its first 100 blocks, then append the rest 100 at a time."""
    parent = _parent(settings, parent_page_id)
    async with notion_api(settings) as notion:
        page = await notion.pages.create(parent={"page_id": parent},
                                         properties={"title": {"title": rich_text(title)}},
                                         children=blocks[:MAX_CHILDREN])
        for start in range(MAX_CHILDREN, len(blocks), MAX_CHILDREN):
            await notion.blocks.children.append(page["id"], children=blocks[start:start + MAX_CHILDREN])
    return {"id": page["id"], "url": page.get("url"), "title": title, "blocks": len(blocks)}


def register(mcp: FastMCP, settings: McpSettings, browser: BrowserHolder | None = None) -> None:
    """Add the Notion tools; web_to_notion scrapes with `browser` (pass the server's holder)."""
    holder = browser or BrowserHolder(settings)

    @tool(mcp, "notion_create_page")
    async def notion_create_page(
        title: Annotated[str, Field(min_length=1, max_length=2000, description="Page title.")],
        content: Annotated[str, Field(max_length=MAX_CONTENT, description="Markdown-ish body: # headings, "
                                      "- bullets, 1. items, > quotes, ``` code, paragraphs.")] = "",
        parent_page_id: PageId = None,
    ) -> dict[str, Any]:
        """Create a Notion page under a parent page, converting markdown-ish content to blocks."""
        return await create_page(settings, title, markdown_blocks(content), parent_page_id)

    @tool(mcp, "notion_search")
    async def notion_search(
        query: Annotated[str, Field(max_length=500, description="Words in the page title; empty lists all.")] = "",
        limit: Annotated[int, Field(ge=1, le=100, description="Most pages returned.")] = 10,
    ) -> dict[str, Any]:
        """Search the Notion pages shared with the integration, by title."""
        async with notion_api(settings) as notion:
            found = await notion.search(query=query, filter={"property": "object", "value": "page"},
                                        sort={"direction": "descending", "timestamp": "last_edited_time"},
                                        page_size=limit)
        pages = [{"id": page["id"], "title": page_title(page), "url": page.get("url"),
                  "last_edited_time": page.get("last_edited_time")} for page in found.get("results", [])]
        return {"query": query, "results": pages, "has_more": bool(found.get("has_more"))}

    @tool(mcp, "web_to_notion")
    async def web_to_notion(
        url: Annotated[str, Field(min_length=1, max_length=8192, description="http(s) page to save.")],
        title: Annotated[str | None, Field(max_length=2000, description="Page title (default: the web "
                                                                         "page's title).")] = None,
        parent_page_id: PageId = None,
        selector: Annotated[str | None, Field(description="CSS selector of the part to keep.")] = None,
        max_chars: Annotated[int, Field(ge=100, le=MAX_CONTENT, description="Most text characters kept.")] = 20000,
    ) -> dict[str, Any]:
        """Scrape a web page (SSRF-guarded) and save its text to a new Notion page with a source link."""
        # fail before loading the page when Notion could not take it anyway
        _require_key(settings)
        _parent(settings, parent_page_id)
        async with open_page(holder, url) as session:
            scraped = await scrape_page(session, url, selector, max_chars)
        name = title or scraped["title"] or scraped["final_url"]
        source = [{"object": "block", "type": "paragraph", "paragraph": {"rich_text": [
            {"type": "text", "text": {"content": "Source: ", "link": None}},
            {"type": "text", "text": {"content": scraped["final_url"][:MAX_TEXT],
                                      "link": {"url": scraped["final_url"]}}}]}},
            {"object": "block", "type": "divider", "divider": {}}]
        blocks = source + [block for part in scraped["text"].split("\n") if part.strip()
                           for block in _block("paragraph", part.strip())]
        created = await create_page(settings, name[:2000], blocks, parent_page_id)
        return {**created, "source": scraped["final_url"], "chars": len(scraped["text"]),
                "truncated": scraped["truncated"]}
