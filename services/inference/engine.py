"""The loaded model: prompt building and the token loop. Only one thread may use it at a time."""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import jinja2
import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from services.common.errors import BadRequest, SuiteError
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)


class ChatTemplateError(SuiteError):
    """The chat template is missing or tried something the sandbox forbids."""

    status = 500
    type = "server_error"
    code = "chat_template_error"


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop", "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    prompt_seconds: float
    decode_seconds: float

    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first over the time after the first."""
        if self.completion_tokens < 2 or self.decode_seconds <= 0:
            return 0.0
        return (self.completion_tokens - 1) / self.decode_seconds


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split into (safe to emit, held back as a possible stop prefix, stop found)."""
    if not stops:
        return text, "", False
    hits = [i for i in (text.find(s) for s in stops) if i != -1]
    if hits:
        return text[: min(hits)], "", True
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), keep, -1):
            if text.endswith(stop[:n]):
                keep = n
                break
    return text[: len(text) - keep], text[len(text) - keep :], False


def sandboxed_formatter(template: str, bos_token: str, eos_token: str) -> Jinja2ChatFormatter:
    """llama-cpp-python's formatter, refused unless it renders in Jinja's immutable sandbox."""
    formatter = Jinja2ChatFormatter(template=template, bos_token=bos_token, eos_token=eos_token)
    # The sandbox lives inside llama-cpp-python; check it so an upgrade cannot silently drop it.
    environment = getattr(getattr(formatter, "_environment", None), "environment", None)
    if not isinstance(environment, ImmutableSandboxedEnvironment):
        raise RuntimeError("llama-cpp-python's chat formatter no longer renders in a Jinja sandbox")
    return formatter


class ModelEngine:
    """A Llama model plus its chat formatter; `run` is called from one worker thread at a time."""

    def __init__(self, llm: llama_cpp.Llama, settings: InferenceSettings, chat_template: str | None) -> None:
        self.llm = llm
        self.settings = settings
        self.n_ctx = llm.n_ctx()
        self.name = settings.model_path().name
        self._formatter = None
        if chat_template:
            special = lambda token: llm.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
            self._formatter = sandboxed_formatter(chat_template, special(llm.token_bos()), special(llm.token_eos()))

    @classmethod
    def load(cls, settings: InferenceSettings) -> ModelEngine:
        """Load the GGUF (blocking, seconds for big models); the lifespan has checked that the file exists."""
        path = settings.model_path()
        started = time.perf_counter()
        # verbose=False would point fds 1 and 2 at /dev/null while loading, swallowing every other
        # thread's logs (uvicorn's included); catching Python-level stderr only affects llama's prints.
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=settings.n_ctx,
                    n_gpu_layers=settings.n_gpu_layers,
                    n_threads=settings.threads(),
                    n_threads_batch=settings.threads(),
                    n_batch=settings.n_batch,
                    verbose=True,
                )
        except Exception:
            log.error("llama.cpp output while loading %s:\n%s", path.name, captured.getvalue()[-4000:])
            raise
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llm.verbose = False
        log.debug("llama.cpp output while loading:\n%s", captured.getvalue())
        if settings.chat_template_file:
            template: str | None = settings.chat_template_file.read_text(encoding="utf-8")
        else:
            template = llm.metadata.get("tokenizer.chat_template")
        log.info("loaded %s in %.2fs (n_ctx=%d)", path.name, time.perf_counter() - started, llm.n_ctx())
        return cls(llm, settings, template)

    def close(self) -> None:
        self.llm.close()

    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], tuple[str, ...]]:
        """Render the chat template (sandboxed) and tokenize; returns tokens and template stops."""
        if self._formatter is None:
            raise ChatTemplateError("the model has no chat template; use /v1/completions or set CHAT_TEMPLATE_FILE")
        try:
            result = self._formatter(messages=cast(Any, messages))
        except jinja2.exceptions.SecurityError as exc:
            log.error("chat template blocked by the sandbox: %s", exc)
            raise ChatTemplateError(f"the chat template tried an unsafe operation and was blocked: {exc}") from exc
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            # Templates reject unsupported conversations (roles out of order) with raise_exception.
            raise BadRequest(f"messages cannot be rendered by the chat template: {exc}", param="messages") from exc
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, tuple(stops)

    def text_prompt(self, prompt: str) -> list[int]:
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """The answer's token limit; a request that cannot fit the context is a 400."""
        room = self.n_ctx - prompt_tokens
        if room < 1:
            raise BadRequest(
                f"the prompt is {prompt_tokens} tokens but the context window is {self.n_ctx} tokens",
                code="context_length_exceeded", param="messages",
            )
        if max_tokens is None:
            return room
        if max_tokens > room:
            raise BadRequest(
                f"max_tokens ({max_tokens}) plus the prompt ({prompt_tokens} tokens) exceeds the context "
                f"window of {self.n_ctx} tokens; at most {room} fit",
                code="context_length_exceeded", param="max_tokens",
            )
        return max_tokens

    def run(
        self, prompt: list[int], sampling: Sampling, cancel: threading.Event, emit: Callable[[str], None] | None
    ) -> Generation:
        """Generate until a stop, the token limit or `cancel`; `emit` gets text as it becomes final."""
        llm = self.llm
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        llm.set_seed(seed % 2**32)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        held, finish, count, stop_hit = "", "length", 0, False
        started = time.perf_counter()
        first = started
        tokens = llm.generate(
            prompt, top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p, temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty, presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
        )
        try:
            for token in tokens:
                if count == 0:
                    first = time.perf_counter()
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    finish = "stop"
                    break
                count += 1
                text, held, stop_hit = split_at_stop(held + decoder.decode(llm.detokenize([token])), sampling.stop)
                if text:
                    parts.append(text)
                    if emit:
                        emit(text)
                if stop_hit:
                    finish = "stop"
                    break
                if count >= sampling.max_tokens:
                    break
        finally:
            tokens.close()
        # Text after a stop sequence, and anything of a cancelled run, is never sent.
        tail = "" if finish == "cancelled" or stop_hit else held + decoder.decode(b"", final=True)
        if tail:
            parts.append(tail)
            if emit:
                emit(tail)
        return Generation("".join(parts), finish, len(prompt), count, first - started, time.perf_counter() - first)
