"""One headless Chromium per server lifetime, started on first use; a fresh guarded context per tool call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastmcp.exceptions import ToolError

from services.mcp_server.guards.egress import EgressProxy
from services.mcp_server.guards.ssrf import SsrfGuard, install_route_guard

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

    from services.mcp_server.settings import McpSettings

log = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
    # WebRTC could reach private addresses over UDP, around the HTTP proxy
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]
VIEWPORT = {"width": 1280, "height": 800}


class BrowserHolder:
    """Owns the Playwright driver and the Chromium process; `close()` belongs in the server's lifespan."""

    def __init__(self, settings: McpSettings) -> None:
        self.settings = settings
        self.guard = SsrfGuard.from_settings(settings)
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def browser(self) -> Browser:
        """The running browser, launched on first use (and again if it crashed)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Playwright objects live on the loop that made them; that loop is gone, and its driver with it
            if self._browser is not None:
                log.warning("the browser was started on another event loop; starting a new one")
            self._loop, self._lock, self._browser, self._playwright = loop, asyncio.Lock(), None, None
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                await self._shutdown()
                self._browser = await self._launch()
            return self._browser

    async def _launch(self) -> Browser:
        path = self.settings.chromium_path
        if not path.is_file():
            raise ToolError(f"Chromium not found at {path}: set CHROMIUM_PATH, or install it "
                            "(apt-get install chromium)")
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        try:
            return await self._playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS,
                                                          timeout=self.settings.web_timeout * 1000)
        except PlaywrightError as exc:
            await self._shutdown()
            raise ToolError(f"Chromium at {path} did not start: {exc.message.splitlines()[0]}") from exc

    @asynccontextmanager
    async def context(self, **options: Any) -> AsyncIterator[tuple[BrowserContext, SsrfGuard]]:
        """A new context whose every connection goes through a vetting proxy; closed on exit."""
        browser = await self.browser()
        guard = self.guard.fork()
        proxy = await EgressProxy(guard, self.settings.web_timeout).start()
        # "<-loopback>" removes Chromium's implicit bypass, so loopback pages go through the proxy too
        context = await browser.new_context(proxy={"server": proxy.url, "bypass": "<-loopback>"},
                                            service_workers="block", accept_downloads=False,
                                            viewport=VIEWPORT, **options)  # type: ignore[arg-type]
        try:
            context.set_default_timeout(self.settings.web_timeout * 1000)
            context.set_default_navigation_timeout(self.settings.web_timeout * 1000)
            await install_route_guard(context, guard)
            yield context, guard
        finally:
            await context.close()
            await proxy.close()

    async def close(self) -> None:
        """Stop Chromium and the driver; the next call would start them again."""
        if self._loop is not asyncio.get_running_loop():
            return
        async with self._lock:
            await self._shutdown()

    async def _shutdown(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            try:
                await browser.close()
            except Exception as exc:  # a crashed browser must not keep the driver running
                log.warning("closing Chromium failed: %s", exc)
        if playwright is not None:
            await playwright.stop()
