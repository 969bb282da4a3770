"""Text out of txt, md, source code, pdf, docx and html files; anything else is refused with a reason."""

from __future__ import annotations

import io
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markitdown import DocumentConverter

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
RICH_FORMATS = frozenset({".pdf", ".docx", ".html", ".htm", ".xhtml"})
TEXT_FORMATS = frozenset(
    ".txt .text .md .markdown .mdx .rst .adoc .org .tex .csv .tsv .log .json .jsonl .yaml .yml .toml .ini .cfg .conf "
    ".env .properties .xml .svg .py .pyi .ipynb .js .mjs .cjs .ts .tsx .jsx .vue .svelte .java .kt .kts .scala .groovy "
    ".c .h .cc .cpp .cxx .hpp .hh .cs .go .rs .rb .php .pl .pm .lua .r .m .mm .swift .dart .sh .bash .zsh .fish .ps1 "
    ".bat .sql .graphql .proto .css .scss .sass .less .gradle .cmake .mk .tf .hcl .dockerfile .gitignore .el .clj "
    ".ex .exs .erl .hs .ml .nim .zig .v .sv .vhd .jl".split()
)
# Leading bytes of common binary formats, so the refusal can say what the file is.
MAGIC = (
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"RIFF", "RIFF media (WAV/AVI/WebP)"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ", "xz archive"),
    (b"7z\xbc\xaf", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\xd0\xcf\x11\xe0", "legacy Office document (.doc/.xls/.ppt)"),
    (b"%PDF", "PDF document"),
    (b"SQLite format 3", "SQLite database"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
)
# pdfminer separates wrapped lines with blank lines; a break after a non-terminal character before a lower-case
# letter or digit is a wrap, not a paragraph end.
WRAPPED_BREAK = re.compile(r"(?<=[^\s.!?:;\u3002])[ \t]*\n\s*\n[ \t]*(?=[a-z0-9(])")
TEXT_ENCODINGS = ("utf-8", "cp949")  # cp949 is a superset of euc-kr, the usual encoding of older Korean files.


class UnreadableFile(Exception):
    """A file whose text cannot be extracted; `reason` says why, in words a user can act on.

    `code` is the short name rag_indexing_failures_total counts it under.
    """

    def __init__(self, reason: str, code: str = "unreadable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def extract_text(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Text of the file at `path`, or UnreadableFile."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFile(f"cannot open file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise UnreadableFile("not a regular file")
    _check_size(size, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read file: {exc.strerror or exc}") from exc
    return extract_bytes(path.name, data, max_bytes=max_bytes)


def extract_bytes(filename: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Text of a file given its name (for the format) and its content, or UnreadableFile."""
    _check_size(len(data), max_bytes)
    if not data.strip():
        raise UnreadableFile("file is empty", code="empty_file")
    suffix = _suffix(filename)
    if suffix in RICH_FORMATS:
        text = _convert_rich(suffix, data)
    elif suffix in TEXT_FORMATS or not suffix:
        text = decode_text(data)
    else:
        kind = _binary_kind(data)
        if kind:
            raise UnreadableFile(f"unsupported format {suffix} ({kind})")
        text = decode_text(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise UnreadableFile("no text could be extracted (scanned or image-only document?)", code="no_text")
    return text


def decode_text(data: bytes) -> str:
    """Decode plain text: UTF-8 (with or without BOM), UTF-16 with BOM, else CP949/EUC-KR; binary is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UnreadableFile("invalid UTF-16 text") from exc
    kind = _binary_kind(data, printable_magic=False)
    if kind:
        raise UnreadableFile(f"binary file ({kind}), not text")
    for encoding in TEXT_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _control_share(text) > 0.02:
            raise UnreadableFile("binary data (control characters), not text")
        return text.removeprefix("\ufeff")
    raise UnreadableFile("not valid UTF-8 or CP949/EUC-KR text")


def _control_share(text: str) -> float:
    sample = text[:8192]
    controls = sum(1 for char in sample if (char < " " and char not in "\t\n\r\f\v") or char == "\x7f")
    return controls / max(len(sample), 1)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise UnreadableFile(f"file is {size} bytes, over the limit of {max_bytes} bytes")


def _suffix(filename: str) -> str:
    name = Path(filename).name.lower()
    if name in {"dockerfile", "makefile", "readme", "license", "containerfile"}:
        return ".txt"
    return Path(name).suffix


def _binary_kind(data: bytes, printable_magic: bool = True) -> str | None:
    for magic, kind in MAGIC:
        # A text file may begin with "MZ" or "ID3"; inside text formats only trust signatures with binary bytes.
        if data.startswith(magic) and (printable_magic or not magic.isascii() or not magic.decode().isprintable()):
            return kind
    # Text never holds NUL bytes (UTF-16 without BOM aside, which is rare enough to refuse).
    if b"\x00" in data[:8192]:
        return "binary data"
    return None


@cache
def _converter(suffix: str) -> DocumentConverter:
    # One markitdown converter per format: MarkItDown.convert would fall back to other converters and return
    # garbage (a broken .docx "read" as UTF-16 text) instead of failing.
    from markitdown.converters import DocxConverter, HtmlConverter, PdfConverter

    return {".pdf": PdfConverter, ".docx": DocxConverter}.get(suffix, HtmlConverter)()


def _convert_rich(suffix: str, data: bytes) -> str:
    from markitdown import StreamInfo

    expected = {".pdf": b"%PDF", ".docx": b"PK\x03\x04"}.get(suffix)
    if expected and not data.lstrip()[:8].startswith(expected):
        raise UnreadableFile(f"not a valid {suffix} file ({_binary_kind(data) or 'wrong content'})")
    try:
        result = _converter(suffix).convert(io.BytesIO(data), StreamInfo(extension=suffix))
    except Exception as exc:  # parsers raise unrelated types (BadZipFile, PDFSyntaxError, ...): all mean unreadable
        raise UnreadableFile(f"could not read {suffix} file: {_first_line(exc)}") from exc
    text = result.markdown or ""
    return join_wrapped_lines(text) if suffix == ".pdf" else text


def join_wrapped_lines(text: str) -> str:
    """Undo PDF line wrapping: a block that stops mid-sentence continues in a next block starting in lower case."""
    return WRAPPED_BREAK.sub(" ", text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
