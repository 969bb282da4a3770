"""A full disk gives 507 with Retry-After and a clear message, from any service; other errors stay 500."""

from __future__ import annotations

import errno
import sqlite3

import httpx
from fastapi import FastAPI

from services.common.errors import install_error_handlers


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    async def write() -> None:
        raise exc

    return app


async def post(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/write")


async def test_enospc_and_a_full_sqlite_database_are_507() -> None:
    for exc in (OSError(errno.ENOSPC, "No space left on device"), sqlite3.OperationalError("database or disk is full")):
        answer = await post(app_raising(exc))
        assert answer.status_code == 507, answer.text
        assert answer.json()["error"]["code"] == "disk_full" and "disk is full" in answer.json()["error"]["message"]
        assert int(answer.headers["retry-after"]) > 0


async def test_other_os_and_sqlite_errors_stay_server_errors() -> None:
    for exc in (OSError(errno.EACCES, "Permission denied"), sqlite3.OperationalError("no such table: x")):
        assert (await post(app_raising(exc))).status_code == 500
