"""Sentence-aligned token windows, counted with the embedding model's own tokenizer."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from tokenizers import Encoding


class SentenceSplitter(Protocol):
    def sentence_spans(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class Chunk:
    """One window of a document: its text, exact token count and sha256 of the text; start/end index the document."""

    index: int
    text: str
    token_count: int
    content_hash: str
    start: int = 0
    end: int = 0


class Unit(NamedTuple):
    start: int
    end: int
    tokens: int


def content_hash(text: str) -> str:
    """sha256 hex digest of the UTF-8 text; the identity of a chunk for idempotent indexing."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Chunker:
    """Packs whole sentences into windows of at most `window` tokens that overlap by about `overlap` tokens."""

    def __init__(self, tokenizer_path: Path, window: int = 512, overlap: int = 100) -> None:
        from tokenizers import Tokenizer

        if window < 1 or not 0 <= overlap < window:
            raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window} overlap={overlap}")
        self.window = window
        self.overlap = overlap
        # Pieces of an over-long sentence are small, so the windows built from them still overlap.
        self.piece_tokens = max(8, overlap // 2) if overlap >= 16 else window
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json ships with truncation and padding at 128; counting needs neither.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def count_tokens(self, text: str) -> int:
        """Number of tokens the embedding model sees for `text`, without [CLS]/[SEP]."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` for many texts at once (parallel inside the tokenizer)."""
        return [len(encoding.ids) for encoding in self._encode(texts)]

    def chunk(self, text: str, analyzer: SentenceSplitter) -> list[Chunk]:
        """Chunks of `text`, in order; the same text always gives the same chunks."""
        units = self._units(text, analyzer.sentence_spans(text))
        ranges = [(units[first].start, units[last - 1].end) for first, last in self._windows(units)]
        counts = self.count_tokens_batch([text[start:end] for start, end in ranges])
        chunks: list[Chunk] = []
        for (start, end), count in zip(ranges, counts, strict=True):
            if count <= self.window:
                pieces = [Unit(start, end, count)]
            else:  # token counts of cut words are not exactly additive; cut again at the exact limit
                pieces = self._split_by_tokens(text, Unit(start, end, count), self.window)
            for piece in pieces:
                body = text[piece.start:piece.end]
                chunks.append(Chunk(len(chunks), body, piece.tokens, content_hash(body), piece.start, piece.end))
        return chunks

    def _encode(self, texts: Sequence[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(list(texts), add_special_tokens=False) if texts else []

    def _units(self, text: str, spans: Sequence[tuple[int, int]]) -> list[Unit]:
        """Sentences with token counts; one longer than a window is cut at lines, then at word boundaries."""
        units: list[Unit] = []
        encodings = self._encode([text[start:end] for start, end in spans])
        for (start, end), encoding in zip(spans, encodings, strict=True):
            count = len(encoding.ids)
            if count == 0:
                continue
            if count <= self.window:
                units.append(Unit(start, end, count))
                continue
            lines = _line_spans(text, start, end)
            if len(lines) > 1:
                units.extend(self._units(text, lines))
            else:
                units.extend(self._split_by_tokens(text, Unit(start, end, count), self.piece_tokens, encoding))
        return units

    def _split_by_tokens(self, text: str, unit: Unit, size: int, encoding: Encoding | None = None) -> list[Unit]:
        """Cut one span into pieces of at most `size` tokens, preferring cuts between words."""
        if encoding is None:
            encoding = self.tokenizer.encode(text[unit.start:unit.end], add_special_tokens=False)
        offsets, words = encoding.offsets, encoding.word_ids
        cuts = [0]
        while len(offsets) - cuts[-1] > size:
            first, cut = cuts[-1], cuts[-1] + size
            at_word = next((i for i in range(cut, first, -1) if words[i] != words[i - 1]), None)
            at_char = next((i for i in range(cut, first, -1) if offsets[i][0] >= offsets[i - 1][1]), cut)
            cuts.append(at_word or at_char)
        cuts.append(len(offsets))
        pieces = []
        for first, last in zip(cuts, cuts[1:], strict=False):
            start = unit.start + offsets[first][0] if first else unit.start
            end = unit.start + offsets[last][0] if last < len(offsets) else unit.end
            end = _rstrip(text, start, end)
            if end > start:
                pieces.append(Unit(start, end, last - first))
        return pieces

    def _windows(self, units: Sequence[Unit]) -> list[tuple[int, int]]:
        """[first, last) unit ranges: greedy windows, each starting with about `overlap` tokens of the previous."""
        windows: list[tuple[int, int]] = []
        first = 0
        while first < len(units):
            total, last = 0, first
            while last < len(units) and total + units[last].tokens <= self.window:
                total += units[last].tokens
                last += 1
            windows.append((first, last))
            if last >= len(units):
                break
            first = self._overlap_start(units, first, last)
        return windows

    def _overlap_start(self, units: Sequence[Unit], first: int, last: int) -> int:
        """First unit of the next window: the previous window's tail closest to `overlap` tokens."""
        following = units[last].tokens
        start, tail = last, 0
        while start - 1 > first:
            grown = tail + units[start - 1].tokens
            fits = grown + following <= self.window
            # Take one more sentence while under the target, even if it overshoots a little (at most 1.5x).
            if not fits or grown > self.overlap * 3 // 2 or (grown > self.overlap and tail >= self.overlap // 2):
                break
            start, tail = start - 1, grown
            if tail >= self.overlap:
                break
        return start


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    position = start
    for line in text[start:end].splitlines(keepends=True):
        line_end = _rstrip(text, position, position + len(line))
        if line_end > position:  # indentation stays: it is part of the code
            spans.append((position, line_end))
        position += len(line)
    return spans


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end
