"""`python -m services.embedding`: serve the embedding model named by the environment."""

from __future__ import annotations

from services.common.serve import serve
from services.embedding.app import create_app
from services.embedding.settings import EmbeddingSettings
from services.stack.models import ModelMissing, require_model


def main() -> None:
    settings = EmbeddingSettings()
    path = settings.model_path()
    try:
        if path is not None:
            require_model(path)
    except ModelMissing as exc:
        raise SystemExit(str(exc)) from None
    serve(create_app, settings, settings.port)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
