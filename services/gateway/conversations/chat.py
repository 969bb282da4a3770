"""POST /v1/chat/completions with `conversation`: the stored history goes in front, the exchange is stored after."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi.responses import Response, StreamingResponse

from services.common.errors import NotFound, ServiceUnavailable
from services.gateway.conversations.context import ContextWindows, Ratios, parse_overflow
from services.gateway.conversations.items import INSTRUCTION_ROLES, is_id, parse_items
from services.gateway.conversations.memory import PER_MESSAGE, Fit, fit_history, split_turns
from services.gateway.conversations.store import ConversationStore
from services.gateway.conversations.turns import RecordedStream, StreamAnswer, TurnRecorder
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import MODEL_HEADER, REASON_HEADER, Forwarder
from services.gateway.routing import Route, Router
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

HISTORY_OMITTED_HEADER = "x-ai-suite-history-omitted"
CONVERSATION_HEADER = "x-ai-suite-conversation"
MAX_SENDS = 4  # the first try, two refits with what the backend said, then no history at all


def conversation_ref(value: object) -> str:
    """The conversation id of the request: a string, or `{"id": ...}` as OpenAI's Responses API takes it."""
    if isinstance(value, dict):
        value = value.get("id")
    if not is_id(value, "conv"):
        raise NotFound(f"conversation {value!r} does not exist", code="conversation_not_found", param="conversation")
    return str(value)


def answer_limit(body: dict) -> int | None:
    for field in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(field), int):
            return int(body[field])
    return None


@dataclass
class Prepared:
    """What one conversation request sends: instructions, stored turns and new messages, and its budget."""

    conversation_id: str
    instructions: list[dict]
    turns: list[list[dict]]
    new: list[dict]
    older_turns: int  # turns so old that they were not even loaded
    budget: int


class ConversationChat:
    """Runs a chat completion inside a stored conversation."""

    def __init__(self, settings: GatewaySettings, store: Callable[[], ConversationStore], forwarder: Forwarder,
                 router: Router, windows: ContextWindows, metrics: GatewayMetrics,
                 on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.store = store
        self.forwarder = forwarder
        self.router = router
        self.windows = windows
        self.ratios = Ratios()
        self.metrics = metrics
        self.on_change = on_change

    async def complete(self, path: str, body: dict, route: Route) -> Response:
        conversation_id = conversation_ref(body.get("conversation"))
        # Checked before anything is stored or sent: a bad role is a 400, too many messages a 413.
        messages = parse_items(body.get("messages"), self.settings.conversation_max_items, param="messages")
        store = self.store()
        new_items = [m for m in messages if m.role not in INSTRUCTION_ROLES]
        request_instructions = [{"role": m.role, "content": m.text} for m in messages if m.role in INSTRUCTION_ROLES]
        prepared = await self._prepare(store, conversation_id, route, body, request_instructions,
                                       [{"role": m.role, "content": m.text} for m in new_items])
        response, fit = await self._send(path, body, route, prepared)
        omitted = fit.omitted_turns + prepared.older_turns
        if omitted:
            self.metrics.turns_omitted.inc(omitted)
            self.metrics.history_trims.inc()
        headers = {HISTORY_OMITTED_HEADER: str(omitted), CONVERSATION_HEADER: conversation_id}
        if response.status_code >= 400:
            response.headers.update(headers)
            return response  # nothing happened, so nothing is stored
        recorder = TurnRecorder(store, conversation_id, new_items, response.headers.get(MODEL_HEADER, ""),
                                unquote(response.headers.get(REASON_HEADER, "")), self.on_change)
        def learn(prompt_tokens: int) -> float:
            """The backend's real count of the prompt just sent tunes this conversation's estimates."""
            return self.ratios.learn(conversation_id, prompt_tokens, fit.estimate)

        if isinstance(response, StreamingResponse):
            return RecordedStream(response, recorder, StreamAnswer(), headers, learn,
                                  checkpoint_seconds=self.settings.conversation_checkpoint_seconds)
        text, status, prompt_tokens = _answer(bytes(response.body))
        if prompt_tokens:
            learn(prompt_tokens)
        if not await recorder.save(text, status):
            raise ServiceUnavailable("the answer could not be stored in the conversation; try again",
                                     code="conversation_store_unavailable")
        response.headers.update(headers)
        return response

    async def _prepare(self, store: ConversationStore, conversation_id: str, route: Route, body: dict,
                       request_instructions: list[dict], new: list[dict]) -> Prepared:
        deployment = self.router.deployments[route.model]
        n_ctx = await self.windows.window(deployment)
        budget = self._budget(n_ctx, body)
        # No message costs less than its template tokens, so more than this many could never fit.
        history = await store.history(conversation_id, max(16, budget // PER_MESSAGE))
        stored = [item.as_chat_message() for item in history.items]
        instructions = [item.as_chat_message() for item in history.instructions] + request_instructions
        return Prepared(conversation_id, instructions, split_turns(stored), new, history.older_turns, budget)

    def _budget(self, n_ctx: int, body: dict) -> int:
        reserve = answer_limit(body) or self.settings.conversation_answer_reserve
        return n_ctx - reserve - self.settings.conversation_context_margin

    async def _send(self, path: str, body: dict, route: Route, prepared: Prepared) -> tuple[Response, Fit]:
        """Send the fitted request; while the backend says it is too long, learn from it and send less."""
        ratio = self.ratios.get(prepared.conversation_id)
        cap: int | None = None
        sends = 0
        while True:
            fit = fit_history(prepared.instructions, prepared.turns, prepared.new, prepared.budget, ratio, cap)
            send = {key: value for key, value in body.items() if key != "conversation"}
            send["messages"] = fit.messages
            raw = json.dumps(send, ensure_ascii=False).encode()
            response = await self.forwarder.forward(path, raw, send, route)
            sends += 1
            overflow = None if isinstance(response, StreamingResponse) else parse_overflow(
                response.status_code, bytes(response.body))
            if overflow is None or fit.kept_turns == 0:
                return response, fit
            self.metrics.context_refits.inc()
            if overflow.n_ctx:
                self.windows.learn(self.router.deployments[route.model].api_base, overflow.n_ctx)
                prepared.budget = self._budget(overflow.n_ctx, body)
            if overflow.prompt_tokens:
                ratio = self.ratios.learn(prepared.conversation_id, overflow.prompt_tokens, fit.estimate)
            # Always fewer turns than last time, and none on the last send, so this loop ends.
            cap = 0 if sends >= MAX_SENDS - 1 else fit.kept_turns - 1
            log.info("conversation %s did not fit (%s); sending again with at most %d turns",
                     prepared.conversation_id, overflow, cap)


def _answer(body: bytes) -> tuple[str, str, int | None]:
    """Text, item status and prompt tokens of a non-streamed chat completion."""
    try:
        payload = json.loads(body)
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        log.warning("a chat completion without a readable answer was stored as empty")
        return "", "incomplete", None
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return str(text), status, prompt_tokens
