"""`ai-approvals`: list, approve and reject MCP approval requests, working directly on the security database."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from services.mcp_server.gate import db
from services.mcp_server.gate.approvals import ApprovalError, ApprovalRequest, ApprovalStore, decide_and_record
from services.mcp_server.settings import McpSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger(__name__)
# Where the server's database and audit key are; everything else comes from the environment and `.env` as
# usual. How long an approval lives is not among them: the server decides that (its APPROVAL_TIMEOUT) when
# the approval is used.
SHARED_WITH_SERVER = ("DATA_DIR", "SECURITY_DB_PATH", "AUDIT_KEY_PATH")
STYLE = {"pending": "yellow", "approved": "green", "rejected": "red", "used": "dim", "expired": "dim"}
EXAMPLES = """examples:
  ai-approvals --list                       pending requests
  ai-approvals --list --all                 every request, newest first
  ai-approvals --show 3f2c...               one request with its full arguments
  ai-approvals --approve 3f2c...            approve as admin
  ai-approvals --reject 3f2c... "too broad" reject with a reason
  ai-approvals --approve 3f2c... --as alice approve as another approver
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-approvals", description="Decide MCP calls that wait for approval (HIGH and CRITICAL tools).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="show pending requests (with --all: every request)")
    action.add_argument("--show", metavar="ID", help="print one request with its full arguments")
    action.add_argument("--approve", metavar="ID", help="approve a pending request")
    action.add_argument("--reject", nargs="+", metavar=("ID", "REASON"), help="reject a pending request")
    parser.add_argument("--all", action="store_true", help="with --list: show decided and expired requests too")
    parser.add_argument("--as", dest="approver", default=db.ADMIN, help="the deciding user (default: admin)")
    return parser


def _args_text(request: ApprovalRequest) -> str:
    text = json.dumps(json.loads(request.args), ensure_ascii=False)
    if request.bound:
        text += f"  bound to {request.bound}"
    # The list stays readable; --show prints the whole call before anyone approves it.
    return text if len(text) <= 200 else text[:200] + f"… (ai-approvals --show {request.id})"


def show_one(store: ApprovalStore, console: Console, request_id: str) -> int:
    """Print one request as JSON, arguments in full."""
    found = store.get(request_id)
    if found is None:
        console.print(f"[red]error:[/] no approval request {escape(request_id)!r}")
        return EXIT_FAILED
    console.print_json(json.dumps(found.public(), ensure_ascii=False))
    return EXIT_OK


def show(store: ApprovalStore, console: Console, everything: bool) -> int:
    """Print the requests, one block each."""
    now = time.time()
    found = store.find(states=() if everything else ("pending",))
    if not found:
        console.print("no pending approval requests" if not everything else "no approval requests")
        return EXIT_OK
    # One block per request, not a table: ids must stay whole to be copied, and arguments can be long.
    for req in found:
        state = req.state(now)
        public = req.public(now)
        when = f"expires {_short(public['expires_at'])} UTC" if state == "pending" else \
            f"{state} {_short(public['decided_at'])} UTC by {req.decided_by or '?'}"
        if req.reason:
            when += f" ({req.reason})"
        console.print(f"[bold]{req.id}[/]  [{STYLE.get(state, 'white')}]{state}[/]  {escape(req.tool)}  "
                      f"from {escape(req.user_name)}  {escape(when)}", soft_wrap=True)
        console.print(f"    {escape(_args_text(req))}", soft_wrap=True)
    return EXIT_OK


def _short(stamp: str | None) -> str:
    """2026-11-26T00:36:49+00:00 -> 2026-11-26 00:36:49 (the column says UTC)."""
    return (stamp or "").replace("T", " ").removesuffix("+00:00")


def decide(store: ApprovalStore, settings: McpSettings, console: Console, request_id: str, approver: str,
           approve: bool, reason: str) -> int:
    """Approve or reject; prints a clear line either way."""
    try:
        decided = decide_and_record(store, request_id, approver, approve, reason, audit=settings.audit_enabled,
                                    audit_key=settings.audit_key_path())
    except ApprovalError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILED
    verb = "approved" if approve else "rejected"
    console.print(f"[{STYLE[verb]}]{verb}[/] {decided.id}: {escape(decided.tool)} for {escape(decided.user_name)}"
                  + (f"; valid until {decided.public()['expires_at']}" if approve else ""))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, native: Mapping[str, str] | None = None) -> int:
    """`ai-approvals`; `native` is the environment the native runner gives mcp-server, where there is one."""
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    native = native or {}
    shared: dict[str, Any] = {name: native[name] for name in SHARED_WITH_SERVER if name in native}
    settings = McpSettings(**shared)
    path = settings.security_db_path()
    if not path.exists():
        console.print(f"[red]error:[/] no security database at {escape(str(path))}; start the MCP server once, "
                      "or set DATA_DIR / SECURITY_DB_PATH")
        return EXIT_FAILED
    try:
        db.initialize(settings)  # applies any newer migrations; idempotent
    except db.SecurityDbError as exc:  # e.g. an audit key other users can read
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILED
    store = ApprovalStore(path)
    try:
        if args.list:
            return show(store, console, args.all)
        if args.show:
            return show_one(store, console, args.show)
        if args.approve:
            return decide(store, settings, console, args.approve, args.approver, True, "")
        if len(args.reject) < 1:
            console.print("[red]error:[/] --reject needs an ID")
            return EXIT_USAGE
        return decide(store, settings, console, args.reject[0], args.approver, False, " ".join(args.reject[1:]))
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
