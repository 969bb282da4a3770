"""`python -m services.web`: serve the chat app on WEB_HOST:WEB_PORT (127.0.0.1:3000 by default)."""

from __future__ import annotations

from services.common.serve import serve
from services.web.app import create_app
from services.web.settings import WebSettings


def main() -> None:
    settings = WebSettings()
    serve(create_app, settings, settings.port)


if __name__ == "__main__":
    main()
