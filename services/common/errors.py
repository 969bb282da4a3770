"""Exception hierarchy and the one handler that maps it to JSON error bodies."""

from __future__ import annotations

import errno
import json
import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class SuiteError(Exception):
    """Base error: carries an HTTP status, an error type and a short code."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(SuiteError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(SuiteError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(SuiteError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(SuiteError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class InvalidInput(SuiteError):
    """The request is well-formed but a value in it cannot be processed (an empty text, say)."""

    status = 422
    type = "invalid_request_error"
    code = "invalid_input"


class ServiceUnavailable(SuiteError):
    """A dependency is down or the service is saturated; the client may retry."""

    status = 503
    type = "service_unavailable"
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamTimeout(ServiceUnavailable):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class InsufficientStorage(ServiceUnavailable):
    """The data disk is full: nothing was written; the client may retry once space is freed."""

    status = 507
    type = "insufficient_storage"
    code = "disk_full"


def disk_full(exc: BaseException) -> bool:
    """True for the errors a full disk raises: ENOSPC/EDQUOT, SQLite's SQLITE_FULL, PostgreSQL's 53100."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return getattr(exc, "sqlstate", None) == "53100"


DISK_FULL_MESSAGE = "the data disk is full: nothing was written; free some space and retry"


class StartupRefused(Exception):
    """A service cannot start for a reason its user can fix (a missing model file); shown as one line."""


def error_body(message: str, type_: str, code: str, param: str | None = None) -> dict:
    """The OpenAI-compatible error shape used by every service."""
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def error_response(exc: SuiteError) -> JSONResponse:
    body = error_body(exc.message, exc.type, exc.code, exc.param)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers())


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    where = ".".join(loc) or "body"
    return f"{where}: {first.get('msg', 'invalid value')}", where


def install_error_handlers(app: FastAPI) -> None:
    """Map SuiteError, validation and HTTP errors to `{"error": {...}}` bodies."""

    @app.exception_handler(SuiteError)
    async def _suite(_: Request, exc: SuiteError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_request", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", code), exc.status_code, headers=exc.headers
        )

    async def _disk_full(_: Request, exc: Exception) -> JSONResponse:
        if not disk_full(exc):
            raise exc  # anything else stays a plain 500
        return error_response(InsufficientStorage(DISK_FULL_MESSAGE, retry_after=30))

    app.add_exception_handler(OSError, _disk_full)
    app.add_exception_handler(sqlite3.Error, _disk_full)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return JSONResponse(error_body("request body is not valid JSON", "invalid_request_error",
                                       "invalid_json"), 400)
