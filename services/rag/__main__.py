"""`python -m services.rag`: serve indexing and question answering."""

from __future__ import annotations

from services.common.serve import serve
from services.rag.app import create_app
from services.rag.settings import RagSettings


def main() -> None:
    settings = RagSettings()
    serve(create_app, settings, settings.port)


if __name__ == "__main__":
    main()
