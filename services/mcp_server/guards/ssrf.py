"""SSRF guard of the web tools: which URLs and addresses a tool-driven browser may reach.

Hosts are judged by the addresses they resolve to (getaddrinfo, off the event loop), never by the
spelling of the URL, so decimal, octal, hex and IPv4-mapped forms of a private address are caught.
The browser itself is pinned to `EgressProxy` (guards/egress.py), which resolves, checks and then
connects to the vetted address: that covers redirects, subframes, WebSockets and DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Route

    from services.mcp_server.settings import McpSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog", "instance-data"})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
# ranges some Python versions still count as global: carrier-grade NAT, benchmarking, NAT64 local use
EXTRA_BLOCKED = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "198.18.0.0/15", "64:ff9b:1::/48"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
WEB_SCHEMES = ("http", "https")


class SsrfRefused(Exception):
    """A URL or address the web tools must not reach; the message says why."""


@dataclass(frozen=True)
class Target:
    """A vetted destination: the host as written, its port and the addresses it may be reached at."""

    host: str
    port: int
    addresses: tuple[str, ...]


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, 6to4, Teredo, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_metadata(ip: IPAddress) -> bool:
    """True for a cloud metadata address, in any IPv6 form too."""
    embedded = _embedded_v4(ip)
    return ip in METADATA_ADDRESSES or (embedded is not None and embedded in METADATA_ADDRESSES)


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    embedded = _embedded_v4(ip)
    if embedded is not None:
        problem = address_problem(embedded)
        return f"an IPv6 form of {embedded} ({problem})" if problem else None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private or any(ip in net for net in EXTRA_BLOCKED if net.version == ip.version):
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def _host_key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


PORT = re.compile(r"[0-9]{1,5}")
Allowed = tuple[frozenset[tuple[str, int]], tuple[tuple[IPNetwork, int], ...]]


def parse_allowed_hosts(entries: list[str]) -> Allowed:
    """WEB_ALLOWED_HOSTS as (name, port) pairs and (network, port) pairs.

    Every entry names a port: a bare host would open every service on it (a database, the suite's own
    APIs) to a tool-driven browser, where the person meant one web server. Raises ValueError otherwise.
    """
    names: set[tuple[str, int]] = set()
    networks: list[tuple[IPNetwork, int]] = []
    for entry in entries:
        host, port = _host_and_port(entry)
        try:
            networks.append((ipaddress.ip_network(host, strict=False), port))
        except ValueError:
            names.add((host, port))
    return frozenset(names), tuple(networks)


def _host_and_port(entry: str) -> tuple[str, int]:
    text = entry.strip()
    if text.startswith("["):  # an IPv6 address or network: [::1]:8080, [fd00::/8]:443
        host, closed, rest = text[1:].partition("]")
        port = rest[1:] if closed and rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
        if ":" in host:
            host = ""  # an IPv6 form without brackets: its port cannot be told apart
    if not host or not PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"WEB_ALLOWED_HOSTS entry {entry!r} must name a host and a port, e.g. "
                         "127.0.0.1:8080, intranet.local:443, 10.20.0.0/16:80 or [::1]:8080")
    return _host_key(host), int(port)


@dataclass
class SsrfGuard:
    """Decides from settings whether a host may be reached; remembers what it refused."""

    allow_private: bool = False
    allowed_hosts: frozenset[tuple[str, int]] = frozenset()
    allowed_networks: tuple[tuple[IPNetwork, int], ...] = ()
    refused: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: McpSettings) -> SsrfGuard:
        """WEB_ALLOW_PRIVATE and WEB_ALLOWED_HOSTS (names, addresses or CIDR networks, each with a port)."""
        names, networks = parse_allowed_hosts(settings.web_allowed_hosts)
        return cls(settings.web_allow_private, names, networks)

    def fork(self) -> SsrfGuard:
        """The same policy with an empty refusal record, for one tool call."""
        return SsrfGuard(self.allow_private, self.allowed_hosts, self.allowed_networks)

    def _address_allowed(self, ip: IPAddress, port: int) -> str | None:
        if any(ip.version == net.version and ip in net and port == allowed for net, allowed in self.allowed_networks):
            return None
        problem = address_problem(ip)
        # metadata endpoints stay closed even with WEB_ALLOW_PRIVATE: they hand out credentials
        if problem is None or (self.allow_private and not is_metadata(ip)):
            return None
        return problem

    async def vet_host(self, host: str, port: int) -> Target:
        """Resolve `host` and check every address; raise SsrfRefused naming the first bad one."""
        key = _host_key(host)
        if not key:
            raise SsrfRefused("the URL has no host")
        if (key, port) in self.allowed_hosts:
            return Target(key, port, tuple(await _resolve(key, port)))
        if key in METADATA_HOSTS:
            return self._refuse(key, f"{key} is a cloud metadata host")
        addresses = await _resolve(key, port)
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
            problem = self._address_allowed(ip, port)
            if problem:
                shown = key if key == text else f"{key} ({text})"
                hint = "WEB_ALLOWED_HOSTS" if is_metadata(ip) else "WEB_ALLOWED_HOSTS or WEB_ALLOW_PRIVATE"
                return self._refuse(key, f"{shown} is {problem}; only {hint} can allow it (as host:{port})")
        return Target(key, port, tuple(addresses))

    def _refuse(self, host: str, reason: str) -> Target:
        self.refused.append(host)
        raise SsrfRefused(f"refused by the SSRF guard: {reason}")

    async def vet_url(self, url: str) -> Target:
        """Check an http(s) URL the way the browser will read it."""
        if any(ch in url for ch in "\\\t\r\n\x00") or url != url.strip():
            raise SsrfRefused("the URL holds backslashes, whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise SsrfRefused(f"not a valid URL: {exc}") from exc
        if parts.scheme not in WEB_SCHEMES:
            raise SsrfRefused(f"only http and https URLs are allowed, not {parts.scheme or 'a bare path'!r}")
        return await self.vet_host(parts.hostname or "", port)


async def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in resolver order (literal addresses of any spelling included)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SsrfRefused(f"cannot resolve {host!r}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise SsrfRefused(f"{host!r} resolves to no address")
    return addresses


async def install_route_guard(context: BrowserContext, guard: SsrfGuard) -> None:
    """Abort, before it leaves the browser, every request whose host the guard refuses.

    Playwright does not route redirect hops, so this is the early, friendly check; the egress
    proxy the context is pinned to enforces the same policy on every connection.
    """
    verdicts: dict[tuple[str, int], str | None] = {}

    async def check(route: Route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme not in ("http", "https", "ws", "wss"):
            await route.continue_()
            return
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        key = (parts.hostname or "", port)
        if key not in verdicts:
            try:
                await guard.vet_host(*key)
                verdicts[key] = None
            except SsrfRefused as exc:
                verdicts[key] = str(exc)
        if verdicts[key] is None:
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    await context.route("**/*", check)
