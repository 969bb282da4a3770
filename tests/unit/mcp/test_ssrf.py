"""SSRF guard: which URLs web tools may reach, by resolved address; the egress proxy applies it to redirects."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.mcp_server.guards.egress import REFUSED_HEADER, EgressProxy
from services.mcp_server.guards.ssrf import SsrfGuard, SsrfRefused
from services.mcp_server.settings import McpSettings


def guard(**env: object) -> SsrfGuard:
    return SsrfGuard.from_settings(McpSettings(_env_file=None, **env))  # type: ignore[call-arg]


REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/admin",
    "http://127.0.0.1:8020/mcp",
    "http://localhost/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",  # ... in hex
    "http://0251.0376.0251.0376/",  # ... in octal
    "http://0177.1/",  # 127.0.0.1, short octal form
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[::ffff:a00:1]/",  # 10.0.0.1 mapped, hex spelling
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
    "http://user:pw@10.1.1.1/",
    "http://example.com\\@10.0.0.1/",  # the browser reads a backslash as a path separator
    "file:///etc/passwd",
    "ftp://93.184.216.34/",
    "javascript:alert(1)",
    "http:///nohost",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_private_metadata_and_odd_forms_are_refused(url: str) -> None:
    with pytest.raises(SsrfRefused):
        await guard().vet_url(url)


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://1.1.1.1:8443/x?y=1", "http://[2606:4700::1111]/"])
async def test_public_addresses_are_allowed(url: str) -> None:
    target = await guard().vet_url(url)
    assert target.addresses


async def test_decimal_form_is_judged_by_its_address() -> None:
    with pytest.raises(SsrfRefused, match="169.254.169.254"):
        await guard().vet_url("http://2852039166/")


async def test_allow_private_opens_private_ranges_but_not_metadata() -> None:
    open_guard = guard(WEB_ALLOW_PRIVATE=True)
    assert (await open_guard.vet_url("http://10.0.0.1/")).addresses == ("10.0.0.1",)
    assert await open_guard.vet_url("http://127.0.0.1/")
    for url in ("http://169.254.169.254/", "http://2852039166/", "http://metadata.google.internal/",
                "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"):
        with pytest.raises(SsrfRefused, match="metadata"):
            await open_guard.vet_url(url)


async def test_allowed_hosts_open_exactly_the_named_hosts_and_networks_on_their_ports() -> None:
    listed = guard(WEB_ALLOWED_HOSTS="127.0.0.1:9000, intranet.local:443,10.20.0.0/16:80,[::1]:8080")
    assert await listed.vet_url("http://127.0.0.1:9000/")
    assert await listed.vet_url("http://10.20.3.4/")
    assert await listed.vet_url("http://[::1]:8080/")
    for url in ("http://127.0.0.2:9000/", "http://10.21.0.1/", "http://192.168.0.1/", "http://127.0.0.1:9001/",
                "http://127.0.0.1/", "http://10.20.3.4:8080/", "http://[::1]:8081/"):
        with pytest.raises(SsrfRefused):
            await listed.vet_url(url)
    assert listed.refused == ["127.0.0.2", "10.21.0.1", "192.168.0.1", "127.0.0.1", "127.0.0.1", "10.20.3.4", "::1"]


@pytest.mark.parametrize("entry", ["127.0.0.1", "intranet.local", "10.20.0.0/16", "::1", "[::1]", "host:http",
                                   "host:0", "host:70000", ":8080"])
def test_an_allowed_host_without_a_port_is_refused_at_start_up(entry: str) -> None:
    with pytest.raises(ValueError, match="WEB_ALLOWED_HOSTS"):
        McpSettings(_env_file=None, WEB_ALLOWED_HOSTS=f"example.org:443,{entry}")  # type: ignore[call-arg]


class _Redirects(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to/"))
            self.end_headers()
            return
        body = b"fine"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def proxy(origin: str) -> AsyncIterator[EgressProxy]:
    running = await EgressProxy(guard(WEB_ALLOWED_HOSTS=origin.removeprefix("http://")), timeout=5).start()
    yield running
    await running.close()


async def test_proxy_passes_allowed_requests_and_blocks_redirect_to_metadata(origin: str, proxy: EgressProxy) -> None:
    async with httpx.AsyncClient(proxy=proxy.url, follow_redirects=True, timeout=5) as client:
        fine = await client.get(f"{origin}/page")
        assert fine.status_code == 200 and fine.text == "fine"
        posted = await client.post(f"{origin}/form", content=b"x" * 100_000 + b"end")
        assert posted.content == b"dne" + b"x" * 100_000
        hop = await client.get(f"{origin}/to/http://169.254.169.254/latest/meta-data/")
    assert [r.status_code for r in hop.history] == [302]
    assert hop.status_code == 403
    assert "metadata" in hop.headers[REFUSED_HEADER]
    assert proxy.guard.refused == ["169.254.169.254"]


async def test_proxy_refuses_a_tunnel_to_a_private_address(proxy: EgressProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"private address" in answer


async def test_proxy_refuses_the_allowed_host_on_another_port(origin: str, proxy: EgressProxy) -> None:
    port = int(origin.rsplit(":", 1)[1])
    other = port + 1 if port < 65535 else port - 1
    async with httpx.AsyncClient(proxy=proxy.url, timeout=5) as client:
        answer = await client.get(f"http://127.0.0.1:{other}/")
    assert answer.status_code == 403
    assert "loopback" in answer.headers[REFUSED_HEADER]
