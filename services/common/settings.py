"""Settings base shared by every service."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SuiteSettings(BaseSettings):
    """Fields every service reads; each service subclasses this."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    host: str = Field("127.0.0.1", alias="BIND_HOST", description="Address to bind; loopback by default.")
    api_key: str | None = Field(
        None, alias="API_KEY", description="Bearer key required when binding a non-loopback address."
    )
    data_dir: Path = Field(Path("data"), alias="DATA_DIR", description="Root for logs, databases and caches.")
    models_dir: Path = Field(Path("models"), alias="MODELS_DIR", description="Folder holding model files.")
    log_level: str = Field("INFO", alias="LOG_LEVEL", description="Python logging level.")
    log_json: bool = Field(False, alias="LOG_JSON", description="Log JSON lines (on in containers).")
    log_file: Path | None = Field(
        None, alias="LOG_FILE",
        description="Also write JSON log lines to this file (the compose files set it under /data/logs).",
    )
    log_max_bytes: int = Field(
        10 * 1024 * 1024, alias="LOG_MAX_BYTES", ge=1024,
        description="A log file is rotated when it reaches this size (LOG_FILE in containers; natively the "
        "supervisor rotates ${DATA_DIR}/logs/<service>.log).",
    )
    log_backups: int = Field(5, alias="LOG_BACKUPS", ge=0, description="Rotated log files kept (<name>.log.1 ...).")
    metrics_enabled: bool = Field(
        True, alias="METRICS_ENABLED",
        description="Request metrics and /metrics; false drops both (only for measuring their cost).",
    )
    trust_container_network: bool = Field(
        False,
        alias="TRUST_CONTAINER_NETWORK",
        description="Set by the compose files only: the container binds 0.0.0.0 but its port is published "
        "on host loopback, so no key is needed.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, alias="MAX_BODY_BYTES", description="Largest request body accepted, in bytes."
    )

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without an API key."""
        if not is_loopback(self.host) and not self.api_key and not self.trust_container_network:
            raise SystemExit(
                f"refusing to bind {self.host}: a non-loopback address needs API_KEY set "
                "(or bind BIND_HOST=127.0.0.1)"
            )
