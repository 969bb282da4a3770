"""What a service needs to know about its model files: the bundled names, and a clear error when one is missing."""

from __future__ import annotations

from pathlib import Path

from services.common.errors import StartupRefused

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBED_DIR = "all-MiniLM-L6-v2"


class ModelMissing(StartupRefused, FileNotFoundError):
    """A model file the configuration names is not in MODELS_DIR."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"model file {path.name!r} not found in {path.parent}. "
            f"Fetch it with: ai-suite models fetch --models-dir {path.parent}"
        )
        self.path = path


def require_model(path: Path) -> Path:
    """Return `path` if it exists, else raise an error that says how to fetch it."""
    if not path.exists():
        raise ModelMissing(path)
    return path
