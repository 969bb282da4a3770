"""Settings of the alert receiver, read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import SuiteSettings


class AlertsSettings(SuiteSettings):
    """Where the receiver listens and keeps what Alertmanager told it."""

    port: int = Field(9095, alias="ALERTS_PORT", ge=0, le=65535, description="Port to listen on.")
    resolved_hours: float = Field(
        24.0, alias="ALERTS_KEEP_RESOLVED_HOURS", gt=0,
        description="Resolved alerts stay listed (as recent history) for this many hours.",
    )

    def alerts_dir(self) -> Path:
        """Holds alerts.json; also the folder whose file system DATA_DIR's disk metrics describe."""
        return self.data_dir / "alerts"
