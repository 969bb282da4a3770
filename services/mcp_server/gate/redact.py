"""Strip secrets and bulky content from tool arguments before they are written down."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

SECRET_KEYS = re.compile(
    r"passw(or)?d|passphrase|^pass$|secret|token|api[_-]?key|^auth(orization)?$|credential|cookie|private[_-]?key"
    r"|session[_-]?id",
    re.I,
)
# File bodies, code and page text are kept as their SHA-256 and size: the trail then shows exactly what was
# written (compare with `sha256sum`) without holding the payload.
CONTENT_KEYS = re.compile(r"^(content|code|body|text|data|html|markdown|source|script|stdin)$", re.I)
SECRET_VALUES = re.compile(
    r"(?i)(bearer\s+[\w.~+/=-]{8,}|\b(sk|pk|rk|ghp|gho|ghs|github_pat|xox[abprs]|secret|ntn|aik)[-_][\w-]{8,}"
    r"|(?<=[?&;\s])(password|passwd|token|secret|api_key|apikey|key)=[^&\s]+"
    r"|--(password|token|secret|api-key)[= ]\S+)"
)
MAX_TEXT = 512
MAX_DEPTH = 6


@dataclass(frozen=True)
class _Mode:
    keep_content: bool
    max_text: int | None
    hide_values: bool


def redact(value: Any, *, keep_content: bool = False, max_text: int | None = MAX_TEXT) -> Any:
    """A copy of `value` with secret-named fields, secret-looking strings and (unless kept) content hidden."""
    return _walk(value, _Mode(keep_content, max_text, hide_values=True), 0)


def for_approver(value: Any) -> Any:
    """What an approver is shown: every command and line of code whole, only secret-named fields hidden.

    Secret-looking text inside code or a command stays visible, so nothing can be smuggled past the approver
    in the shape of a token.
    """
    return _walk(value, _Mode(keep_content=True, max_text=None, hide_values=False), 0)


def digest_of(value: str | bytes) -> str:
    """'sha256:<hex>; <n> bytes' of a payload (text as UTF-8)."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return f"sha256:{hashlib.sha256(data).hexdigest()}; {len(data)} bytes"


def redact_text(text: str, max_text: int | None = MAX_TEXT) -> str:
    """`text` with secret-looking parts hidden (for error messages that may echo an argument)."""
    return _text(text, _Mode(False, max_text, hide_values=True))


def _walk(value: Any, mode: _Mode, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, dict):
        out = {str(k): _field(str(k), v, mode, depth) for k, v in value.items()}
        if value.get("action") == "fill" and isinstance(value.get("value"), str):
            out["value"] = _typed_text(value, mode)
        return out
    if isinstance(value, list | tuple):
        return [_walk(item, mode, depth + 1) for item in value]
    if isinstance(value, str):
        return _text(value, mode)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(str(value), mode)


def _field(key: str, value: Any, mode: _Mode, depth: int) -> Any:
    if SECRET_KEYS.search(key) and isinstance(value, str | bytes) and value:
        return "[redacted]"
    if not mode.keep_content and CONTENT_KEYS.match(key) and isinstance(value, str | bytes):
        return digest_of(value)
    return _walk(value, mode, depth + 1)


def _typed_text(step: dict[str, Any], mode: _Mode) -> str:
    """A web_automate `fill` types its text under the plain key "value"; a password field's text is a secret."""
    text: str = step["value"]
    if SECRET_KEYS.search(str(step.get("selector") or "")):
        return "[redacted]" if text else text
    return _text(text, mode) if mode.keep_content else f"[{len(text)} chars]"


def _text(text: str, mode: _Mode) -> str:
    if mode.hide_values:
        text = SECRET_VALUES.sub("[redacted]", text)
    if mode.max_text is not None and len(text) > mode.max_text:
        return text[: mode.max_text] + f"... [{len(text)} chars]"
    return text
