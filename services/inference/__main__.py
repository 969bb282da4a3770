"""`python -m services.inference`: serve the model named by the environment."""

from __future__ import annotations

from services.common.serve import serve
from services.inference.app import create_app
from services.inference.settings import InferenceSettings
from services.stack.models import ModelMissing, require_model


def main() -> None:
    settings = InferenceSettings()
    try:
        require_model(settings.model_path())
    except ModelMissing as exc:
        raise SystemExit(str(exc)) from None
    serve(create_app, settings, settings.port)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
