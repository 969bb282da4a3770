"""An in-process copy of one embedded Qdrant collection's vectors, searched exactly with one matrix product.

Embedded Qdrant searches by brute force too, but it turns the query into float64, so every search upcasts all
stored float32 vectors and multiplies them on OpenBLAS threads. Those threads keep spinning after the call and
take the 2 cores from the embedding service: on a 2-core machine that doubled the /search embed stage, besides
the search's own 4-8 ms at 10,000 x 384. Here the float32 product and a partial sort take about 1 ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

import numpy as np

Vector = Sequence[float] | np.ndarray


class DenseMatrix:
    """Unit-length vectors by point id; rows of removed points are reused. Not thread-safe: use from the loop."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._rows = np.zeros((max(1, capacity), dim), dtype=np.float32)
        self._live = np.zeros(max(1, capacity), dtype=bool)
        self._ids: list[UUID | None] = []
        self._documents: list[str | None] = []
        self._row_of: dict[UUID, int] = {}
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._row_of

    def upsert(self, points: Iterable[tuple[UUID, Vector, str | None]]) -> None:
        """Set (id, unit vector, document id) rows, replacing an id's earlier vector."""
        for point_id, vector, document_id in points:
            row = self._row_of.get(point_id)
            if row is None:
                row = self._free.pop() if self._free else self._new_row()
                self._row_of[point_id] = row
                self._ids[row] = point_id
                self._live[row] = True
            self._rows[row] = vector
            self._documents[row] = document_id

    def remove(self, point_ids: Iterable[UUID]) -> None:
        for point_id in point_ids:
            row = self._row_of.pop(point_id, None)
            if row is not None:
                self._ids[row] = None
                self._documents[row] = None
                self._live[row] = False
                self._free.append(row)

    def remove_document(self, document_id: str) -> None:
        self.remove([point_id for point_id, document in zip(self._ids, self._documents, strict=True)
                     if point_id is not None and document == document_id])

    def search(self, vector: Vector, limit: int) -> list[tuple[UUID, float]]:
        """The `limit` ids with the largest dot product with `vector`, best first."""
        used = len(self._ids)
        limit = min(limit, len(self._row_of))
        if limit <= 0:
            return []
        # einsum's own loop, not BLAS: no OpenBLAS threads left spinning on the cores the embedding model needs
        scores = np.einsum("ij,j->i", self._rows[:used], np.asarray(vector, dtype=np.float32))
        scores[~self._live[:used]] = -np.inf
        best = np.argpartition(-scores, limit - 1)[:limit] if limit < used else np.arange(used)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(point_id, float(scores[row])) for row in best if (point_id := self._ids[row]) is not None][:limit]

    def _new_row(self) -> int:
        row = len(self._ids)
        if row >= len(self._rows):
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
            self._live = np.concatenate([self._live, np.zeros_like(self._live)])
        self._ids.append(None)
        self._documents.append(None)
        return row
