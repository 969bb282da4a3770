"""The FastMCP middleware that guards every tool call: identity, rate limit, RBAC, approval, run, audit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import mcp_types as mt
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult

from services.mcp_server.catalog import TOOLS, Risk
from services.mcp_server.gate.approvals import Gate, iso, running_under
from services.mcp_server.gate.audit import AuditEntry, AuditWriteError
from services.mcp_server.gate.concurrency import ToolSlots
from services.mcp_server.gate.db import PERM_BYPASS, tool_permission
from services.mcp_server.gate.identity import AuthenticationError
from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.ratelimit import RateLimited
from services.mcp_server.gate.rbac import Identity
from services.mcp_server.gate.redact import for_approver, redact, redact_text

log = logging.getLogger(__name__)
UNKNOWN = Identity("unknown", "")
Observer = Callable[[str, str, float], None]
Refusals = Callable[[str, str], None]  # (tool, reason) of a call a guard refused


Cleared = tuple[str | None, dict[str, str] | None]  # the approval a call runs under, and what it is bound to


class CallRefused(Exception):
    """A guard stopped the call; `status` is what the audit row records."""

    def __init__(self, message: str, status: str = "denied", request_id: str | None = None,
                 reason: str = "permission") -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.reason = reason  # which guard refused it (a metric label)


def risk_of(tool: str) -> Risk:
    """The catalog risk; a tool missing from the catalog is treated as the most dangerous."""
    spec = TOOLS.get(tool)
    return spec.risk if spec else Risk.CRITICAL


def changes_state(tool: str) -> bool:
    """Whether the tool can change something; a tool missing from the catalog is assumed to."""
    spec = TOOLS.get(tool)
    return spec is None or not spec.read_only


class SecurityMiddleware(Middleware):
    """Runs the guards in order and writes one audit row per call with its final status."""

    def __init__(self, layer: SecurityLayer, observe: Observer | None = None,
                 refused: Refusals | None = None) -> None:
        self.layer = layer
        self.settings = layer.settings
        self.observe = observe
        self.refused = refused
        self.slots = ToolSlots(layer.settings)

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        tool, args = context.message.name, context.message.arguments or {}
        started = time.perf_counter()
        if not self.layer.active:
            async with self.slots.slot(tool):
                return await self._timed(tool, started, call_next(context))
        identity, request_id, bound = UNKNOWN, None, None
        try:
            identity = self.layer.identity.resolve()
            request_id, bound = await self._guard(identity, tool, args)
        except AuthenticationError as exc:
            self._finish(identity, tool, args, "denied", started, str(exc))
            self._refused(tool, "authentication")
            raise ToolError(str(exc)) from None
        except CallRefused as exc:
            self._finish(identity, tool, args, exc.status, started, str(exc), exc.request_id)
            if exc.status == "denied":
                self._refused(tool, exc.reason)
            raise ToolError(str(exc)) from None
        try:
            # FastMCP runs a blocking (sync) tool in a worker thread; the slot bounds how many run at once
            async with self.slots.slot(tool):
                with running_under(bound):
                    result = await call_next(context)
        except asyncio.CancelledError:
            self._finish(identity, tool, args, "error", started, "cancelled", request_id)
            raise
        except Exception as exc:
            await self._finish_ran(identity, tool, args, "error", started, f"{type(exc).__name__}: {exc}",
                                   request_id)
            raise
        await self._finish_ran(identity, tool, args, "allowed", started, "", request_id)
        return result

    def _refused(self, tool: str, reason: str) -> None:
        if self.refused is not None:
            self.refused(tool, reason)

    async def _timed(self, tool: str, started: float, call: Any) -> ToolResult:
        status = "error"
        try:
            result: ToolResult = await call
            status = "allowed"
            return result
        finally:
            if self.observe is not None:
                self.observe(tool, status, time.perf_counter() - started)

    async def _guard(self, identity: Identity, tool: str, args: dict[str, Any]) -> Cleared:
        """Rate limit, then RBAC, then approval; returns the approval consumed, if any, and what it is bound to."""
        if self.settings.rate_limit_enabled:
            try:
                self.layer.limiter.take(identity.user, tool)
            except RateLimited as exc:
                raise CallRefused(str(exc), reason="rate_limited") from None
        audit_error = self.layer.audit.last_error
        if self.settings.audit_enabled and audit_error is not None and changes_state(tool):
            raise CallRefused(f"the audit log cannot be written ({audit_error}); calls that change something "
                              "are refused until it can", reason="audit_unavailable")
        auth = self.layer.auth
        if self.settings.rbac_enabled and not auth.may_call(identity.role, tool):
            raise CallRefused(f"role {identity.role!r} lacks permission {tool_permission(tool)!r}")
        if not self.settings.approval_enabled or auth.has(identity.role, PERM_BYPASS):
            return None, None
        reason = self._approval_reason(tool, args)
        if reason is None:
            return None, None
        return await self._approval(identity, tool, args, reason)

    def _approval_reason(self, tool: str, args: dict[str, Any]) -> str | None:
        """Why this call needs approval: the tool's risk, or what these arguments touch (the catalog's rule)."""
        risk = risk_of(tool)
        if risk >= Risk.HIGH:
            return f"{tool} is {risk.name} risk"
        spec = TOOLS.get(tool)
        why = spec.escalate(self.settings, args) if spec is not None and spec.escalate is not None else None
        return None if why is None else f"{tool} {why}"

    async def _approval(self, identity: Identity, tool: str, args: dict[str, Any], reason: str) -> Cleared:
        store = self.layer.approvals
        shown = for_approver(args)  # the approver sees all of what would run
        bound = await self._bound(tool, args)
        gate = await asyncio.to_thread(store.gate, identity.user, tool, args, shown, bound)
        if gate.run:
            return gate.request.id, bound
        if gate.stale:
            raise CallRefused(_stale_message(tool, gate, bound), request_id=gate.request.id, reason="approval_stale")
        request = gate.request
        raise CallRefused(json.dumps({
            "approval_required": True,
            "request_id": request.id,
            "expires_at": iso(request.expires_at),
            "status": "pending",
            "message": f"{reason} and waits for another user's approval: ai-approvals --approve {request.id}; "
                       "retry the same call once it is approved",
        }), status="pending", request_id=request.id)

    async def _bound(self, tool: str, args: dict[str, Any]) -> dict[str, str] | None:
        """The state an approval of this call covers (the catalog's bind rule), as it is now."""
        spec = TOOLS.get(tool)
        if spec is None or spec.bind is None:
            return None
        try:
            return await asyncio.to_thread(spec.bind, self.settings, args)
        except ToolError as exc:
            raise CallRefused(str(exc), reason="approval_state") from None

    async def _finish_ran(
        self, identity: Identity, tool: str, args: dict[str, Any], status: str, started: float,
        detail: str = "", request_id: str | None = None,
    ) -> None:
        """Audit a call that ran; one that can change something is answered only once its row is committed."""
        entry = self._entry(identity, tool, args, status, started, detail, request_id)
        if entry is None:
            return
        if not changes_state(tool):
            self.layer.audit.log(entry)
            return
        try:
            await self.layer.audit.record(entry)
        except AuditWriteError as exc:
            # The call has already happened, so its answer stands; /health is 503 and the guard refuses
            # further calls that change something until the log can be written again.
            log.error("%s ran but %s", tool, exc)

    def _finish(
        self, identity: Identity, tool: str, args: dict[str, Any], status: str, started: float,
        detail: str = "", request_id: str | None = None,
    ) -> None:
        """Audit a refused or cancelled call without waiting."""
        entry = self._entry(identity, tool, args, status, started, detail, request_id)
        if entry is not None:
            self.layer.audit.log(entry)

    def _entry(
        self, identity: Identity, tool: str, args: dict[str, Any], status: str, started: float,
        detail: str, request_id: str | None,
    ) -> AuditEntry | None:
        """Report the call to the observer and build its audit row (None when auditing is off)."""
        elapsed = time.perf_counter() - started
        if self.observe is not None:
            self.observe(tool, status, elapsed)
        if not self.settings.audit_enabled:
            return None
        return AuditEntry(
            user=identity.user, role=identity.role, tool=tool, args=redact(args), status=status,
            duration_ms=elapsed * 1000.0, detail=redact_text(detail, 1000), request_id=request_id,
        )


def _stale_message(tool: str, gate: Gate, bound: dict[str, str] | None) -> str:
    """Why an approval of these very arguments was spent without running: what it covered has changed."""
    approved: dict[str, str] = json.loads(gate.request.bound) if gate.request.bound else {}
    now = bound or {}
    changes = "; ".join(f"{key} {value[:12]} is now {now.get(key, 'gone')[:12]}"
                        for key, value in approved.items() if now.get(key) != value)
    return (f"{tool} did not run: approval {gate.request.id} covered a state that changed since it was approved "
            f"({changes}); call it again to ask for a new approval")
