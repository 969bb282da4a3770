"""`ai` and the gateway's conversations: which one to continue, and `ai --history [QUERY]`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from services.cli.ask import api_error_message, unreachable_message
from services.cli.client import CONVERSATIONS_PATH, GatewayClient, GatewayError, GatewayUnreachable, normalise_base_url
from services.cli.exitcodes import ExitCode
from services.cli.render import Notes

HISTORY_LIMIT = 20
PREVIEW_CHARS = 200


def state_dir() -> Path:
    """Where `ai` keeps what outlives a session (readline history, the last conversation)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "local-ai-suite"


def last_conversation_file() -> Path:
    return Path(os.environ.get("AI_CONVERSATION_FILE") or state_dir() / "last_conversation.json")


def _remembered() -> dict[str, str]:
    try:
        data = json.loads(last_conversation_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: the server's newest conversation will do
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def remember(url: str, conversation_id: str) -> None:
    """Note the session's conversation per gateway URL, so `ai --continue` finds it."""
    path = last_conversation_file()
    data = {**_remembered(), normalise_base_url(url): conversation_id}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # `ai --continue` then asks the server for its newest conversation instead


class NoConversations(Exception):
    """The gateway keeps no conversations (an older gateway, or the litellm engine)."""


def create(client: GatewayClient) -> str:
    try:
        created = client.call("POST", CONVERSATIONS_PATH, json={"metadata": {"client": "ai"}})
    except GatewayError as exc:
        if exc.status in (404, 405):
            raise NoConversations(exc.message) from exc
        raise
    return str(created["id"])


def to_continue(client: GatewayClient, wanted: str | None) -> dict[str, Any] | None:
    """The conversation named, else the one this user had last with this gateway, else the server's newest."""
    if wanted:
        return dict(client.call("GET", f"{CONVERSATIONS_PATH}/{wanted}"))
    last = _remembered().get(client.base_url)
    if last:
        try:
            return dict(client.call("GET", f"{CONVERSATIONS_PATH}/{last}"))
        except GatewayError as exc:
            if exc.status != 404:
                raise
    newest = client.call("GET", CONVERSATIONS_PATH, params={"limit": 1})["data"]
    return dict(newest[0]) if newest else None


def last_exchange(client: GatewayClient, conversation_id: str) -> list[tuple[str, str]]:
    """(role, text) of the conversation's last two messages, oldest first."""
    items = client.call("GET", f"{CONVERSATIONS_PATH}/{conversation_id}/items", params={"limit": 2})["data"]
    return [(item["role"], item_text(item)) for item in reversed(items)]


def item_text(item: dict[str, Any]) -> str:
    return "".join(str(part.get("text") or part.get("refusal") or "") for part in item.get("content") or [])


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def when(seconds: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds if isinstance(seconds, int | float) else 0))


def describe(conversation: dict[str, Any]) -> str:
    return f"{when(conversation.get('updated_at'))}  {conversation['id']}  {conversation.get('title') or '(untitled)'}"


def run_history(client: GatewayClient, query: str, notes: Notes) -> ExitCode:
    """`ai --history`: the newest conversations; with a query, the ones that match it, best first."""
    params: dict[str, Any] = {"limit": HISTORY_LIMIT}
    if query:
        params["query"] = query
    try:
        listed = client.call("GET", CONVERSATIONS_PATH, params=params)
    except GatewayUnreachable as exc:
        notes.error(unreachable_message(exc.url, exc.detail))
        return ExitCode.UNREACHABLE
    except GatewayError as exc:
        notes.error(api_error_message(exc))
        return ExitCode.API_ERROR
    found = listed["data"]
    if not found:
        notes.say(f"no conversation matches {query!r}" if query else "no conversations yet: `ai -i` starts one")
        return ExitCode.OK
    for conversation in found:
        sys.stdout.write(describe(conversation) + "\n")
        match = conversation.get("match")
        if isinstance(match, dict) and match.get("snippet"):
            sys.stdout.write(f"    {one_line(str(match['snippet']))}\n")
    if query:
        notes.say(f"searched with: {', '.join(listed.get('engines') or ['text'])}")
    notes.say("continue one with: ai --conversation ID (or ai --continue for the last one)")
    return ExitCode.OK
