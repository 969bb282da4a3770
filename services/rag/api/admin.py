"""A consistent snapshot of what is indexed, for `ai-suite backup`: postgres and the vectors, under the write lock."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.rag.api.deps import Ready

router = APIRouter()

SNAPSHOT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SnapshotRequest(BaseModel):
    name: Annotated[str, Field(pattern=SNAPSHOT_NAME, description="Folder under DATA_DIR/backups to write.")]


@router.post("/admin/snapshot", tags=["admin"])
async def snapshot(body: SnapshotRequest, state: Ready) -> dict[str, Any]:
    """Write postgres (pg_dump) and the embedded vectors to DATA_DIR/backups/NAME/rag; no index run or delete
    can land between the two, so they agree."""
    dest = state.settings.data_dir.resolve() / "backups" / body.name / "rag"
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    async with state.collections.write_lock:
        points = await state.vectors.snapshot(dest / "vectors")
        dumped = await state.pg.dump(dest / "postgres.dump")
    return {"folder": str(dest), "collections": points, "postgres_bytes": dumped,
            "seconds": round(time.perf_counter() - started, 3)}
