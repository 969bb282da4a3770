"""Web tools: screenshot, scrape, UI analysis and scripted steps in headless Chromium, behind the SSRF guard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools import ToolResult
from fastmcp.utilities.types import Image
from mcp.types import TextContent
from pydantic import BaseModel, ConfigDict, Field

from services.mcp_server.catalog import tool
from services.mcp_server.guards.egress import REFUSED_HEADER
from services.mcp_server.guards.ssrf import SsrfGuard, SsrfRefused
from services.mcp_server.tools.browser import BrowserHolder
from services.mcp_server.tools.web_pages import ANALYZE_JS, LINKS_JS

if TYPE_CHECKING:
    from playwright.async_api import Page, Response

    from services.mcp_server.settings import McpSettings

MAX_STEPS = 30
MAX_TEXT = 200_000
MAX_LINKS = 300

Url = Annotated[str, Field(description="http(s) URL of the page.", min_length=1, max_length=8192)]
Selector = Annotated[str | None, Field(description="CSS selector that limits the result to matching elements.")]


class Step(BaseModel):
    """One browser action of web_automate."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["goto", "click", "fill", "press", "wait_for", "extract", "screenshot"]
    selector: str | None = Field(None, description="CSS selector (click, fill, wait_for, extract; press optional).")
    url: str | None = Field(None, description="URL for goto.")
    value: str | None = Field(None, description="Text for fill, key name for press (e.g. Enter).")
    full_page: bool = Field(False, description="screenshot: the whole page, not only the viewport.")



def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class PageSession:
    """A guarded page of one tool call: navigation with a timeout and refusals turned into ToolErrors."""

    def __init__(self, page: Page, guard: SsrfGuard, timeout: float) -> None:
        self.page = page
        self.guard = guard
        self.timeout = timeout
        self.refused: list[str] = []
        self.status: int | None = None
        page.on("response", self._watch)

    def _watch(self, response: Response) -> None:
        # a redirect or click that lands on a refused host shows up as the proxy's 403 in the main frame
        reason = response.headers.get(REFUSED_HEADER.lower())
        if reason and response.request.is_navigation_request() and response.frame == self.page.main_frame:
            self.refused.append(f"{response.url}: {reason}")

    def check(self) -> None:
        """Raise if the main frame was sent somewhere the guard refused."""
        if self.refused:
            raise ToolError(f"navigation refused: {self.refused[0]}")

    async def goto(self, url: str) -> int | None:
        """Vet and load `url`; the HTTP status of the final response."""
        await vet(self.guard, url)
        response = await self.run(self.page.goto(url, wait_until="load"), f"loading {url}")
        self.check()
        return response.status if response is not None else None

    async def run(self, action: Any, what: str) -> Any:
        """Await a Playwright action, mapping its timeout and errors to ToolErrors."""
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            return await action
        except PlaywrightTimeout as exc:
            raise ToolError(f"timed out after {self.timeout:g}s {what} (WEB_TIMEOUT)") from exc
        except PlaywrightError as exc:
            self.check()
            message = _first_line(exc)
            if "ERR_BLOCKED_BY_CLIENT" in message or "ERR_TUNNEL_CONNECTION_FAILED" in message:
                message = f"refused by the SSRF guard ({message})"
            raise ToolError(f"{what} failed: {message}") from exc


async def vet(guard: SsrfGuard, url: str) -> None:
    """Refuse `url` with a ToolError unless the SSRF guard allows it."""
    try:
        await guard.vet_url(url)
    except SsrfRefused as exc:
        raise ToolError(str(exc)) from exc


@asynccontextmanager
async def open_page(browser: BrowserHolder, url: str | None = None) -> AsyncIterator[PageSession]:
    """A page in a fresh guarded context, closed afterwards; `url` is vetted first, then loaded."""
    if url is not None:
        # a refused URL costs no browser context
        await vet(browser.guard.fork(), url)
    async with browser.context() as (context, guard):
        session = PageSession(await context.new_page(), guard, browser.settings.web_timeout)
        if url is not None:
            session.status = await session.goto(url)
        yield session


async def scrape_page(session: PageSession, url: str, selector: str | None, max_chars: int) -> dict[str, Any]:
    """Title, visible text (capped) and links of the loaded page, or of the elements matching `selector`."""
    page = session.page
    if selector:
        texts = await session.run(page.locator(selector).all_inner_texts(), f"reading {selector!r}")
        if not texts:
            raise ToolError(f"no element matches {selector!r} on {page.url}")
        text = "\n\n".join(texts)
    else:
        text = await session.run(page.inner_text("body"), "reading the page text")
    links = await session.run(page.evaluate(LINKS_JS, [selector, MAX_LINKS]), "reading links")
    session.check()
    return {"url": url, "final_url": page.url, "status": session.status, "title": await page.title(),
            "text": text[:max_chars], "truncated": len(text) > max_chars, "chars": len(text), "links": links}


async def _save(settings: McpSettings, path: str, working_dir: str | None, data: bytes) -> str:
    """Write the PNG under an allowed root (atomic, never through a symlink); returns the path as shown."""
    from services.mcp_server.guards.paths import PathGuard

    def write() -> str:
        guard = PathGuard.shared(settings)
        target = guard.resolve_new(path, working_dir)
        guard.make_dirs(target.parent)
        guard.write_atomic(target, data)
        return guard.display(target)

    return await asyncio.to_thread(write)


def _step_error(index: int, step: Step, message: str) -> ToolError:
    target = step.url or step.selector or step.value or ""
    return ToolError(f"step {index} ({step.action} {target!r}) failed: {message}")


def _require(index: int, step: Step, *fields: str) -> None:
    missing = [name for name in fields if not getattr(step, name)]
    if missing:
        raise _step_error(index, step, f"needs {', '.join(missing)}")


async def run_step(session: PageSession, index: int, step: Step, images: list[Image]) -> dict[str, Any]:
    """Perform one web_automate step and say what it did."""
    page, what = session.page, f"step {index} ({step.action})"
    done: dict[str, Any] = {"step": index, "action": step.action}
    if step.action == "goto":
        _require(index, step, "url")
        done["status"] = await session.goto(step.url or "")
    elif step.action == "click":
        _require(index, step, "selector")
        await session.run(page.click(step.selector or ""), what)
    elif step.action == "fill":
        _require(index, step, "selector")
        await session.run(page.fill(step.selector or "", step.value or ""), what)
    elif step.action == "press":
        _require(index, step, "value")
        key = step.value or ""
        action = page.press(step.selector, key) if step.selector else page.keyboard.press(key)
        await session.run(action, what)
    elif step.action == "wait_for":
        _require(index, step, "selector")
        await session.run(page.wait_for_selector(step.selector or ""), what)
    elif step.action == "extract":
        _require(index, step, "selector")
        texts = await session.run(page.locator(step.selector or "").all_inner_texts(), what)
        done["text"] = "\n".join(texts)[:MAX_TEXT]
    else:
        images.append(Image(data=await session.run(page.screenshot(full_page=step.full_page, type="png"), what),
                            format="png"))
        done["image"] = len(images) - 1
    session.check()
    done["url"] = page.url
    return done


def register(mcp: FastMCP, settings: McpSettings, browser: BrowserHolder | None = None) -> None:
    """Add the web tools; pass the server's BrowserHolder so its lifespan can close Chromium."""
    holder = browser or BrowserHolder(settings)

    @tool(mcp, "web_screenshot", output_schema=None)
    async def web_screenshot(
        url: Url,
        full_page: Annotated[bool, Field(description="Capture the whole page, not only the viewport.")] = False,
        save_path: Annotated[str | None, Field(description="Also save the PNG here (under an allowed root).")] = None,
        working_dir: Annotated[str | None, Field(description="Folder save_path is relative to.")] = None,
    ) -> list[Image | str]:
        """Screenshot a web page as PNG (1280x800 viewport, or the full page)."""
        async with open_page(holder, url) as session:
            png = await session.run(session.page.screenshot(full_page=full_page, type="png"), "taking the screenshot")
            session.check()
            final = session.page.url
        result: list[Image | str] = [Image(data=png, format="png")]
        note = f"screenshot of {final} ({len(png)} bytes)"
        if save_path:
            note += f", saved to {await _save(settings, save_path, working_dir, png)}"
        result.append(note)
        return result

    @tool(mcp, "web_scrape")
    async def web_scrape(
        url: Url,
        selector: Selector = None,
        max_chars: Annotated[int, Field(ge=100, le=MAX_TEXT, description="Most text characters returned.")] = 20000,
    ) -> dict[str, Any]:
        """Read a web page: title, visible text (capped), links; optionally only what a CSS selector matches."""
        async with open_page(holder, url) as session:
            return await scrape_page(session, url, selector, max_chars)

    @tool(mcp, "web_analyze_ui")
    async def web_analyze_ui(url: Url) -> dict[str, Any]:
        """Describe a page's UI: headings, forms, buttons, links, images without alt, colours, fonts, viewport."""
        async with open_page(holder, url) as session:
            report = await session.run(session.page.evaluate(ANALYZE_JS), "analysing the page")
            return {"url": url, "final_url": session.page.url, "status": session.status, **report}

    @tool(mcp, "web_automate", output_schema=None)
    async def web_automate(
        steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS, description="Actions, in order.")],
        start_url: Annotated[str | None, Field(description="Page to open before the first step.")] = None,
    ) -> ToolResult:
        """Drive a page: goto, click, fill, press, wait_for, extract and screenshot steps, each with WEB_TIMEOUT."""
        images: list[Image] = []
        done: list[dict[str, Any]] = []
        async with open_page(holder, start_url) as session:
            for index, step in enumerate(steps, start=1):
                try:
                    done.append(await run_step(session, index, step, images))
                except ToolError as exc:
                    raise ToolError(f"{exc} (after {len(done)} completed steps)") from exc
            summary = {"steps": done, "final_url": session.page.url, "title": await session.page.title()}
            session.check()
        content = [TextContent(type="text", text=json.dumps(summary, ensure_ascii=False))]
        return ToolResult(content=[*content, *(image.to_image_content() for image in images)],
                          structured_content=summary)
