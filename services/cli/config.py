"""Where the gateway is and how to call it: flags, then the environment, then the suite's `.env`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = "8000"
DEFAULT_TIMEOUT = 120.0
# The repository root of an editable install; `ai` runs from any folder, so the cwd's .env is not ours.
SUITE_ENV_FILE = Path(__file__).resolve().parents[2] / ".env"
KEYS = ("AI_GATEWAY_URL", "API_GATEWAY_PORT", "AI_API_KEY", "API_KEY", "AI_TIMEOUT", "AI_MAX_TOKENS",
        "AI_RAG_URL", "RAG_PORT", "DATA_DIR", "DOCUMENTS_DIR", "MCP_URL", "MCP_PORT", "MCP_API_KEY",
        "SECURITY_DB_PATH")


@dataclass(frozen=True)
class CliConfig:
    """Resolved connection settings."""

    url: str
    api_key: str | None
    timeout: float
    max_tokens: int | None


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a dotenv file that the CLI cares about; a missing file is empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in lines:
        line = raw.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in KEYS:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def merged_env(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> dict[str, str]:
    """The suite's `.env` values overlaid by the process environment (which wins), empty values dropped."""
    merged = read_env_file(env_file or SUITE_ENV_FILE)
    merged.update({k: v for k, v in (os.environ if environ is None else environ).items() if k in KEYS})
    return {k: v for k, v in merged.items() if v.strip()}


def default_url(env: Mapping[str, str]) -> str:
    return env.get("AI_GATEWAY_URL") or f"http://127.0.0.1:{env.get('API_GATEWAY_PORT', DEFAULT_PORT)}"


def resolve(
    url: str | None, timeout: float | None, max_tokens: int | None, env: Mapping[str, str]
) -> CliConfig:
    """Flags first, then environment; raise ValueError with a usage message for a bad env value."""
    try:
        env_timeout = float(env["AI_TIMEOUT"]) if "AI_TIMEOUT" in env else DEFAULT_TIMEOUT
        env_tokens = int(env["AI_MAX_TOKENS"]) if "AI_MAX_TOKENS" in env else None
    except ValueError as exc:
        raise ValueError(f"bad AI_TIMEOUT or AI_MAX_TOKENS in the environment: {exc}") from exc
    if env_tokens is not None and env_tokens <= 0:
        raise ValueError("AI_MAX_TOKENS must be a positive integer")
    if env_timeout <= 0:
        raise ValueError("AI_TIMEOUT must be a positive number of seconds")
    final_url = url or default_url(env)
    if not final_url.startswith(("http://", "https://")):
        raise ValueError(f"gateway URL must start with http:// or https://, got {final_url!r}")
    return CliConfig(
        url=final_url,
        api_key=env.get("AI_API_KEY") or env.get("API_KEY"),
        timeout=timeout if timeout is not None else env_timeout,
        max_tokens=max_tokens if max_tokens is not None else env_tokens,
    )
