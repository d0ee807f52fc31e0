"""Which directory a published version was read from.

`engage content publish --if-changed` (what `make run` does) publishes the files only when they
differ from the version last published from the same directory, so that starting again never
undoes a rollback or a publish made from elsewhere since.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.content.models import ContentVersion
from server.db import Database

_versions = ContentVersion.__table__.c


async def last_published_from(db: Database, source_dir: str) -> tuple[int, str] | None:
    """(version, digest) of the newest version published from `source_dir`, if any."""
    async with db.session() as session:
        row = (
            await session.execute(
                sa.select(_versions.version, _versions.digest)
                .where(_versions.source_dir == source_dir)
                .order_by(_versions.version.desc())
                .limit(1)
            )
        ).first()
    return (row.version, row.digest) if row is not None else None


async def record_source(db: Database, version: int, source_dir: str) -> None:
    """Remember that `version` holds the files of `source_dir` (published from it, or equal to them)."""
    async with db.transaction() as session:
        await session.execute(
            sa.update(ContentVersion.__table__)
            .where(_versions.version == version)
            .values(source_dir=source_dir)
        )
