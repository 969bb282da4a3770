"""Cheap checks of a completion request, done on the parsed JSON without building models for it."""

from __future__ import annotations

import json
from typing import Literal

from services.common.errors import BadRequest

Endpoint = Literal["chat", "completion"]
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def parse_json_object(raw: bytes) -> dict:
    """The request body as a JSON object, or BadRequest."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def parse_model_request(raw: bytes) -> dict:
    """A JSON object with a non-empty string `model`, or BadRequest."""
    body = parse_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a string", param="model")
    return body


def parse_body(raw: bytes, endpoint: Endpoint, max_tokens_limit: int) -> dict:
    """Parse and check a request body; raises BadRequest with an OpenAI-style message."""
    body = parse_model_request(raw)
    if endpoint == "chat":
        _check_messages(body.get("messages"))
    else:
        _check_prompt(body.get("prompt"))
    for field in TOKEN_FIELDS:
        _check_token_limit(body.get(field), field, max_tokens_limit)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    return body


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{index}] must be an object with a role", param=f"messages.{index}")


def _check_prompt(prompt: object) -> None:
    if isinstance(prompt, str) and prompt:
        return
    if isinstance(prompt, list) and prompt:
        return
    raise BadRequest("prompt must be a non-empty string or list", param="prompt")


def _check_token_limit(value: object, field: str, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise BadRequest(f"{field} must be an integer from 1 to {limit}", param=field)
