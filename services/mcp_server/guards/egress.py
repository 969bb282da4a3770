"""A loopback HTTP proxy that a web tool's browser context is pinned to: every connection is vetted.

Playwright's request routing never sees redirect hops, and a name checked by the route handler may
resolve differently a moment later when Chromium connects (DNS rebinding). Here the proxy resolves
the host, checks every address with the SSRF guard, and connects to the address it checked, for
page loads, subresources, redirects, frames, workers and WebSockets alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from services.mcp_server.guards.ssrf import SsrfGuard, SsrfRefused

log = logging.getLogger(__name__)

REFUSED_HEADER = "X-SSRF-Refused"
HOP_HEADERS = {b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization", b"proxy-authenticate"}
MAX_HEAD = 64 * 1024


class EgressProxy:
    """One proxy per tool call, on 127.0.0.1 and a free port; `guard.refused` records what it turned away."""

    def __init__(self, guard: SsrfGuard, timeout: float) -> None:
        self.guard = guard
        self.timeout = timeout
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> EgressProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            line, _, headers = head.partition(b"\r\n")
            method, target, version = line.decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, headers, reader, writer)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _connect(self, host: str, port: int, writer: asyncio.StreamWriter
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to a vetted address of host:port, or None after answering the browser with the refusal."""
        try:
            target = await self.guard.vet_host(host, port)
        except SsrfRefused as exc:
            await _answer(writer, 403, "Forbidden", str(exc), refused=True)
            return None
        last = "no address"
        for address in target.addresses:
            try:
                async with asyncio.timeout(self.timeout):
                    return await asyncio.open_connection(address, port, limit=MAX_HEAD)
            except (OSError, TimeoutError) as exc:
                last = f"{address}: {exc}"
        await _answer(writer, 502, "Bad Gateway", f"cannot connect to {host}:{port} ({last})")
        return None

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        upstream = await self._connect(host, int(port), writer)
        if upstream is None:
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await _relay(reader, writer, *upstream)

    async def _forward(self, method: str, target: str, version: str, headers: bytes,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            await _answer(writer, 400, "Bad Request", "the proxy takes absolute http URLs and CONNECT only")
            return
        upstream = await self._connect(parts.hostname, parts.port or 80, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # one request per connection: a kept-alive proxy connection could carry the next request to another host
        up_writer.write(f"{method} {path} {version}\r\n".encode("latin-1") + _closing(headers))
        # the request body (a form post) flows while the answer is awaited
        upload = asyncio.create_task(_pipe(reader, up_writer))
        try:
            head = await up_reader.readuntil(b"\r\n\r\n")
            status, _, rest = head.partition(b"\r\n")
            writer.write(status + b"\r\n" + _closing(rest, proxy=True))
            await writer.drain()
            await _pipe(up_reader, writer)
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            up_writer.close()


def _closing(headers: bytes, proxy: bool = False) -> bytes:
    """Header lines without hop-by-hop fields, asking for the connection to close after this message."""
    lines = [line for line in headers.split(b"\r\n") if line]
    kept = [line for line in lines if line.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
    kept.append(b"Connection: close")
    if proxy:
        kept.append(b"Proxy-Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str, message: str, refused: bool = False) -> None:
    body = message.encode()
    extra = f"{REFUSED_HEADER}: {message.encode('ascii', 'replace').decode()}\r\n" if refused else ""
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                 up_writer: asyncio.StreamWriter) -> None:
    """Copy both ways until either side ends the tunnel."""
    down = asyncio.create_task(_pipe(up_reader, writer))
    up = asyncio.create_task(_pipe(reader, up_writer))
    try:
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)
        up_writer.close()
