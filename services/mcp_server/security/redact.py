"""Strip secrets and bulky content from tool arguments before they are written down."""

from __future__ import annotations

import re
from typing import Any

SECRET_KEYS = re.compile(
    r"passw(or)?d|passphrase|^pass$|secret|token|api[_-]?key|^auth(orization)?$|credential|cookie|private[_-]?key"
    r"|session[_-]?id",
    re.I,
)
# File bodies, code and page text say nothing about who did what; keep only their size.
CONTENT_KEYS = re.compile(r"^(content|code|body|text|data|html|markdown|source|script|stdin)$", re.I)
SECRET_VALUES = re.compile(
    r"(?i)(bearer\s+[\w.~+/=-]{8,}|\b(sk|pk|rk|ghp|gho|ghs|github_pat|xox[abprs]|secret|ntn|aik)[-_][\w-]{8,}"
    r"|(?<=[?&;\s])(password|passwd|token|secret|api_key|apikey|key)=[^&\s]+"
    r"|--(password|token|secret|api-key)[= ]\S+)"
)
MAX_TEXT = 512
MAX_DEPTH = 6


def redact(value: Any, *, keep_content: bool = False) -> Any:
    """A copy of `value` with secret-named fields, secret-looking strings and (unless kept) content hidden."""
    return _walk(value, keep_content, 0)


def _walk(value: Any, keep_content: bool, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        return {str(k): _field(str(k), v, keep_content, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, keep_content, depth + 1) for item in value]
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(str(value))


def _field(key: str, value: Any, keep_content: bool, depth: int) -> Any:
    if SECRET_KEYS.search(key) and isinstance(value, str | bytes) and value:
        return "[redacted]"
    if not keep_content and CONTENT_KEYS.match(key) and isinstance(value, str | bytes):
        return f"[{len(value)} chars]"
    return _walk(value, keep_content, depth + 1)


def _text(text: str) -> str:
    text = SECRET_VALUES.sub("[redacted]", text)
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + f"... [{len(text)} chars]"
    return text
