"""The security layer's parts, opened together from settings and closed together at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import ApprovalStore
from services.mcp_server.gate.audit import AuditLog
from services.mcp_server.gate.identity import IdentityResolver
from services.mcp_server.gate.ratelimit import RateLimiter
from services.mcp_server.gate.rbac import AuthCache
from services.mcp_server.settings import McpSettings


@dataclass
class SecurityLayer:
    """Database path, caches, approval store, audit writer and rate limiter of one server."""

    settings: McpSettings
    db_path: Path
    auth: AuthCache
    identity: IdentityResolver
    approvals: ApprovalStore
    audit: AuditLog
    limiter: RateLimiter

    @classmethod
    def open(cls, settings: McpSettings) -> SecurityLayer:
        """Migrate and seed the database, write the owner key file, and load the caches."""
        path = db.initialize(settings)
        auth = AuthCache(path)
        return cls(
            settings=settings,
            db_path=path,
            auth=auth,
            identity=IdentityResolver(settings, auth),
            approvals=ApprovalStore(path, settings.approval_timeout),
            audit=AuditLog(path, settings.audit_key_path()),
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.rate_limit_tools),
        )

    @property
    def active(self) -> bool:
        """False when every guard is switched off; the middleware then only passes calls through."""
        s = self.settings
        return s.rbac_enabled or s.approval_enabled or s.audit_enabled or s.rate_limit_enabled

    def start(self) -> None:
        if self.settings.audit_enabled:
            self.audit.start()

    async def stop(self) -> None:
        """Flush the audit queue; connections stay usable until `close`."""
        await self.audit.close()

    def close(self) -> None:
        self.auth.close()
        self.approvals.close()

    async def health(self) -> dict[str, str]:
        """Dependency states for /health: the database answers, and the audit writer is not failing."""
        try:
            await asyncio.to_thread(self.auth.refresh, True)
            database = "ok"
        except Exception as exc:  # sqlite3 and OS errors alike mean the database cannot serve
            database = f"error: {exc}"
        checks = {"security_db": database}
        if self.settings.audit_enabled:
            checks["audit"] = self.audit.state()
        return checks
