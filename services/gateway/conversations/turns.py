"""Storing one exchange of a chat with `conversation`: the new messages and the answer, assembled from a stream."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.common.errors import NotFound, error_body
from services.gateway.conversations.items import NewItem
from services.gateway.conversations.store import ConversationStore
from services.gateway.proxy import last_event_end

log = logging.getLogger(__name__)

DONE = b"data: [DONE]"


CHECKPOINT_SECONDS = 1.0


class TurnRecorder:
    """Stores the exchange: the request's new messages and the answer, in one transaction.

    A streamed answer is stored as it comes: `begin` writes the new messages with an empty answer marked
    `in_progress`, `checkpoint` rewrites its text now and then, and `save` writes its final text and status.
    If the gateway dies mid-stream, the text up to the last checkpoint stays, and the store marks it
    `incomplete` when it is next opened.
    """

    def __init__(self, store: ConversationStore, conversation_id: str, new_items: list[NewItem], model: str,
                 reason: str, on_saved: Callable[[], None]) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.new_items = new_items
        self.model = model
        self.reason = reason
        self.on_saved = on_saved
        self.saved = False
        self.answer_id: str | None = None
        self.checkpointed = ""

    def _answer(self, text: str, status: str) -> NewItem:
        return NewItem.of_text("assistant", text, status, model=self.model, route_reason=self.reason)

    async def begin(self) -> None:
        """Store the new messages and an empty answer `in_progress`; on failure the turn is stored at the end."""
        try:
            stored = await self.store.append(self.conversation_id,
                                             [*self.new_items, self._answer("", "in_progress")])
        except (NotFound, sqlite3.Error) as exc:
            log.warning("conversation %s: the answer will be stored when it ends: %s", self.conversation_id, exc)
            return
        self.answer_id = stored[-1].id

    async def checkpoint(self, text: str) -> None:
        """Keep the answer so far (still `in_progress`)."""
        if self.answer_id is None or self.saved or text == self.checkpointed:
            return
        try:
            await self.store.rewrite(self.conversation_id, self.answer_id, self._answer(text, "in_progress"))
            self.checkpointed = text
        except (NotFound, sqlite3.Error) as exc:
            log.warning("conversation %s: answer checkpoint failed: %s", self.conversation_id, exc)

    async def save(self, text: str, status: str) -> bool:
        """Store the turn (an empty unfinished answer is left out); False when the store failed."""
        if self.saved:
            return True
        self.saved = True
        if self.answer_id is not None:
            return await self._finish(text, status)
        items = list(self.new_items)
        if text or status == "completed":
            items.append(NewItem.of_text("assistant", text, status, model=self.model, route_reason=self.reason))
        return await self._stored(self.store.append(self.conversation_id, items), "the exchange")

    async def _finish(self, text: str, status: str) -> bool:
        assert self.answer_id is not None
        write: Awaitable[object]
        if text or status == "completed":
            write = self.store.rewrite(self.conversation_id, self.answer_id, self._answer(text, status))
        else:
            write = self.store.delete_item(self.conversation_id, self.answer_id)
        return await self._stored(write, "the answer")

    async def _stored(self, write: Awaitable[object], what: str) -> bool:
        """Run one store write of the turn; True when it is kept (or its conversation is gone), False on failure."""
        try:
            await write
        except NotFound:
            log.info("conversation %s was deleted while it was answered; the answer is not kept",
                     self.conversation_id)
            return True
        except sqlite3.Error as exc:
            log.error("conversation %s: %s could not be stored: %s", self.conversation_id, what, exc)
            return False
        self.on_saved()
        return True


class StreamAnswer:
    """The answer as its SSE events pass: text deltas, finish reason, usage, and whether it ended well."""

    def __init__(self) -> None:
        self._pending = b""
        self._parts: list[str] = []
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.broken = False
        self.done = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def status(self) -> str:
        """OpenAI's item status: an answer cut short (stopped, broken or at max_tokens) is incomplete."""
        finished = self.done and not self.broken and self.finish_reason != "length"
        return "completed" if finished else "incomplete"

    def feed(self, piece: bytes) -> None:
        self._pending += piece
        cut = last_event_end(self._pending)
        if cut:
            events, self._pending = self._pending[:cut], self._pending[cut:]
            for event in events.replace(b"\r\n", b"\n").split(b"\n\n"):
                self._event(event)

    def flush(self) -> None:
        """Take a last event that ended without its blank line (the stream is over)."""
        if self._pending.strip():
            self._event(self._pending.replace(b"\r\n", b"\n"))
        self._pending = b""

    def _event(self, event: bytes) -> None:
        data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data:
            return
        if data.strip() == b"[DONE]":
            self.done = True
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        if "error" in payload:
            self.broken = True
        usage = payload.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self.prompt_tokens = usage["prompt_tokens"]
        choices = payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                self._parts.append(delta["content"])
            if choices[0].get("finish_reason"):
                self.finish_reason = choices[0]["finish_reason"]


def not_saved_event() -> bytes:
    error = error_body("the answer was given but could not be stored in the conversation", "server_error",
                       "conversation_not_saved")
    return b"data: " + json.dumps(error).encode() + b"\n\n"


class RecordedStream(StreamingResponse):
    """Relays the backend's SSE bytes unchanged while assembling the answer, and stores the exchange.

    The final `data: [DONE]` is held back until the exchange is committed, so a client that has seen it
    can rely on the items being there. However the stream ends (the client stops reading, the backend
    breaks), what was produced is stored, marked incomplete.
    """

    def __init__(self, upstream: StreamingResponse, recorder: TurnRecorder, answer: StreamAnswer,
                 headers: dict[str, str], on_usage: Callable[[int], object],
                 checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.upstream_body = upstream.body_iterator
        self.checkpoint_seconds = checkpoint_seconds
        self.recorder = recorder
        self.answer = answer
        self.on_usage = on_usage
        passed = {k: v for k, v in upstream.headers.items() if k != "content-length"}
        super().__init__(self._tee(), status_code=upstream.status_code, headers={**passed, **headers},
                         media_type=upstream.media_type)

    async def _tee(self) -> AsyncIterator[bytes]:
        await self.recorder.begin()
        last_checkpoint = time.monotonic()
        async for piece in self.upstream_body:
            chunk = piece.encode() if isinstance(piece, str) else bytes(piece)
            self.answer.feed(chunk)
            if not self.answer.done and time.monotonic() - last_checkpoint >= self.checkpoint_seconds:
                await self.recorder.checkpoint(self.answer.text)
                last_checkpoint = time.monotonic()
            if self.answer.done and not self.recorder.saved:
                if self.answer.prompt_tokens:
                    self.on_usage(self.answer.prompt_tokens)  # a usage chunk (stream_options.include_usage)
                if not await self.recorder.save(self.answer.text, self.answer.status):
                    at = chunk.find(DONE)
                    chunk = chunk[:at] + not_saved_event() + chunk[at:] if at >= 0 else chunk + not_saved_event()
            yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: after a client disconnect this runs in a cancelled scope, and the backend must
            # still be told to stop, and what was produced must still be stored.
            with anyio.CancelScope(shield=True):
                await _close(self.body_iterator)
                await _close(self.upstream_body)
                if not self.recorder.saved:
                    self.answer.flush()
                    await self.recorder.save(self.answer.text, self.answer.status)


async def _close(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
