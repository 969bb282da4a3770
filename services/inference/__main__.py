"""`python -m services.inference`: serve the model named by the environment."""

from __future__ import annotations

from services.common.serve import serve
from services.inference.app import create_app
from services.inference.settings import InferenceSettings


def main() -> None:
    settings = InferenceSettings()
    serve(create_app, settings, settings.port)


if __name__ == "__main__":
    main()
