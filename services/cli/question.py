"""Turn a prompt and piped input into one question, and pick the model that answers it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TextIO

from services.common.classify import classify

CHAT_MODEL = "chat-7b"
CODE_MODEL = "code-7b"
STDIN_LIMIT = 100_000
BACKTICK_RUN = re.compile(r"`{3,}")


@dataclass(frozen=True)
class PipedInput:
    """Text read from standard input, cut at the limit."""

    text: str
    truncated: bool = False
    original_chars: int = 0


@dataclass(frozen=True)
class ModelChoice:
    """The model that answers and why it was picked."""

    model: str
    reason: str

    def describe(self) -> str:
        return f"model: {self.model} ({self.reason})"


def read_piped(stream: TextIO, limit: int = STDIN_LIMIT) -> PipedInput:
    """Read at most `limit` characters; reading one more tells whether the input was cut."""
    text = stream.read(limit + 1)
    if len(text) <= limit:
        return PipedInput(text, False, len(text))
    rest = len(stream.read())  # drain, so the writer is not killed by a broken pipe and the size is known
    return PipedInput(text[:limit], True, len(text) + rest)


def build_question(prompt: str, context: str) -> str:
    """The user message: the prompt, then the piped text in a fence it cannot break out of."""
    prompt, context = prompt.strip(), context.strip("\n")
    if not context.strip():
        return prompt
    if not prompt:
        return context
    longest = max((len(run) for run in BACKTICK_RUN.findall(context)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{prompt}\n\n{fence}\n{context}\n{fence}"


def choose_model(
    prompt: str, context: str = "", mode: str = "auto", model: str | None = None, flag: str = "--"
) -> ModelChoice:
    """An explicit model wins, then code/chat mode, then the shared classifier on prompt and input.

    `flag` is how the user set the mode (`--` on the command line, `/` in a session), shown as the reason.
    """
    if model:
        return ModelChoice(model, f"{flag}model")
    if mode == "code":
        return ModelChoice(CODE_MODEL, f"{flag}code")
    if mode == "chat":
        return ModelChoice(CHAT_MODEL, f"{flag}chat")
    choice = classify(prompt) if prompt.strip() else None
    if choice is not None and choice.kind == "code":
        return ModelChoice(CODE_MODEL, choice.reason)
    if context.strip():
        piped = classify(context)
        if piped.kind == "code":
            return ModelChoice(CODE_MODEL, f"{piped.reason}, in piped input")
    return ModelChoice(CHAT_MODEL, choice.reason if choice else "no coding signal")
