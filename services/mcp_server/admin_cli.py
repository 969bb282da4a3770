"""`ai-suite mcp ...` and `ai-suite audit verify`: the MCP server's local admin commands."""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.mcp_server.gate import db
from services.mcp_server.gate.audit_verify import UNCHECKED, verify
from services.mcp_server.settings import McpSettings

EXIT_OK, EXIT_FAILED, EXIT_UNCHECKED = 0, 1, 2


def add_subcommands(sub: Any) -> None:
    """Add `mcp` and `audit` to an argparse subparsers object (the `ai-suite` command's)."""
    mcp = sub.add_parser("mcp", help="run the MCP server over stdio, or manage its users and keys")
    mcp.add_argument("--stdio", action="store_true", help="serve MCP over stdin/stdout as the local owner")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="ACTION")
    user = mcp_sub.add_parser("user", help="add or list users")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="add a user with a role; prints their API key once")
    add.add_argument("name")
    add.add_argument("--role", required=True, help="guest, developer, admin or a custom role")
    user_sub.add_parser("list", help="list users, roles and key counts")
    key = mcp_sub.add_parser("key", help="issue API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    key_add = key_sub.add_parser("add", help="give an existing user (e.g. admin) a new key; prints it once")
    key_add.add_argument("user")
    key_add.add_argument("--label", default="", help="a note stored with the key")

    audit = sub.add_parser("audit", help="check the MCP audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_sub.add_parser("verify", help="recompute the keyed chain and check its signed head; exit 0 intact, "
                                        "1 tampered or damaged, 2 not checked (no database, or no usable key)")


def load_settings(args: argparse.Namespace) -> McpSettings:
    """Settings from the environment and the `--env-file` the ai-suite command was given (default ./.env)."""
    env_file: Path | None = getattr(args, "env_file", None)
    return McpSettings(_env_file=env_file) if env_file else McpSettings()  # type: ignore[call-arg]


def dispatch(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run a parsed `mcp` or `audit` command; returns the exit code."""
    console = console or Console(highlight=False)
    settings = load_settings(args)
    try:
        if args.command == "audit":
            return audit_verify(settings, console)
        if getattr(args, "mcp_command", None) == "user":
            if args.user_command == "add":
                return user_add(settings, args.name, args.role, console)
            return user_list(settings, console)
        if getattr(args, "mcp_command", None) == "key":
            return key_add(settings, args.user, args.label, console)
        if args.stdio:
            from services.mcp_server.__main__ import run_stdio

            run_stdio(settings)
            return EXIT_OK
    except db.SecurityDbError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILED
    console.print("usage: ai-suite mcp --stdio | mcp user add NAME --role ROLE | mcp user list | "
                  "mcp key add USER | audit verify")
    return EXIT_FAILED


@contextlib.contextmanager
def _database(settings: McpSettings) -> Iterator[sqlite3.Connection]:
    """The migrated and seeded security database, closed on leaving."""
    with contextlib.closing(db.connect(db.initialize(settings))) as conn:
        yield conn


def user_add(settings: McpSettings, name: str, role: str, console: Console) -> int:
    with _database(settings) as conn:
        key = db.create_user(conn, name, role)
    return _show_new_key(console, f"user [bold]{escape(name)}[/] ({escape(role)}) created. API key", key)


def key_add(settings: McpSettings, user: str, label: str, console: Console) -> int:
    with _database(settings) as conn:
        key = db.issue_key(conn, user, label)
    return _show_new_key(console, f"new key for [bold]{escape(user)}[/]", key)


def _show_new_key(console: Console, headline: str, key: str) -> int:
    """A new key is printed once, whole and unstyled (it is stored only as a hash)."""
    console.print(f"{headline}, shown only now:")
    console.print(key, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def user_list(settings: McpSettings, console: Console) -> int:
    with _database(settings) as conn:
        rows = db.list_users(conn)
    table = Table(title=f"MCP users ({settings.security_db_path()})")
    for column in ("user", "role", "keys", "state", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["role"], str(row["keys"]), "disabled" if row["disabled"] else "active",
                      row["created_at"])
    console.print(table)
    return EXIT_OK


def audit_verify(settings: McpSettings, console: Console) -> int:
    """Exit 0 when the chain is intact, 1 when it is tampered or damaged, 2 when it could not be checked."""
    path = settings.security_db_path()
    result = verify(path, settings.audit_key_path())
    if result.ok:
        note = "" if result.keyed else "; not keyed yet: the MCP server keys it on its next start"
        if result.keyed and result.legacy:
            note = f"; rows 1..{result.legacy} predate the key and are sealed by it"
        console.print(f"[green]audit log intact[/]: {result.rows} rows verified ({escape(str(path))}){note}",
                      soft_wrap=True)
        return EXIT_OK
    if result.verdict == UNCHECKED:
        console.print(f"[red]audit log not checked[/]: {escape(result.reason)}", soft_wrap=True)
        return EXIT_UNCHECKED
    where = f"row {result.bad_row}: " if result.bad_row is not None else ""
    console.print(f"[red]audit log {result.verdict.upper()}[/]: {where}{escape(result.reason)} "
                  f"({result.rows} rows verified before it; {escape(str(path))})", soft_wrap=True)
    return EXIT_FAILED
