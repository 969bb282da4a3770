"""`/health` bodies: 200 when the service can do its job, 503 naming what is not ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse


def health_response(
    service: str, checks: Mapping[str, str], *, info: Mapping[str, Any] | None = None, retry_after: int = 2
) -> JSONResponse:
    """Build the health answer; every check must read "ok" for a 200."""
    healthy = all(state == "ok" for state in checks.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable",
        "service": service,
        "dependencies": dict(checks),
    }
    if info:
        body.update(info)
    if healthy:
        return JSONResponse(body, status_code=200)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after)})
