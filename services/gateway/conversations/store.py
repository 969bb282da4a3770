"""The conversation store: one SQLite file, every write one transaction, answered only once it is committed."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.common.errors import BadRequest, NotFound
from services.gateway.conversations.items import INSTRUCTION_ROLES, NewItem, new_id, title_from
from services.gateway.conversations.schema import connect
from services.gateway.conversations.textsearch import TextHit, search_items

T = TypeVar("T")
# Whole SELECT heads are constants; the clauses added to them bind every value as a ? parameter.
SELECT_CONVERSATIONS = "SELECT id, created_at, updated_at, metadata, auto_title, rowid FROM conversations"
SELECT_ITEMS = "SELECT seq, id, conversation_id, created_at, role, status, content, text, extra FROM items"
INSTRUCTION_MARKS = ",".join("?" * len(INSTRUCTION_ROLES))


@dataclass(frozen=True)
class Conversation:
    id: str
    created_at: int
    updated_at: float
    metadata: dict[str, str]
    auto_title: str | None
    rowid: int

    @property
    def title(self) -> str | None:
        """A title the user gave (metadata.title) wins over the one taken from the first message."""
        return self.metadata.get("title") or self.auto_title

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's conversation object, plus our `title` and `updated_at`."""
        return {"id": self.id, "object": "conversation", "created_at": self.created_at, "metadata": self.metadata,
                "title": self.title, "updated_at": int(self.updated_at)}


@dataclass(frozen=True)
class Item:
    seq: int
    id: str
    conversation_id: str
    created_at: int
    role: str
    status: str
    content: list[dict[str, Any]]
    text: str
    extra: dict[str, str]

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's message item, plus `created_at`, and for answers the `model` and `route_reason`."""
        return {"type": "message", "id": self.id, "status": self.status, "role": self.role,
                "content": self.content, "created_at": self.created_at, **self.extra}

    def as_chat_message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.text}


@dataclass(frozen=True)
class History:
    """What a chat in the conversation builds on: instructions, the newest other items, turns not loaded."""

    instructions: list[Item]
    items: list[Item]
    older_turns: int


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool


def _conversation(row: tuple) -> Conversation:
    return Conversation(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _item(row: tuple) -> Item:
    return Item(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7], json.loads(row[8]))


class ConversationStore:
    """Owns the connection; every call runs on the store's one worker thread, in the order it was made.

    One thread, not the loop's shared pool: the connection serves one call at a time anyway, so a burst of
    callers waits in the worker's queue instead of parking a pool thread each (every new thread costs the
    process a malloc arena that it keeps after the burst).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conversation-store")

    @classmethod
    def open(cls, path: Path) -> ConversationStore:
        """Open the file; answers still `in_progress` (their gateway died mid-stream) become `incomplete`."""
        store = cls(connect(path))
        store._write(store._settle_unfinished)
        return store

    def _settle_unfinished(self) -> int:
        return self._conn.execute("UPDATE items SET status = 'incomplete' WHERE status = 'in_progress'").rowcount

    def close(self) -> None:
        """Finish the calls already queued, stop the worker, close the connection."""
        self._worker.shutdown(wait=True)
        self._conn.close()

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work` on the worker; being the only thread that uses the connection, it needs no lock."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(work, *args))

    def _write(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work` in one IMMEDIATE transaction; the commit (fsynced: synchronous=FULL) ends it."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(*args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # --- conversations -------------------------------------------------------------------------------

    async def create(self, metadata: dict[str, str], items: list[NewItem]) -> tuple[Conversation, list[Item]]:
        return await self._run(self._write, self._create, metadata, items)

    def _create(self, metadata: dict[str, str], items: list[NewItem]) -> tuple[Conversation, list[Item]]:
        conversation_id, now = new_id("conv"), time.time()
        self._conn.execute("INSERT INTO conversations (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?)",
                           (conversation_id, int(now), now, json.dumps(metadata, ensure_ascii=False)))
        stored = self._append(conversation_id, items, now)
        return self._require(conversation_id), stored

    async def get(self, conversation_id: str) -> Conversation:
        return await self._run(self._require, conversation_id)

    def _require(self, conversation_id: str) -> Conversation:
        row = self._conn.execute(SELECT_CONVERSATIONS + " WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id!r} does not exist", code="conversation_not_found")
        return _conversation(row)

    async def update_metadata(self, conversation_id: str, metadata: dict[str, str]) -> Conversation:
        return await self._run(self._write, self._update_metadata, conversation_id, metadata)

    def _update_metadata(self, conversation_id: str, metadata: dict[str, str]) -> Conversation:
        # Renaming does not move a conversation up the list; it does change what the RAG mirror holds.
        changed = self._conn.execute("UPDATE conversations SET metadata = ?, version = version + 1 WHERE id = ?",
                                     (json.dumps(metadata, ensure_ascii=False), conversation_id)).rowcount
        if not changed:
            self._require(conversation_id)
        return self._require(conversation_id)

    async def delete(self, conversation_id: str) -> None:
        await self._run(self._write, self._delete, conversation_id)

    def _delete(self, conversation_id: str) -> None:
        conn = self._conn
        row = conn.execute("SELECT rag_document_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id!r} does not exist", code="conversation_not_found")
        if row[0]:
            conn.execute("INSERT OR IGNORE INTO rag_deletions (document_id, conversation_id) VALUES (?, ?)",
                         (row[0], conversation_id))
        # Items first, explicitly, so their full-text rows go through the delete trigger.
        conn.execute("DELETE FROM items WHERE conversation_id = ?", (conversation_id,))
        conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    async def recent(self, after: str | None, limit: int, order: str) -> Page:
        """Conversations by last change, newest first for `desc`."""
        return await self._run(self._recent, after, limit, order)

    def _recent(self, after: str | None, limit: int, order: str) -> Page:
        where, params = "", []
        if after is not None:
            cursor = self._conn.execute("SELECT updated_at, rowid FROM conversations WHERE id = ?",
                                        (after,)).fetchone()
            if cursor is None:
                raise BadRequest(f"after: conversation {after!r} does not exist", param="after")
            op = "<" if order == "desc" else ">"
            where, params = f"WHERE (updated_at, rowid) {op} (?, ?)", list(cursor)
        direction = "DESC" if order == "desc" else "ASC"
        rows = self._conn.execute(
            SELECT_CONVERSATIONS + f" {where} ORDER BY updated_at {direction}, rowid {direction} LIMIT ?",
            (*params, limit + 1)).fetchall()
        return Page([_conversation(row) for row in rows[:limit]], len(rows) > limit)

    async def several(self, ids: list[str]) -> dict[str, Conversation]:
        """The conversations among `ids` that exist (search hits may name deleted ones)."""
        return await self._run(self._several, ids)

    def _several(self, ids: list[str]) -> dict[str, Conversation]:
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(SELECT_CONVERSATIONS + f" WHERE id IN ({marks})", ids).fetchall() if ids else []
        return {row[0]: _conversation(row) for row in rows}

    # --- items ---------------------------------------------------------------------------------------

    async def append(self, conversation_id: str, items: list[NewItem]) -> list[Item]:
        """Add items in one transaction; NotFound when the conversation is gone."""
        return await self._run(self._write, self._append_checked, conversation_id, items)

    def _append_checked(self, conversation_id: str, items: list[NewItem]) -> list[Item]:
        self._require(conversation_id)
        return self._append(conversation_id, items, time.time())

    def _append(self, conversation_id: str, items: list[NewItem], now: float) -> list[Item]:
        conn = self._conn
        stored = []
        for item in items:
            row = (new_id("msg"), conversation_id, int(now), item.role, item.status,
                   json.dumps(item.parts, ensure_ascii=False), item.text, json.dumps(item.extra, ensure_ascii=False))
            seq = conn.execute("INSERT INTO items (id, conversation_id, created_at, role, status, content, text, "
                               "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid
            stored.append(Item(seq or 0, row[0], conversation_id, int(now), item.role, item.status, item.parts,
                               item.text, item.extra))
        if stored:
            first_user = next((item.text for item in items if item.role == "user"), None)
            conn.execute("UPDATE conversations SET updated_at = ?, version = version + 1, "
                         "auto_title = COALESCE(auto_title, ?) WHERE id = ?",
                         (now, title_from(first_user) if first_user else None, conversation_id))
        return stored

    async def rewrite(self, conversation_id: str, item_id: str, item: NewItem) -> None:
        """Replace a stored item's content and status (an answer still streaming, or finished)."""
        await self._run(self._write, self._rewrite, conversation_id, item_id, item)

    def _rewrite(self, conversation_id: str, item_id: str, item: NewItem) -> None:
        self._item_row(conversation_id, item_id)
        self._conn.execute("UPDATE items SET status = ?, content = ?, text = ?, extra = ? WHERE id = ?",
                           (item.status, json.dumps(item.parts, ensure_ascii=False), item.text,
                            json.dumps(item.extra, ensure_ascii=False), item_id))
        self._conn.execute("UPDATE conversations SET updated_at = ?, version = version + 1 WHERE id = ?",
                           (time.time(), conversation_id))

    async def items(self, conversation_id: str, after: str | None, limit: int, order: str) -> Page:
        return await self._run(self._items, conversation_id, after, limit, order)

    def _items(self, conversation_id: str, after: str | None, limit: int, order: str) -> Page:
        self._require(conversation_id)
        where, params = "conversation_id = ?", [conversation_id]
        if after is not None:
            row = self._conn.execute("SELECT seq FROM items WHERE id = ? AND conversation_id = ?",
                                     (after, conversation_id)).fetchone()
            if row is None:
                raise BadRequest(f"after: item {after!r} is not in this conversation", param="after")
            where += f" AND seq {'<' if order == 'desc' else '>'} ?"
            params.append(row[0])
        direction = "DESC" if order == "desc" else "ASC"
        rows = self._conn.execute(SELECT_ITEMS + f" WHERE {where} ORDER BY seq {direction} LIMIT ?",
                                  (*params, limit + 1)).fetchall()
        return Page([_item(row) for row in rows[:limit]], len(rows) > limit)

    async def item(self, conversation_id: str, item_id: str) -> Item:
        return await self._run(self._item_row, conversation_id, item_id)

    def _item_row(self, conversation_id: str, item_id: str) -> Item:
        self._require(conversation_id)
        row = self._conn.execute(SELECT_ITEMS + " WHERE id = ? AND conversation_id = ?",
                                 (item_id, conversation_id)).fetchone()
        if row is None:
            raise NotFound(f"item {item_id!r} is not in conversation {conversation_id!r}", code="item_not_found")
        return _item(row)

    async def delete_item(self, conversation_id: str, item_id: str) -> Conversation:
        return await self._run(self._write, self._delete_item, conversation_id, item_id)

    def _delete_item(self, conversation_id: str, item_id: str) -> Conversation:
        self._item_row(conversation_id, item_id)
        self._conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
        self._conn.execute("UPDATE conversations SET updated_at = ?, version = version + 1 WHERE id = ?",
                           (time.time(), conversation_id))
        return self._require(conversation_id)

    async def history(self, conversation_id: str, max_items: int) -> History:
        """Every instruction (system, developer) and the newest `max_items` other items, in order."""
        return await self._run(self._history, conversation_id, max_items)

    def _history(self, conversation_id: str, max_items: int) -> History:
        self._require(conversation_id)
        instructions = self._conn.execute(
            SELECT_ITEMS + f" WHERE conversation_id = ? AND role IN ({INSTRUCTION_MARKS}) ORDER BY seq",
            (conversation_id, *INSTRUCTION_ROLES)).fetchall()
        newest = [_item(row) for row in reversed(self._conn.execute(
            SELECT_ITEMS + f" WHERE conversation_id = ? AND role NOT IN ({INSTRUCTION_MARKS}) "
            "ORDER BY seq DESC LIMIT ?", (conversation_id, *INSTRUCTION_ROLES, max_items)).fetchall())]
        older = 0
        if len(newest) == max_items:
            # The window may start inside a turn; that turn's rest counts with the older ones.
            while len(newest) > 1 and newest[0].role != "user":
                newest.pop(0)
            older = self._conn.execute(
                "SELECT COUNT(*) FROM items WHERE conversation_id = ? AND role = 'user' AND seq < ?",
                (conversation_id, newest[0].seq)).fetchone()[0]
        return History([_item(row) for row in instructions], newest, older)

    async def search(self, query: str, limit: int) -> list[TextHit]:
        return await self._run(search_items, self._conn, query, limit)

    # --- the RAG mirror's bookkeeping ----------------------------------------------------------------

    async def rag_pending(self, limit: int) -> list[tuple[str, int]]:
        """(conversation id, version) of conversations that changed since the mirror last took them."""
        return await self._run(lambda: self._conn.execute(
            "SELECT id, version FROM conversations WHERE version <> rag_version ORDER BY updated_at LIMIT ?",
            (limit,)).fetchall())

    async def transcript(self, conversation_id: str) -> tuple[str | None, list[Item]] | None:
        """The title and every item, or None when the conversation is gone."""
        return await self._run(self._transcript, conversation_id)

    def _transcript(self, conversation_id: str) -> tuple[str | None, list[Item]] | None:
        try:
            conversation = self._require(conversation_id)
        except NotFound:
            return None
        rows = self._conn.execute(SELECT_ITEMS + " WHERE conversation_id = ? ORDER BY seq",
                                  (conversation_id,)).fetchall()
        return conversation.title, [_item(row) for row in rows]

    async def rag_synced(self, conversation_id: str, version: int, document_id: str | None) -> bool:
        """Record what the mirror now holds; False when the conversation was deleted meanwhile."""
        return await self._run(self._write, self._rag_synced, conversation_id, version, document_id)

    def _rag_synced(self, conversation_id: str, version: int, document_id: str | None) -> bool:
        changed = self._conn.execute(
            "UPDATE conversations SET rag_version = ?, rag_document_id = COALESCE(?, rag_document_id) WHERE id = ?",
            (version, document_id, conversation_id)).rowcount
        if not changed and document_id:
            self._conn.execute("INSERT OR IGNORE INTO rag_deletions (document_id, conversation_id) VALUES (?, ?)",
                               (document_id, conversation_id))
        return bool(changed)

    async def rag_deletions(self) -> list[tuple[str, str]]:
        """(document id, conversation id) of mirrored documents still to remove."""
        return await self._run(lambda: self._conn.execute(
            "SELECT document_id, conversation_id FROM rag_deletions").fetchall())

    async def rag_deleted(self, document_id: str) -> None:
        await self._run(self._write, lambda: self._conn.execute(
            "DELETE FROM rag_deletions WHERE document_id = ?", (document_id,)))
