"""A small Notion API server for tests: the endpoints the MCP tools use, with Notion's checks and error bodies.

It speaks `POST /v1/pages`, `PATCH /v1/blocks/{id}/children`, `GET /v1/blocks/{id}/children` and
`POST /v1/search` (API version 2025-09-03) on a real port, keeps pages in memory, and answers bad
requests the way Notion does: `{"object": "error", "status": 400, "code": "validation_error", ...}`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.fake_openai import ThreadedServer

VERSION = "2025-09-03"
TEXT_BLOCKS = {"paragraph", "heading_1", "heading_2", "heading_3", "bulleted_list_item", "numbered_list_item",
               "quote", "code", "to_do", "toggle", "callout"}
MAX_CHILDREN = 100
MAX_TEXT = 2000
MAX_RICH_TEXT = 100


class NotionError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(message: str) -> NotionError:
    return NotionError(400, "validation_error", f"body failed validation: {message}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def normal_id(raw: str) -> str | None:
    """A Notion id with or without dashes, as the dashed form; None when it is not one."""
    try:
        return str(uuid.UUID(raw.replace("-", "")))
    except ValueError:
        return None


def check_rich_text(items: Any, where: str) -> None:
    if not isinstance(items, list):
        raise invalid(f"{where} should be an array, instead was `{items!r}`.")
    if len(items) > MAX_RICH_TEXT:
        raise invalid(f"{where}.length should be ≤ `{MAX_RICH_TEXT}`, instead was `{len(items)}`.")
    for index, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, dict) or not isinstance(text.get("content"), str):
            raise invalid(f"{where}[{index}].text should be defined, instead was `undefined`.")
        if len(text["content"]) > MAX_TEXT:
            raise invalid(f"{where}[{index}].text.content.length should be ≤ `{MAX_TEXT}`, "
                          f"instead was `{len(text['content'])}`.")
        link = text.get("link")
        if link is not None and not str((link or {}).get("url", "")).startswith(("http://", "https://")):
            raise NotionError(400, "validation_error", f"Invalid URL for link: {link!r}")


def check_children(children: Any, where: str = "body.children") -> None:
    if not isinstance(children, list):
        raise invalid(f"{where} should be an array, instead was `{children!r}`.")
    if len(children) > MAX_CHILDREN:
        raise invalid(f"{where}.length should be ≤ `{MAX_CHILDREN}`, instead was `{len(children)}`.")
    for index, block in enumerate(children):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "divider":
            continue
        if kind not in TEXT_BLOCKS or not isinstance(block.get(kind), dict):
            raise invalid(f"{where}[{index}] should be a known block type with a `{kind}` object.")
        check_rich_text(block[kind].get("rich_text"), f"{where}[{index}].{kind}.rich_text")
        if kind == "code" and not isinstance(block[kind].get("language"), str):
            raise invalid(f"{where}[{index}].code.language should be defined, instead was `undefined`.")


def plain(items: list[dict]) -> str:
    return "".join(item["text"]["content"] for item in items)


@dataclass
class FakeNotion:
    """The workspace: pages by id, each with its child blocks; `requests` records what came in."""

    token: str = "secret_fake_token"
    pages: dict[str, dict] = field(default_factory=dict)
    blocks: dict[str, list[dict]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    root_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self._store_page(self.root_id, {"workspace": True}, "Workspace root")

    def _store_page(self, page_id: str, parent: dict, title: str) -> dict:
        now = _now()
        page = {"object": "page", "id": page_id, "created_time": now, "last_edited_time": now, "parent": parent,
                "archived": False, "in_trash": False, "public_url": None,
                "url": f"https://www.notion.so/{'-'.join(title.split())}-{page_id.replace('-', '')}",
                "properties": {"title": {"id": "title", "type": "title", "title": [
                    {"type": "text", "text": {"content": title, "link": None}, "plain_text": title, "href": None}]}}}
        self.pages[page_id] = page
        self.blocks[page_id] = []
        return page

    def title_of(self, page_id: str) -> str:
        return plain(self.pages[page_id]["properties"]["title"]["title"])

    def text_of(self, page_id: str) -> list[tuple[str, str]]:
        """(block type, plain text) of each child block of a page."""
        return [(b["type"], plain(b[b["type"]].get("rich_text", [])) if b["type"] != "divider" else "")
                for b in self.blocks[page_id]]

    def create_page(self, body: dict) -> dict:
        parent = body.get("parent")
        if not isinstance(parent, dict) or "page_id" not in parent:
            raise invalid("body.parent.page_id should be defined, instead was `undefined`.")
        parent_id = normal_id(str(parent["page_id"]))
        if parent_id is None:
            raise invalid(f"body.parent.page_id should be a valid uuid, instead was `{parent['page_id']!r}`.")
        if parent_id not in self.pages:
            raise NotionError(404, "object_not_found", f"Could not find page with ID: {parent_id}. Make sure the "
                              "relevant pages and databases are shared with your integration.")
        properties = body.get("properties")
        if not isinstance(properties, dict) or set(properties) != {"title"}:
            raise invalid("body.properties should hold only `title` for a page parent.")
        title = properties["title"].get("title") if isinstance(properties["title"], dict) else None
        check_rich_text(title, "body.properties.title.title")
        children = body.get("children", [])
        check_children(children)
        page = self._store_page(str(uuid.uuid4()), {"type": "page_id", "page_id": parent_id}, plain(title or []))
        self._append(page["id"], children)
        return page

    def _append(self, page_id: str, children: list[dict]) -> list[dict]:
        stored = [{"object": "block", "id": str(uuid.uuid4()), "has_children": False, **child} for child in children]
        self.blocks[page_id].extend(stored)
        self.pages[page_id]["last_edited_time"] = _now()
        return stored

    def append(self, block_id: str, body: dict) -> dict:
        page_id = normal_id(block_id)
        if page_id is None or page_id not in self.pages:
            raise NotionError(404, "object_not_found", f"Could not find block with ID: {block_id}.")
        check_children(body.get("children"))
        stored = self._append(page_id, body["children"])
        return {"object": "list", "results": stored, "next_cursor": None, "has_more": False, "type": "block",
                "block": {}}

    def search(self, body: dict) -> dict:
        flt = body.get("filter")
        if flt is not None and (flt.get("property") != "object" or flt.get("value") not in ("page", "data_source")):
            raise invalid('body.filter.value should be `"page"` or `"data_source"`, '
                          f"instead was `{flt.get('value')!r}`.")
        size = body.get("page_size", 100)
        if not isinstance(size, int) or not 1 <= size <= 100:
            raise invalid(f"body.page_size should be ≤ `100`, instead was `{size}`.")
        query = str(body.get("query") or "").lower()
        wanted = flt.get("value") if flt else None
        found = [page for page in self.pages.values() if query in self.title_of(page["id"]).lower()
                 and wanted in (None, "page")]
        found.sort(key=lambda page: page["last_edited_time"], reverse=True)
        return {"object": "list", "results": found[:size], "next_cursor": None, "has_more": len(found) > size,
                "type": "page_or_data_source", "page_or_data_source": {}}


def create_notion_app(notion: FakeNotion) -> FastAPI:
    app = FastAPI()

    async def handle(request: Request, action: Any) -> JSONResponse:
        body = await request.json() if await request.body() else {}
        notion.requests.append((request.method, request.url.path, body))
        try:
            if request.headers.get("authorization") != f"Bearer {notion.token}":
                raise NotionError(401, "unauthorized", "API token is invalid.")
            if request.headers.get("notion-version") is None:
                raise NotionError(400, "missing_version", "Notion-Version header failed validation: Notion-Version "
                                  "header should be defined, instead was `undefined`.")
            if request.headers["notion-version"] != VERSION:
                raise NotionError(400, "validation_error", f"this fake speaks Notion-Version {VERSION}, "
                                  f"not {request.headers['notion-version']}")
            if not isinstance(body, dict):
                raise invalid("body should be an object.")
            return JSONResponse(action(body))
        except NotionError as exc:
            return JSONResponse({"object": "error", "status": exc.status, "code": exc.code, "message": exc.message,
                                 "request_id": str(uuid.uuid4())}, status_code=exc.status)

    @app.post("/v1/pages")
    async def pages(request: Request) -> JSONResponse:
        return await handle(request, notion.create_page)

    @app.patch("/v1/blocks/{block_id}/children")
    async def append(block_id: str, request: Request) -> JSONResponse:
        return await handle(request, lambda body: notion.append(block_id, body))

    @app.post("/v1/search")
    async def search(request: Request) -> JSONResponse:
        return await handle(request, notion.search)

    return app


class FakeNotionServer(ThreadedServer):
    """The fake Notion API in a thread; `notion` is its workspace."""

    def __init__(self, port: int | None = None) -> None:
        self.notion = FakeNotion()
        super().__init__(lambda: create_notion_app(self.notion), port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 10.0) -> FakeNotionServer:
        super().start(deadline_s)
        return self
