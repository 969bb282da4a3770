"""In-memory BM25 (k1 1.5, b 0.75) over an inverted index, scored with numpy."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable

import numpy as np


class BM25Index:
    """Incremental BM25: add/remove chunks by id; a search touches only the postings of the query terms."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._slot_of: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        self._lengths = np.zeros(64, dtype=np.float32)
        self._total_length = 0
        self._postings: dict[str, dict[int, int]] = {}
        self._doc_terms: dict[int, Counter[str]] = {}
        # Postings as numpy arrays, rebuilt lazily for a term after it changes.
        self._packed: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._slot_of

    def add(self, chunk_id: str, terms: list[str]) -> None:
        """Index a chunk's terms under `chunk_id`, replacing what was there before."""
        with self._lock:
            self._remove(chunk_id)
            slot = self._free.pop() if self._free else self._new_slot()
            counts = Counter(terms)
            self._slot_of[chunk_id] = slot
            self._ids[slot] = chunk_id
            self._doc_terms[slot] = counts
            self._lengths[slot] = len(terms)
            self._total_length += len(terms)
            for term, count in counts.items():
                self._postings.setdefault(term, {})[slot] = count
                self._packed.pop(term, None)

    def add_many(self, items: Iterable[tuple[str, list[str]]]) -> None:
        """`add` for many (chunk_id, terms) pairs."""
        for chunk_id, terms in items:
            self.add(chunk_id, terms)

    def remove(self, chunk_id: str) -> bool:
        """Drop a chunk; False if it was not indexed."""
        with self._lock:
            return self._remove(chunk_id)

    def clear(self) -> None:
        """Forget every chunk."""
        with self._lock:
            self._reset()

    def search(self, terms: list[str], top_k: int = 10) -> list[tuple[str, float]]:
        """Best `top_k` (chunk_id, score) pairs for the query terms, best first; chunks sharing no term are left out."""
        with self._lock:
            count = len(self._slot_of)
            unique = [term for term in dict.fromkeys(terms) if term in self._postings]
            if not count or not unique or top_k <= 0:
                return []
            average = self._total_length / count or 1.0
            used = len(self._ids)
            norm = self.k1 * (1.0 - self.b + self.b * self._lengths[:used] / average)
            scores = np.zeros(used, dtype=np.float32)
            for term in unique:
                slots, freqs = self._packed_postings(term)
                idf = math.log(1.0 + (count - len(slots) + 0.5) / (len(slots) + 0.5))
                scores[slots] += idf * freqs * (self.k1 + 1.0) / (freqs + norm[slots])
            hits = np.flatnonzero(scores > 0)
            if len(hits) > top_k:
                hits = hits[np.argpartition(-scores[hits], top_k - 1)[:top_k]]
            found = [(self._ids[slot], float(scores[slot])) for slot in hits]
            ranked = [(chunk_id, score) for chunk_id, score in found if chunk_id is not None]
            return sorted(ranked, key=lambda pair: (-pair[1], pair[0]))

    def _packed_postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        packed = self._packed.get(term)
        if packed is None:
            posting = self._postings[term]
            slots = np.fromiter(posting.keys(), dtype=np.int64, count=len(posting))
            freqs = np.fromiter(posting.values(), dtype=np.float32, count=len(posting))
            packed = self._packed[term] = (slots, freqs)
        return packed

    def _new_slot(self) -> int:
        slot = len(self._ids)
        self._ids.append(None)
        if slot >= len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros(len(self._lengths), dtype=np.float32)])
        return slot

    def _remove(self, chunk_id: str) -> bool:
        slot = self._slot_of.pop(chunk_id, None)
        if slot is None:
            return False
        for term in self._doc_terms.pop(slot):
            posting = self._postings[term]
            del posting[slot]
            if not posting:
                del self._postings[term]
            self._packed.pop(term, None)
        self._total_length -= int(self._lengths[slot])
        self._lengths[slot] = 0
        self._ids[slot] = None
        self._free.append(slot)
        return True
