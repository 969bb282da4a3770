"""Routes that change or list what is indexed: /index, /collections and the deletes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from services.common.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from services.rag.api.deps import Ready
from services.rag.api.schemas import COLLECTION_PATTERN, CollectionName, IndexRequest
from services.rag.indexing import Indexer
from services.rag.state import RagState

router = APIRouter()

MAX_UPLOADS = 256
UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "collection": {"type": "string", "pattern": COLLECTION_PATTERN, "default": "default"},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
    "required": ["files"],
}
INDEX_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": IndexRequest.model_json_schema()},
            "multipart/form-data": {"schema": UPLOAD_SCHEMA},
        },
    }
}


def upload_name(filename: str | None) -> str:
    """The bare file name of an upload; any folder part a client sends is dropped."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in {".", ".."} or name.startswith(".") or "\x00" in name or len(name) > 255:
        raise BadRequest(f"unusable upload file name {filename!r}", param="files")
    return name


async def _uploads(request: Request, state: RagState) -> tuple[str, list[tuple[str, bytes]]]:
    limit = state.settings.rag_max_upload_bytes
    async with request.form(max_files=MAX_UPLOADS, max_fields=16) as form:
        collection = form.get("collection") or "default"
        if not isinstance(collection, str):
            raise BadRequest("collection must be a text field", param="collection")
        files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not files:
            raise BadRequest("a multipart /index needs one or more `files` parts", param="files")
        uploads = []
        for item in files:
            data = await item.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge(f"{item.filename} is larger than {limit} bytes")
            uploads.append((upload_name(item.filename), data))
    _check_collection(collection)
    return collection, uploads


def _check_collection(name: str) -> None:
    try:
        IndexRequest(collection=name)
    except ValidationError as exc:
        raise BadRequest(f"invalid collection name {name!r}", param="collection") from exc


async def _json_body(request: Request) -> IndexRequest:
    raw = await request.body()
    try:
        return IndexRequest.model_validate(json.loads(raw) if raw.strip() else {})
    except json.JSONDecodeError as exc:
        raise BadRequest("request body is not valid JSON", code="invalid_json") from exc
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc


@router.post("/index", openapi_extra=INDEX_BODY, tags=["index"])
async def index(request: Request, state: Ready) -> dict[str, Any]:
    """Index files under DOCUMENTS_DIR (JSON `{collection, paths}`) or uploaded files (multipart)."""
    try:
        return await _index(request, state)
    except ServiceUnavailable:
        # the whole request failed on an outage; rag_dependency_unavailable_total says which dependency
        state.metrics.indexing_failures.labels("dependency_unavailable").inc()
        raise


async def _index(request: Request, state: RagState) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        collection, uploads = await _uploads(request, state)
        indexer = Indexer(state, collection)
        async with state.collections.write_lock:
            return (await indexer.run_uploads(uploads)).as_dict()
    body = await _json_body(request)
    indexer = Indexer(state, body.collection)
    files = indexer.plan(body.paths)
    async with state.collections.write_lock:
        return (await indexer.run(files)).as_dict()


@router.get("/collections", tags=["collections"])
async def collections(state: Ready) -> dict[str, Any]:
    rows = await state.pg.list_collections()
    vectors = {r["name"]: await state.vectors.count(r["name"]) for r in rows}
    return {"collections": [
        {"name": r["name"], "documents": r["documents"], "chunks": r["chunks"], "vectors": vectors[r["name"]],
         "dim": r["dim"], "embedding_model": r["embedding_model"], "created_at": r["created_at"].isoformat()}
        for r in rows
    ]}


@router.get("/collections/{name}/documents", tags=["collections"])
async def documents(name: CollectionName, state: Ready) -> dict[str, Any]:
    await state.collections.require(name)
    rows = await state.pg.list_documents(name)
    return {"collection": name, "documents": [
        {"id": r["id"], "path": r["path"], "chunks": r["chunk_count"], "bytes": r["bytes"],
         "file_hash": r["file_hash"], "indexed_at": r["indexed_at"].isoformat()} for r in rows
    ]}


@router.delete("/collections/{name}/documents/{document_id}", tags=["collections"])
async def delete_document(name: CollectionName, document_id: str, state: Ready) -> dict[str, Any]:
    async with state.collections.write_lock:
        removed = await state.collections.delete_document(name, document_id)
    return {"collection": name, "document_id": document_id, "chunks_removed": removed}


@router.delete("/collections/{name}", tags=["collections"])
async def delete_collection(name: CollectionName, state: Ready) -> dict[str, Any]:
    async with state.collections.write_lock:
        await state.collections.delete_collection(name)
    return {"collection": name, "deleted": True}
