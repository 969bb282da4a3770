"""`python -m services.alerts`: serve the alert receiver."""

from __future__ import annotations

from services.alerts.app import create_app
from services.alerts.settings import AlertsSettings
from services.common.serve import serve


def main() -> None:
    settings = AlertsSettings()
    serve(create_app, settings, settings.port)


if __name__ == "__main__":
    main()
