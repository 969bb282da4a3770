"""The request bodies and query parameters the gateway's OpenAPI describes.

The routes read the raw body themselves (the fast path forwards the client's bytes as they came), so FastAPI cannot
derive these from a model. They are attached to each route as `openapi_extra` and state what validation.py and
conversations/items.py accept, so a generated client, a reader of /docs and a fuzzer see the same contract.
"""

from __future__ import annotations

from typing import Any

from services.gateway.conversations.items import (
    METADATA_KEY_CHARS,
    METADATA_PAIRS,
    METADATA_VALUE_CHARS,
    PAGE_DEFAULT,
    PAGE_MAX,
    QUERY_CHARS,
    ROLES,
    STATUSES,
    TEXT_PARTS,
)
from services.gateway.routing import PUBLIC_NAMES

JSONSchema = dict[str, Any]

TEXT_PART: JSONSchema = {"type": "object", "required": ["type", "text"],
                         "properties": {"type": {"enum": list(TEXT_PARTS)}, "text": {"type": "string"}}}
CONTENT: JSONSchema = {"anyOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}]}
MESSAGE: JSONSchema = {"type": "object", "required": ["role", "content"],
                       "properties": {"role": {"enum": list(ROLES)}, "content": CONTENT}}
TOKENS: JSONSchema = {"type": "integer", "minimum": 1, "description": "at most MAX_TOKENS_LIMIT"}
SAMPLING: JSONSchema = {
    "model": {"enum": list(PUBLIC_NAMES), "description": "a model name, or auto to let the gateway choose"},
    "max_tokens": TOKENS, "max_completion_tokens": TOKENS, "stream": {"type": "boolean"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
}
CHAT: JSONSchema = {"type": "object", "required": ["model", "messages"], "properties": {
    **SAMPLING, "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
    "conversation": {"type": "string", "description": "a conversation id: history comes from the store, "
                                                      "and the exchange is appended to it"}}}
COMPLETION: JSONSchema = {"type": "object", "required": ["model", "prompt"], "properties": {
    **SAMPLING, "prompt": {"anyOf": [{"type": "string", "minLength": 1},
                                     {"type": "array", "minItems": 1, "items": {"type": "string"}}]}}}
EMBEDDINGS: JSONSchema = {"type": "object", "required": ["model", "input"], "properties": {
    "model": {"type": "string"},
    "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}

METADATA: JSONSchema = {"type": "object", "maxProperties": METADATA_PAIRS,
                        "propertyNames": {"maxLength": METADATA_KEY_CHARS},
                        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_CHARS}}
ITEM: JSONSchema = {"type": "object", "required": ["role", "content"], "properties": {
    "type": {"const": "message"}, "role": {"enum": list(ROLES)}, "content": CONTENT,
    "status": {"enum": list(STATUSES)}}}
NEW_CONVERSATION: JSONSchema = {"type": "object", "properties": {"metadata": METADATA,
                                                                 "items": {"type": "array", "items": ITEM}}}
CONVERSATION_UPDATE: JSONSchema = {"type": "object", "required": ["metadata"], "properties": {"metadata": METADATA}}
NEW_ITEMS: JSONSchema = {"type": "object", "required": ["items"],
                         "properties": {"items": {"type": "array", "minItems": 1, "items": ITEM}}}


def body(schema: JSONSchema, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a JSON request body of this shape."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def query(*names: str) -> dict[str, Any]:
    """`openapi_extra` for the paging and search parameters the conversation lists read."""
    known: dict[str, JSONSchema] = {
        "after": {"type": "string", "description": "the id to continue after"},
        "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
        "order": {"enum": ["asc", "desc"], "default": "desc"},
        "query": {"type": "string", "maxLength": QUERY_CHARS, "description": "full-text search, best first"},
    }
    return {"parameters": [{"name": name, "in": "query", "required": False, "schema": known[name]}
                           for name in names]}
