"""`create_app()` for the MCP server: streamable HTTP at /mcp, plus /health, /metrics and approval polling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import install_error_handlers
from services.common.metrics import instrument
from services.mcp_server.api import router
from services.mcp_server.gate.http import KeyedMetrics, RequireIdentity
from services.mcp_server.metrics import AuditChecks, SecurityCollector, ToolMetrics
from services.mcp_server.server import Register, build_server
from services.mcp_server.settings import McpSettings


def create_app(settings: McpSettings | None = None, *, families: Iterable[str | Register] | None = None) -> FastAPI:
    """Build the HTTP server; `families` limits the tool families (tests pass their own)."""
    settings = settings or McpSettings()
    registry = CollectorRegistry()
    metrics = ToolMetrics.create(registry)
    mcp, layer = build_server(settings, families, observe=metrics.observe, refused=metrics.refused)
    checks = AuditChecks(layer)
    collector = SecurityCollector(layer, checks)
    registry.register(collector)
    # Host/Origin checks stop DNS-rebinding pages from reaching a loopback server through the browser.
    mcp_app = mcp.http_app(path="/mcp", host_origin_protection="auto")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The MCP app's lifespan runs the session manager, which enters the FastMCP lifespan (audit writer).
        verifying = asyncio.create_task(checks.run(), name="audit-verify") if settings.audit_enabled else None
        try:
            async with mcp_app.lifespan(app):
                yield
        finally:
            if verifying is not None:
                verifying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await verifying
            collector.close()
            layer.close()

    app = FastAPI(title="Local AI Suite MCP server", lifespan=lifespan)
    install_error_handlers(app)
    instrument(app, registry)
    # No shared ApiKeyMiddleware: every MCP and API caller authenticates with their own key.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(KeyedMetrics, layer=layer)
    app.state.security = layer
    app.state.mcp = mcp
    app.include_router(router)
    app.mount("/", RequireIdentity(mcp_app, layer))
    return app
