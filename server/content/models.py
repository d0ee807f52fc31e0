from __future__ import annotations

from datetime import datetime

from sqlmodel import JSON, Column, Field

from server.db import TableModel, UTCDateTime


class ContentVersion(TableModel, table=True):
    """One published version of the game's content: the files exactly as they were validated."""

    __tablename__ = "content_versions"

    version: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64, index=True)
    files: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    published_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    published_by: str = Field(max_length=100)
    note: str | None = Field(default=None, max_length=500)
    # The directory a publish from files read (its absolute path); empty for a rollback. What
    # `engage content publish --if-changed` compares the files with.
    source_dir: str | None = Field(default=None, max_length=1000)
