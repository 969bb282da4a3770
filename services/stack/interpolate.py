"""Compose variable interpolation (`${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR:+a}`, `$$`)
and `.env` parsing, following the compose specification."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A `${VAR:?message}` was unset, or a `${...}` expression is malformed."""


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` that closes the `${` whose body starts at `start` (nesting allowed)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _expand(body: str, lookup: Callable[[str], str | None], whole: str) -> str:
    match = NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid variable expression '${{{body}}}' in {whole!r}")
    name, rest = match.group(0), body[match.end():]
    value = lookup(name)
    if not rest:
        return value or ""
    op = next((o for o in OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid variable expression '${{{body}}}' in {whole!r}")
    arg = rest[len(op):]
    unset_or_empty = not value if op.startswith(":") else value is None
    if op in (":-", "-"):
        return interpolate_str(arg, lookup) if unset_or_empty else (value or "")
    if op in (":?", "?"):
        if unset_or_empty:
            raise InterpolationError(f"required variable {name} is missing: {interpolate_str(arg, lookup)}")
        return value or ""
    return "" if unset_or_empty else interpolate_str(arg, lookup)


def interpolate_str(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand every variable reference in one string."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1: i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2: end], lookup, text))
            i = end + 1
        elif (match := NAME.match(text, i + 1)) is not None:
            out.append(lookup(match.group(0)) or "")
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Interpolate every string value (not mapping keys) of a YAML document."""
    if isinstance(value, str):
        return interpolate_str(value, variables.get)
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def referenced_variables(value: Any) -> set[str]:
    """Names of every variable a document refers to, defaults and alternatives included."""
    names: set[str] = set()

    def unset(name: str) -> str | None:
        names.add(name)
        return None

    def present(name: str) -> str:
        names.add(name)
        return "x"

    # Two passes: unset variables reach `:-` defaults, set ones reach `:+` alternatives.
    for text in _strings(value):
        for lookup in (unset, present):
            try:
                interpolate_str(text, lookup)
            except InterpolationError:
                pass  # `${X:?msg}` raises after X was recorded
    return names


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        inner = raw[1:-1]
        return inner.replace("\\n", "\n").replace('\\"', '"') if raw[0] == '"' else inner
    # an unquoted value ends at " #" (inline comment)
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def parse_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines (comments, blank lines, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not NAME.fullmatch(key):
            raise InterpolationError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key] = _unquote(raw)
    return values
