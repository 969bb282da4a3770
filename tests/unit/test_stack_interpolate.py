"""Compose variable interpolation and .env parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stack.interpolate import (
    InterpolationError,
    interpolate,
    interpolate_str,
    parse_env_file,
    referenced_variables,
)

ENV = {"SET": "value", "EMPTY": "", "PORT": "9000"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("$SET/x", "value/x"),
        ("${UNSET}", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),  # `-` only replaces unset, not empty
        ("${UNSET-fallback}", "fallback"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:-${PORT}}", "9000"),  # nested default
        ("${UNSET:-${ALSO_UNSET:-8001}}", "8001"),
        ("127.0.0.1:${PORT:-8001}:${PORT:-8001}", "127.0.0.1:9000:9000"),
        ("cost $$5 and $", "cost $5 and $"),
        ("no variables", "no variables"),
    ],
)
def test_interpolate_str(text: str, expected: str) -> None:
    assert interpolate_str(text, ENV.get) == expected


def test_required_variable_names_itself() -> None:
    with pytest.raises(InterpolationError, match="MODEL_PATH is missing: set it in .env"):
        interpolate_str("${MODEL_PATH:?set it in .env}", ENV.get)
    assert interpolate_str("${SET:?unused}", ENV.get) == "value"


@pytest.mark.parametrize("bad", ["${", "${1ABC}", "${SET:x}", "${SET"])
def test_malformed_expressions_are_errors(bad: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate_str(bad, ENV.get)


def test_interpolate_document_values_not_keys() -> None:
    doc = {"services": {"${SET}": {"ports": ["${PORT}"], "x": 1, "flag": True}}}
    assert interpolate(doc, ENV) == {"services": {"${SET}": {"ports": ["9000"], "x": 1, "flag": True}}}


def test_referenced_variables_follow_defaults_and_alternatives() -> None:
    doc = {"a": "${A:-${B}}", "b": ["${C:+${D}}", "$E"], "c": {"k": "${F:?needed}"}, "d": 3}
    assert referenced_variables(doc) == {"A", "B", "C", "D", "E", "F"}


def test_parse_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# comment\n\nPLAIN=1\nexport EXPORTED=yes\nQUOTED=\"a # not a comment\"\n"
        "SINGLE='${NOT_EXPANDED}'\nINLINE=value # trailing comment\nEMPTY=\n",
        encoding="utf-8",
    )
    assert parse_env_file(env) == {
        "PLAIN": "1", "EXPORTED": "yes", "QUOTED": "a # not a comment",
        "SINGLE": "${NOT_EXPANDED}", "INLINE": "value", "EMPTY": "",
    }


def test_parse_env_file_rejects_garbage_with_line_number(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("OK=1\nthis is not an assignment\n", encoding="utf-8")
    with pytest.raises(InterpolationError, match=r"\.env:2"):
        parse_env_file(env)
