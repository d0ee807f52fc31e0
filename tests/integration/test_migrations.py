"""The migrations build exactly the tables the models describe (nothing missing, nothing extra)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.app import models
from server.config import Settings
from server.migrate import upgrade


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    models()
    db = tmp_path / "schema.db"
    upgrade(Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{db}"))
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == [], "the models changed without a migration:\n" + "\n".join(map(str, diff))
