"""Conversation items in OpenAI's shapes: checking what clients send, and building what the API answers."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import BadRequest, PayloadTooLarge

ROLES = ("user", "assistant", "system", "developer")
# Roles that configure the model rather than take part in the exchange; they are never trimmed.
INSTRUCTION_ROLES = ("system", "developer")
STATUSES = ("completed", "incomplete", "in_progress")
TEXT_PARTS = ("input_text", "output_text", "text")
ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
TITLE_CHARS = 80
# Lists page like OpenAI's: `limit` from 1 to PAGE_MAX, PAGE_DEFAULT when absent; a search is at most QUERY_CHARS.
PAGE_DEFAULT, PAGE_MAX = 20, 100
QUERY_CHARS = 1000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def is_id(value: object, prefix: str) -> bool:
    """Whether `value` has the form of an id with this prefix (`conv`, `msg`)."""
    return isinstance(value, str) and value.startswith(prefix + "_") and bool(ID.match(value[len(prefix) + 1:]))


@dataclass(frozen=True)
class NewItem:
    """A message item about to be stored: its parts in OpenAI's content shape, and their plain text."""

    role: str
    parts: list[dict[str, Any]]
    status: str = "completed"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        # Joined without a separator, as the inference service joins text parts for the chat template.
        return "".join(str(part.get("text") or part.get("refusal") or "") for part in self.parts)

    @classmethod
    def of_text(cls, role: str, text: str, status: str = "completed", **extra: str) -> NewItem:
        return cls(role, [text_part(role, text)], status, {k: v for k, v in extra.items() if v})


def text_part(role: str, text: str) -> dict[str, Any]:
    """One text part of the kind OpenAI uses for the role: output_text for answers, input_text otherwise."""
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}


def _part(role: str, part: object, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise BadRequest(f"{where} must be a content part object", param=where)
    kind = part.get("type")
    if kind == "refusal" and role == "assistant" and isinstance(part.get("refusal"), str):
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind not in TEXT_PARTS:
        raise BadRequest(f"{where}: content parts of type {kind!r} are not supported; use input_text, "
                         "output_text or text", code="unsupported_content", param=where)
    if not isinstance(part.get("text"), str):
        raise BadRequest(f"{where}.text must be a string", param=f"{where}.text")
    return text_part(role, part["text"])


def parse_message(raw: object, where: str) -> NewItem:
    """A message item, or a chat message, as a client sent it; BadRequest names what is wrong."""
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object", param=where)
    kind = raw.get("type", "message")
    if kind != "message":
        raise BadRequest(f"{where}: only message items are supported, not {kind!r}", param=f"{where}.type")
    role = raw.get("role")
    if role not in ROLES:
        raise BadRequest(f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}", code="invalid_role",
                         param=f"{where}.role")
    content = raw.get("content")
    if isinstance(content, str):
        parts = [text_part(role, content)]
    elif isinstance(content, list):
        parts = [_part(role, part, f"{where}.content[{n}]") for n, part in enumerate(content)]
    else:
        raise BadRequest(f"{where}.content must be a string or a list of content parts", param=f"{where}.content")
    status = raw.get("status", "completed")
    if status not in STATUSES:
        raise BadRequest(f"{where}.status must be one of {', '.join(STATUSES)}", param=f"{where}.status")
    return NewItem(role, parts, status)


def parse_items(raw: object, limit: int, param: str = "items") -> list[NewItem]:
    """Every item of a request, all checked before anything is stored; more than `limit` is a 413."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"{param} must be a list", param=param)
    if len(raw) > limit:
        raise PayloadTooLarge(f"{param} has {len(raw)} entries; at most {limit} may be added in one request",
                              code="too_many_items", param=param)
    return [parse_message(item, f"{param}[{n}]") for n, item in enumerate(raw)]


def parse_metadata(raw: object) -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, keys up to 64 characters, string values up to 512."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("metadata must be an object of string values", param="metadata")
    if len(raw) > METADATA_PAIRS:
        raise BadRequest(f"metadata may hold at most {METADATA_PAIRS} pairs", param="metadata")
    for key, value in raw.items():
        if len(key) > METADATA_KEY_CHARS:
            raise BadRequest(f"metadata keys may have at most {METADATA_KEY_CHARS} characters", param="metadata")
        if not isinstance(value, str) or len(value) > METADATA_VALUE_CHARS:
            raise BadRequest(f"metadata[{key!r}] must be a string of at most {METADATA_VALUE_CHARS} characters",
                             param=f"metadata.{key}")
    return dict(raw)


def title_from(text: str) -> str | None:
    """A title from the first user message: its first words on one line, cut at TITLE_CHARS."""
    line = " ".join(text.split())
    if not line:
        return None
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "\u2026"
