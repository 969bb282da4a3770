"""The native PostgreSQL wrapper's settings and its refusals (the server itself: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stack.postgres import PostgresError, PostgresSettings, bundled_major, check_data_version, initialise


def test_settings_read_the_postgres_image_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("PGPORT", "POSTGRES_PORT", "PGDATA", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    default = PostgresSettings()
    assert (default.port, default.db, default.user) == (5432, "ai_suite", "ai_user")
    assert default.data_folder() == tmp_path / "d" / "postgresql"
    monkeypatch.setenv("POSTGRES_PORT", "6000")
    assert PostgresSettings().port == 6000
    monkeypatch.setenv("PGPORT", "6001")  # the compose file's name wins when both are set
    monkeypatch.setenv("PGDATA", str(tmp_path / "elsewhere"))
    assert PostgresSettings().port == 6001
    assert PostgresSettings().data_folder() == tmp_path / "elsewhere"


def test_bundled_server_is_a_real_postgres() -> None:
    assert int(bundled_major()) >= 16


def test_data_of_another_major_version_is_refused(tmp_path: Path) -> None:
    check_data_version(tmp_path, "18")  # empty: fine, initdb will fill it
    (tmp_path / "PG_VERSION").write_text("18\n")
    check_data_version(tmp_path, "18")
    (tmp_path / "PG_VERSION").write_text("16\n")
    with pytest.raises(PostgresError, match="PostgreSQL 16 data.*PostgreSQL 18"):
        check_data_version(tmp_path, "18")


def test_a_foreign_non_empty_folder_is_not_initialised(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PostgresError, match="not empty"):
        initialise(tmp_path, "ai_user", {})
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "PG_VERSION").write_text("18")
    assert initialise(tmp_path, "ai_user", {}) is False  # already a cluster: left alone
