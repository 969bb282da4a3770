"""Fitting a conversation into the model's context: estimate tokens, keep the instructions, drop old turns.

The gateway does not have the backend's tokenizer, so it estimates. The estimate is tuned to land at or
above the bundled model's real count for prose and code; where it lands below (digits, Hangul on a
tokenizer that splits it into bytes), the backend answers `context_length_exceeded` with the real count,
and the conversation learns its own ratio from that (chat.py), so the next fit is right first time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ASCII_LETTERS = re.compile(r"[A-Za-z]")
DIGITS = re.compile(r"[0-9]")
ASCII_SPACE = re.compile(r"[ \t\r\n]")
# Tokens per character class (per UTF-8 byte outside ASCII), from SmolLM2's tokenizer: prose is about
# 0.23 tokens per letter, digits are one token each, Korean about 0.9 per byte.
LETTER, DIGIT, SPACE, PUNCTUATION, NON_ASCII_BYTE = 0.3, 1.0, 0.2, 0.8, 1.0
# Chat-template tokens around each message (<|im_start|>role\n ... <|im_end|>\n), and once per prompt
# (the generation prompt, and the default system prompt some templates add when there is none).
PER_MESSAGE, PER_PROMPT = 6, 32


def estimate_text(text: str) -> float:
    """Estimated tokens of `text`, from counts of its character classes (C-speed regex, no per-char loop)."""
    if not text:
        return 0.0
    ascii_chars = len(text.encode("ascii", "ignore"))
    non_ascii_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_chars
    letters = len(ASCII_LETTERS.findall(text))
    digits = len(DIGITS.findall(text))
    spaces = len(ASCII_SPACE.findall(text))
    punctuation = ascii_chars - letters - digits - spaces
    return (LETTER * letters + DIGIT * digits + SPACE * spaces + PUNCTUATION * punctuation
            + NON_ASCII_BYTE * non_ascii_bytes)


def estimate_message(message: dict) -> float:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return PER_MESSAGE + estimate_text(content if isinstance(content, str) else "")


def split_turns(messages: list[dict]) -> list[list[dict]]:
    """Group messages into turns: each user message starts one; what comes before the first is a turn too."""
    turns: list[list[dict]] = []
    for message in messages:
        if message.get("role") == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


@dataclass(frozen=True)
class Fit:
    """The messages to send, how many stored turns were left out, and the raw estimate of the prompt."""

    messages: list[dict]
    kept_turns: int
    omitted_turns: int
    estimate: float


def fit_history(instructions: list[dict], turns: list[list[dict]], new: list[dict], budget: int,
                ratio: float = 1.0, max_turns: int | None = None) -> Fit:
    """Keep every instruction and the new messages, then as many of the newest turns as fit in `budget`.

    `ratio` scales the estimate (learned per conversation); `max_turns` caps the turns kept, so a retry
    after the backend said "too long" always sends less than before. Turns are kept whole and in order:
    a gap in the middle of a conversation would confuse the model more than a shorter memory.
    """
    fixed = PER_PROMPT + sum(estimate_message(m) for m in instructions) + sum(estimate_message(m) for m in new)
    used = fixed
    kept: list[list[dict]] = []
    limit = len(turns) if max_turns is None else max(0, min(max_turns, len(turns)))
    for turn in reversed(turns):
        if len(kept) >= limit:
            break
        cost = sum(estimate_message(m) for m in turn)
        if math.ceil((used + cost) * ratio) > budget:
            break
        used += cost
        kept.append(turn)
    history = [message for turn in reversed(kept) for message in turn]
    return Fit([*instructions, *history, *new], len(kept), len(turns) - len(kept), used)
