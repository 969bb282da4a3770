"""The MCP server's own HTTP routes beside /mcp: /health and the approval status a caller polls."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.common.errors import NotFound, SuiteError, Unauthorized
from services.common.health import health_response
from services.mcp_server.gate.db import PERM_DECIDE
from services.mcp_server.gate.identity import AuthenticationError
from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.rbac import Identity

router = APIRouter()


class Forbidden(SuiteError):
    status = 403
    type = "permission_error"
    code = "forbidden"


def security(request: Request) -> SecurityLayer:
    layer: SecurityLayer = request.app.state.security
    return layer


def _caller(layer: SecurityLayer, request: Request) -> Identity:
    try:
        return layer.identity.from_headers(request.headers)
    except AuthenticationError as exc:
        raise Unauthorized(str(exc)) from None


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    layer = security(request)
    s = layer.settings
    info = {"rbac": s.rbac_enabled, "approvals": s.approval_enabled, "audit": s.audit_enabled,
            "rate_limit": s.rate_limit_enabled}
    return health_response("mcp-server", await layer.health(), info=info)


@router.get("/api/approvals/{request_id}/status")
async def approval_status(request_id: str, request: Request) -> dict[str, Any]:
    layer = security(request)
    caller = _caller(layer, request)
    found = await asyncio.to_thread(layer.approvals.get, request_id)
    if found is None:
        raise NotFound(f"no approval request {request_id!r}", code="approval_not_found")
    if found.user_name != caller.user and not layer.auth.has(caller.role, PERM_DECIDE):
        raise Forbidden(f"request {request_id} belongs to another user")
    return found.public()


@router.get("/api/approvals")
async def my_approvals(request: Request, everyone: bool = False) -> dict[str, Any]:
    layer = security(request)
    caller = _caller(layer, request)
    if everyone and not layer.auth.has(caller.role, PERM_DECIDE):
        raise Forbidden("only approvers may list everyone's requests")
    found = await asyncio.to_thread(layer.approvals.find, None if everyone else caller.user)
    return {"user": caller.user, "requests": [req.public() for req in found]}
