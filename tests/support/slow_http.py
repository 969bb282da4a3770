"""A loopback HTTP server that takes its time over every request and counts how many it holds at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_S = 1.0


class Counter:
    """Requests in flight now, and the most ever at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.done = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1
            self.done += 1


class Slow(BaseHTTPRequestHandler):
    """POST /query answers like the RAG service, GET /slow serves a page; each takes `delay_s` seconds."""

    counter = Counter()
    delay_s = SLOW_S

    def _answer(self, body: bytes, content_type: str) -> None:
        with self.counter:
            time.sleep(self.delay_s)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(json.dumps({"answer": "slow", "sources": [], "collection": "default"}).encode(),
                     "application/json")

    def do_GET(self) -> None:  # noqa: N802
        if self.path != "/slow":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._answer(b"<html><head><title>Slow</title></head><body><p>took its time</p></body></html>",
                     "text/html; charset=utf-8")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def slow_server(delay_s: float = SLOW_S) -> Iterator[tuple[str, Counter]]:
    """The server on 127.0.0.1 with a fresh counter; yields its host:port and the counter."""
    Slow.counter = Counter()
    Slow.delay_s = delay_s
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", Slow.counter
    finally:
        server.shutdown()
        server.server_close()
