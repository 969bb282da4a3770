"""`ai --index` and `ai --rag` against a small local HTTP server that speaks the RAG service's API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.cli.main import main
from services.cli.rag import IndexTally, documents_root, files_to_index, format_sources
from tests.support.procs import free_port


@dataclass
class FakeRag:
    """Records each request; answers /index per file and /query with fixed sources."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None


def _handler(state: FakeRag) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read(self) -> dict[str, Any]:
            length = int(self.headers.get("content-length", 0))
            kind = self.headers.get("content-type", "")
            raw = self.rfile.read(length)
            if kind.startswith("multipart/form-data"):
                message = BytesParser(policy=policy.HTTP).parsebytes(f"content-type: {kind}\r\n\r\n".encode() + raw)
                parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
                upload = parts["files"]
                return {"collection": parts["collection"].get_content().strip(), "upload": upload.get_filename(),
                        "bytes": upload.get_payload(decode=True).decode()}
            return json.loads(raw or b"{}")

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self._read()
            state.requests.append({"path": self.path, **body})
            if state.fail_with:
                self._send(state.fail_with, {"error": {"message": "postgres is unavailable", "type": "x"}})
            elif self.path == "/index":
                name = body.get("upload") or body["paths"][0]
                if name.endswith(".bin"):
                    self._send(200, {"collection": body["collection"], "documents": [],
                                     "skipped": [{"path": name, "reason": "binary file"}],
                                     "chunks_added": 0, "chunks_removed": 0, "chunks_unchanged": 0})
                else:
                    self._send(200, {"collection": body["collection"], "skipped": [],
                                     "documents": [{"path": name, "status": "added", "chunks": 2}],
                                     "chunks_added": 2, "chunks_removed": 0, "chunks_unchanged": 0})
            elif self.path == "/query" and body["collection"] == "missing":
                self._send(404, {"error": {"message": "collection 'missing' does not exist", "type": "x"}})
            elif self.path == "/query":
                self._send(200, {"answer": "Use open() [1].", "collection": body["collection"], "model": "chat-7b",
                                 "sources": [{"document": "guide.md", "document_id": "d1", "chunk": 3,
                                              "score": 0.8123, "text": "open() reads files"},
                                             {"document": "ko.txt", "document_id": "d2", "chunk": 0,
                                              "score": 0.5, "text": "파일 읽기"}], "timings": {}})
            else:
                self._send(404, {"error": {"message": "no route"}})

    return Handler


@pytest.fixture
def rag_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeRag]:
    state = FakeRag()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AI_RAG_URL", state.url)
    monkeypatch.setenv("DOCUMENTS_DIR", str(tmp_path / "documents"))
    (tmp_path / "documents").mkdir()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "guide.md").write_text("# Reading files\nUse open().")
    (root / "sub" / "ko.txt").write_text("파일을 읽는 방법")
    (root / "blob.bin").write_bytes(b"\x00\x01")
    (root / ".hidden.md").write_text("secret")
    (root / ".git" / "config").write_text("x")
    return root


def test_index_outside_documents_dir_uploads_each_file(rag_server: FakeRag, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_tree(tmp_path / "notes")
    assert main(["--index", str(folder), "--collection", "notes"]) == 0
    sent = [(r["path"], r["collection"], r["upload"]) for r in rag_server.requests]
    assert sent == [("/index", "notes", "blob.bin"), ("/index", "notes", "guide.md"), ("/index", "notes", "ko.txt")]
    assert rag_server.requests[2]["bytes"] == "파일을 읽는 방법"
    err = capsys.readouterr().err
    assert "2 documents (2 added); 4 chunks added, 0 removed; 1 skipped, 0 failed" in err
    assert "skipped blob.bin: binary file" in err


def test_index_under_documents_dir_sends_relative_paths(rag_server: FakeRag, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "documents" / "team")
    assert main(["--index", str(folder)]) == 0
    assert [(r["collection"], r["paths"]) for r in rag_server.requests] == [
        ("default", ["team/blob.bin"]), ("default", ["team/guide.md"]), ("default", ["team/sub/ko.txt"])]


def test_uploads_that_would_collide_are_refused_before_sending(rag_server: FakeRag, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for part in ("a", "b"):
        (tmp_path / "docs" / part).mkdir(parents=True)
        (tmp_path / "docs" / part / "README.md").write_text(part)
    assert main(["--index", str(tmp_path / "docs")]) == 2
    assert rag_server.requests == []
    assert "would both be uploaded as 'README.md'" in capsys.readouterr().err


def test_rag_prints_the_answer_then_numbered_sources(rag_server: FakeRag,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rag", "how", "do I read a file?", "--collection", "notes"]) == 0
    assert rag_server.requests == [{"path": "/query", "query": "how do I read a file?", "collection": "notes"}]
    out = capsys.readouterr().out
    assert out == ("Use open() [1].\n\nSources:\n[1] guide.md (chunk 3, score 0.812)\n"
                   "[2] ko.txt (chunk 0, score 0.500)\n")


def test_rag_errors_are_one_line_with_exit_codes(rag_server: FakeRag, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rag", "q", "--collection", "missing"]) == 1
    assert "404: collection 'missing' does not exist" in capsys.readouterr().err
    rag_server.fail_with = 503
    folder = make_tree(tmp_path / "notes")
    assert main(["--index", str(folder)]) == 1
    assert len(rag_server.requests) == 2  # the query, then the first file only: the service is down
    assert "503: postgres is unavailable" in capsys.readouterr().err


def test_unreachable_rag_service_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AI_RAG_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["--rag", "anything"]) == 3
    (tmp_path / "f.md").write_text("x")
    assert main(["--index", str(tmp_path / "f.md")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("RAG service is not reachable" in line for line in err)


def test_usage_errors(rag_server: FakeRag, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--index", str(tmp_path / "nope")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--index", str(tmp_path), "--rag", "q"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--rag", "q", "-i"])
    assert rag_server.requests == []


def test_helpers(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    assert [p.relative_to(root).as_posix() for p in files_to_index(root)] == ["blob.bin", "guide.md", "sub/ko.txt"]
    assert documents_root({"DATA_DIR": str(tmp_path)}) == tmp_path / "documents"
    assert documents_root({"DOCUMENTS_DIR": str(tmp_path / "d"), "DATA_DIR": "/x"}) == tmp_path / "d"
    tally = IndexTally()
    tally.add({"documents": [{"status": "unchanged"}], "chunks_added": 0, "skipped": []})
    assert tally.summary() == "1 document (1 unchanged); 0 chunks added, 0 removed; 0 skipped, 0 failed"
    assert list(format_sources([{"document": "a", "chunk": 1, "score": None}])) == ["[1] a (chunk 1, score ?)"]
