"""Settings of the chat app's web service, read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.common.settings import SuiteSettings

REPO_STATIC_DIR = Path(__file__).resolve().parents[2] / "desktop-app"


class WebSettings(SuiteSettings):
    """Where the app is served from and where its same-origin proxies lead."""

    host: str = Field(
        "127.0.0.1", validation_alias=AliasChoices("WEB_HOST", "BIND_HOST"),
        description="Address to bind (WEB_HOST, else BIND_HOST); loopback by default.",
    )
    port: int = Field(3000, alias="WEB_PORT", ge=0, le=65535, description="Port of the chat app.")
    gateway_url: str = Field("http://127.0.0.1:8000", alias="WEB_GATEWAY_URL",
                             description="The gateway; /v1/* is proxied there.")
    rag_url: str = Field("http://127.0.0.1:8002", alias="WEB_RAG_URL",
                         description="The RAG service; /rag/* is proxied there.")
    mcp_url: str = Field("http://127.0.0.1:8020", alias="WEB_MCP_URL",
                         description="The MCP server; /mcp/approvals is proxied to its approval API.")
    alerts_url: str = Field("", alias="WEB_ALERTS_URL",
                            description="The alert receiver behind /api/alerts; empty means none.")
    prometheus_url: str = Field("", alias="WEB_PROMETHEUS_URL",
                                description="Prometheus behind the Status page's charts; empty means none.")
    static_dir: Path = Field(REPO_STATIC_DIR, alias="WEB_STATIC_DIR", description="The app's files.")
    connect_timeout: float = Field(3.0, alias="WEB_CONNECT_TIMEOUT", gt=0,
                                   description="Seconds to wait for an upstream connection.")
    proxy_timeout: float = Field(
        600.0, alias="WEB_PROXY_TIMEOUT", gt=0,
        description="Seconds a proxied request may wait for each upstream read (a long answer streams within).",
    )
    # a document dropped on the app is streamed through to RAG, whose own limit (RAG_MAX_UPLOAD_BYTES) is 50 MiB
    max_body_bytes: int = Field(
        64 * 1024 * 1024, alias="MAX_BODY_BYTES", description="Largest request body accepted, in bytes."
    )
