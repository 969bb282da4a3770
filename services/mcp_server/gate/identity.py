"""Who is calling: an API key over HTTP, the local owner over stdio, or an anonymous caller on loopback."""

from __future__ import annotations

from collections.abc import Mapping

from fastmcp.server.dependencies import get_http_request
from starlette.requests import Request

from services.common.settings import is_loopback
from services.mcp_server.gate.db import OWNER, hash_key
from services.mcp_server.gate.rbac import AuthCache, Identity
from services.mcp_server.settings import McpSettings

ANONYMOUS = "anonymous"


class AuthenticationError(Exception):
    """No usable credential: a wrong key, or no key where anonymous callers are refused."""


def credential(headers: Mapping[str, str]) -> str | None:
    """The API key from `Authorization: Bearer` or `X-API-Key`, if any.

    Any other Authorization header is refused rather than ignored: a caller who sent Basic or Digest
    credentials meant to authenticate, and must not be served as the anonymous guest instead.
    """
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("unsupported Authorization header: send 'Authorization: Bearer <API key>'")
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def anonymous_allowed(settings: McpSettings) -> bool:
    """Keyless callers get MCP_ANONYMOUS_ROLE only while the server listens on loopback alone."""
    return bool(settings.anonymous_role) and is_loopback(settings.host) and not settings.trust_container_network


def current_request() -> Request | None:
    """The HTTP request of the running MCP call; None over stdio or in process."""
    try:
        return get_http_request()
    except RuntimeError:
        return None


class IdentityResolver:
    """Maps a call to an `Identity` using the in-memory key table."""

    def __init__(self, settings: McpSettings, auth: AuthCache) -> None:
        self.settings = settings
        self.auth = auth
        self._anonymous = anonymous_allowed(settings)

    def resolve(self) -> Identity:
        """Identity of the MCP call being handled."""
        request = current_request()
        if request is None:
            return self.local_owner()
        return self.from_headers(request.headers)

    def local_owner(self) -> Identity:
        return Identity(OWNER, self.auth.role_of(OWNER) or self.settings.owner_role)

    def from_headers(self, headers: Mapping[str, str]) -> Identity:
        """Identity from HTTP headers; raises AuthenticationError for a bad or missing key."""
        key = credential(headers)
        if key is None:
            if not self._anonymous:
                raise AuthenticationError("authentication required: send 'Authorization: Bearer <API key>'")
            return Identity(ANONYMOUS, self.settings.anonymous_role)
        identity = self.auth.principal_for(hash_key(key))
        if identity is None:
            raise AuthenticationError("invalid API key")
        return identity
