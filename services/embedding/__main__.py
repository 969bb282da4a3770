"""`python -m services.embedding`: serve the embedding model named by the environment."""

from __future__ import annotations

from services.common.serve import serve
from services.embedding.app import create_app
from services.embedding.settings import EmbeddingSettings


def main() -> None:
    settings = EmbeddingSettings()
    serve(create_app, settings, settings.port)


if __name__ == "__main__":
    main()
