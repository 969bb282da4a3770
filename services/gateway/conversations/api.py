"""Routes of the conversations API: OpenAI's shapes, plus the list of conversations and search (our additions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.common.errors import BadRequest, NotFound
from services.gateway.conversations.items import PAGE_DEFAULT, PAGE_MAX, QUERY_CHARS, is_id, parse_items, parse_metadata
from services.gateway.conversations.search import search_conversations
from services.gateway.conversations.service import Conversations
from services.gateway.openapi import CONVERSATION_UPDATE, NEW_CONVERSATION, NEW_ITEMS, body, query
from services.gateway.validation import parse_json_object

router = APIRouter(tags=["conversations"])


def conversations(request: Request) -> Conversations:
    service: Conversations = request.app.state.gateway.conversations
    return service


async def _object_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return parse_json_object(raw) if raw.strip() else {}


def _conversation_id(value: str) -> str:
    if not is_id(value, "conv"):
        raise NotFound(f"conversation {value!r} does not exist", code="conversation_not_found")
    return value


def _paging(request: Request) -> tuple[str | None, int, str]:
    """`after`, `limit` (1 to PAGE_MAX, default PAGE_DEFAULT) and `order` (asc or desc, default desc), as OpenAI
    pages."""
    query = request.query_params
    raw_limit = query.get("limit", str(PAGE_DEFAULT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE_MAX:
        raise BadRequest(f"limit must be an integer from 1 to {PAGE_MAX}", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", param="order")
    return query.get("after") or None, int(raw_limit), order


def page(data: list[dict[str, Any]], has_more: bool, **extra: Any) -> dict[str, Any]:
    """OpenAI's list shape with its cursor fields."""
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more, **extra}


async def create_conversation(request: Request) -> dict[str, Any]:
    service = conversations(request)
    body = await _object_body(request)
    # Everything is checked before the one transaction that writes it all.
    metadata = parse_metadata(body.get("metadata"))
    items = parse_items(body.get("items"), service.settings.conversation_max_items)
    conversation, _ = await service.store().create(metadata, items)
    service.changed()
    return conversation.as_openai()


async def list_conversations(request: Request) -> dict[str, Any]:
    """Newest first by last change; with `query`, the conversations that match it, best first."""
    service = conversations(request)
    after, limit, order = _paging(request)
    query = request.query_params.get("query", "").strip()
    if query:
        if len(query) > QUERY_CHARS:
            raise BadRequest(f"query may have at most {QUERY_CHARS} characters", param="query")
        found, engines = await search_conversations(service.store(), service.mirror, query, limit)
        service.metrics.searches.labels("+".join(engines)).inc()
        return page([hit.as_openai() for hit in found], False, engines=engines)
    listed = await service.store().recent(after, limit, order)
    return page([conversation.as_openai() for conversation in listed.items], listed.has_more)


async def get_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
    return (await conversations(request).store().get(_conversation_id(conversation_id))).as_openai()


async def update_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
    """OpenAI's update: `metadata` replaces the old one; `{"title": ...}` in it renames the conversation."""
    service = conversations(request)
    body = await _object_body(request)
    if "metadata" not in body:
        raise BadRequest("metadata is required", param="metadata")
    metadata = parse_metadata(body["metadata"])
    conversation = await service.store().update_metadata(_conversation_id(conversation_id), metadata)
    service.changed()
    return conversation.as_openai()


async def delete_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
    """Deletes the conversation, its items and its search entries (the RAG mirror's in the background)."""
    service = conversations(request)
    await service.store().delete(_conversation_id(conversation_id))
    service.changed()
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


async def list_items(request: Request, conversation_id: str) -> dict[str, Any]:
    after, limit, order = _paging(request)
    listed = await conversations(request).store().items(_conversation_id(conversation_id), after, limit, order)
    return page([item.as_openai() for item in listed.items], listed.has_more)


async def create_items(request: Request, conversation_id: str) -> dict[str, Any]:
    service = conversations(request)
    body = await _object_body(request)
    items = parse_items(body.get("items"), service.settings.conversation_max_items)
    if not items:
        raise BadRequest("items must list at least one item", param="items")
    stored = await service.store().append(_conversation_id(conversation_id), items)
    service.changed()
    return page([item.as_openai() for item in stored], False)


async def get_item(request: Request, conversation_id: str, item_id: str) -> dict[str, Any]:
    item = await conversations(request).store().item(_conversation_id(conversation_id), item_id)
    return item.as_openai()


async def delete_item(request: Request, conversation_id: str, item_id: str) -> dict[str, Any]:
    """OpenAI answers an item delete with the conversation."""
    service = conversations(request)
    conversation = await service.store().delete_item(_conversation_id(conversation_id), item_id)
    service.changed()
    return conversation.as_openai()


# Both spellings, as for the other OpenAI routes: some clients take the base URL without /v1.
for prefix in ("/v1", ""):
    base = f"{prefix}/conversations"
    router.add_api_route(base, create_conversation, methods=["POST"], openapi_extra=body(NEW_CONVERSATION, False))
    router.add_api_route(base, list_conversations, methods=["GET"],
                         openapi_extra=query("after", "limit", "order", "query"))
    router.add_api_route(base + "/{conversation_id}", get_conversation, methods=["GET"])
    router.add_api_route(base + "/{conversation_id}", update_conversation, methods=["POST"],
                         openapi_extra=body(CONVERSATION_UPDATE))
    router.add_api_route(base + "/{conversation_id}", delete_conversation, methods=["DELETE"])
    router.add_api_route(base + "/{conversation_id}/items", list_items, methods=["GET"],
                         openapi_extra=query("after", "limit", "order"))
    router.add_api_route(base + "/{conversation_id}/items", create_items, methods=["POST"],
                         openapi_extra=body(NEW_ITEMS))
    router.add_api_route(base + "/{conversation_id}/items/{item_id}", get_item, methods=["GET"])
    router.add_api_route(base + "/{conversation_id}/items/{item_id}", delete_item, methods=["DELETE"])
