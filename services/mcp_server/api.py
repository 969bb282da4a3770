"""The MCP server's own HTTP routes beside /mcp: /health and the approval status a caller polls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.common.errors import BadRequest, NotFound, SuiteError, Unauthorized
from services.common.health import health_response
from services.mcp_server.gate.approvals import (
    AlreadyDecided,
    ApprovalError,
    RequestExpired,
    SelfApproval,
    UnknownRequest,
    decide_and_record,
)
from services.mcp_server.gate.db import PERM_DECIDE
from services.mcp_server.gate.identity import AuthenticationError
from services.mcp_server.gate.layer import SecurityLayer
from services.mcp_server.gate.rbac import Identity

router = APIRouter()


MAX_REASON_CHARS = 1000


class Forbidden(SuiteError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class Conflict(SuiteError):
    status = 409
    type = "invalid_request_error"
    code = "already_decided"


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


async def _reason(request: Request) -> str:
    raw = await request.body()
    if not raw.strip():
        return ""
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    reason = body.get("reason", "") if isinstance(body, dict) else None
    if not isinstance(reason, str):
        raise BadRequest('expected {"reason": "..."} with a string reason', param="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"reason is longer than {MAX_REASON_CHARS} characters", param="reason")
    return reason


@router.post("/api/approvals/{request_id}/{decision}")
async def decide(request_id: str, decision: str, request: Request) -> dict[str, Any]:
    """Approve or reject a pending request from the chat app's Approvals page.

    Refused with 403 unless the request comes from one of MCP_APPROVAL_ORIGINS (a page elsewhere cannot
    ride on a user's key), the caller's role may decide, and the caller is not the one who asked. Every
    attempt that reaches the approval store is in the audit chain, as `ai-approvals` decisions are.
    """
    if decision not in ("approve", "reject"):
        raise NotFound(f"no decision {decision!r}: use approve or reject")
    layer = security(request)
    origin = request.headers.get("origin")
    if origin not in layer.settings.approval_origins:
        raise Forbidden(f"decisions are taken only from the chat app (Origin {origin or 'missing'} is not one of "
                        "MCP_APPROVAL_ORIGINS)", code="origin_not_allowed")
    caller = _caller(layer, request)
    if not layer.auth.has(caller.role, PERM_DECIDE):
        raise Forbidden(f"role {caller.role!r} may not decide approval requests", code="not_approver")
    reason = await _reason(request)
    settings = layer.settings
    try:
        decided = await asyncio.to_thread(
            decide_and_record, layer.approvals, request_id, caller.user, decision == "approve", reason,
            audit=settings.audit_enabled, audit_key=settings.audit_key_path())
    except UnknownRequest as exc:
        raise NotFound(str(exc), code="approval_not_found") from None
    except (AlreadyDecided, RequestExpired) as exc:
        raise Conflict(str(exc)) from None
    except SelfApproval as exc:
        raise Forbidden(str(exc), code="self_approval") from None
    except ApprovalError as exc:  # NotApprover: the role changed since the key was checked
        raise Forbidden(str(exc), code="not_approver") from None
    return decided.public()
