"""The loaded model, prompt building (sandboxed chat template) and the context budget."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import jinja2
import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import _logger
from llama_cpp._internals import LlamaContext, LlamaModel
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
    cached_tokens: int = 0  # prompt tokens whose KV cache the slot already held


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



class Tokenizer(Protocol):
    """What prompt building needs of a model: `llama_cpp.Llama` and its `LlamaModel` both fit."""

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]: ...

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes: ...

    def token_bos(self) -> int: ...

    def token_eos(self) -> int: ...


class Prompts:
    """Chat and text prompts as tokens, the chat template rendered in Jinja's sandbox."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str | None) -> None:
        self.tokenizer = tokenizer
        self._formatter = None
        if chat_template:
            special = lambda token: tokenizer.detokenize([token], special=True).decode("utf-8", "replace")  # noqa: E731
            self._formatter = sandboxed_formatter(chat_template, special(tokenizer.token_bos()),
                                                  special(tokenizer.token_eos()))

    def chat(self, messages: list[dict[str, Any]]) -> tuple[list[int], tuple[str, ...]]:
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
        tokens = self.tokenizer.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                                         special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, tuple(stops)

    def text(self, prompt: str) -> list[int]:
        return self.tokenizer.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)


class ModelEngine:
    """The loaded model and one llama.cpp context with a KV sequence per slot (N_PARALLEL of them).

    Only the batch loop's thread touches `context`; prompt building and the budget are safe anywhere.
    """

    def __init__(self, model: LlamaModel, context: LlamaContext, settings: InferenceSettings,
                 chat_template: str | None) -> None:
        self.llm = model
        self.context = context
        self.settings = settings
        self.n_parallel = settings.n_parallel
        # Each sequence has its own part of the KV cache: N_CTX tokens, whatever the others hold.
        self.n_ctx = llama_cpp.llama_n_ctx_seq(context.ctx)
        self.n_batch = llama_cpp.llama_n_batch(context.ctx)
        self.name = settings.model_path().name
        self.prompts = Prompts(model, chat_template)

    @classmethod
    def load(cls, settings: InferenceSettings) -> ModelEngine:
        """Load the GGUF (blocking, seconds for big models); the lifespan has checked that the file exists."""
        path = settings.model_path()
        started = time.perf_counter()
        # verbose=False would point fds 1 and 2 at /dev/null while loading, swallowing every other
        # thread's logs (uvicorn's included); catching Python-level stderr only affects llama's prints.
        captured = io.StringIO()
        _logger.set_verbose(True)
        try:
            with contextlib.redirect_stderr(captured):
                llama_cpp.llama_backend_init()
                model = LlamaModel(path_model=str(path), params=_model_params(settings), verbose=True)
                try:
                    context = LlamaContext(model=model, params=_context_params(settings), verbose=True)
                except BaseException:
                    model.close()
                    raise
        except Exception:
            log.error("llama.cpp output while loading %s:\n%s", path.name, captured.getvalue()[-4000:])
            raise
        finally:
            _logger.set_verbose(False)
        log.debug("llama.cpp output while loading:\n%s", captured.getvalue())
        if settings.chat_template_file:
            template: str | None = settings.chat_template_file.read_text(encoding="utf-8")
        else:
            template = model.metadata().get("tokenizer.chat_template")
        engine = cls(model, context, settings, template)
        log.info("loaded %s in %.2fs (%d slots of %d tokens)", path.name, time.perf_counter() - started,
                 engine.n_parallel, engine.n_ctx)
        return engine

    def close(self) -> None:
        self.context.close()
        self.llm.close()

    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], tuple[str, ...]]:
        return self.prompts.chat(messages)

    def text_prompt(self, prompt: str) -> list[int]:
        return self.prompts.text(prompt)

    def budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """The answer's token limit; a prompt of no tokens, or one that cannot fit the context, is a 400."""
        if prompt_tokens < 1:  # nothing to decode, so no logits to sample from: the slot would wait forever
            raise BadRequest("the prompt is empty: it must hold at least one token", code="empty_prompt",
                             param="prompt")
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


def _model_params(settings: InferenceSettings) -> llama_cpp.llama_model_params:
    params = llama_cpp.llama_model_default_params()
    # llama.cpp reads INT32_MAX as "every layer".
    params.n_gpu_layers = 0x7FFFFFFF if settings.n_gpu_layers == -1 else settings.n_gpu_layers
    return params


def _context_params(settings: InferenceSettings) -> llama_cpp.llama_context_params:
    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = settings.n_parallel
    params.n_ctx = settings.n_ctx * settings.n_parallel
    # One KV stream per sequence: attention reads only its own slot's cells (llama-server's default
    # for a fixed slot count; a unified buffer only pays off when slots share a long prefix).
    params.kv_unified = False
    # Every running slot adds a token to each step, so a step must have room for one token per slot.
    params.n_batch = params.n_ubatch = max(settings.n_batch, settings.n_parallel)
    params.n_threads = params.n_threads_batch = settings.threads()
    return params
