"""Versioned content: publishing a validated set of files to SQL, and switching every instance to it.

`engage content publish` validates the files and stores them as a new version; a Redis message
tells every instance, and each one also looks for a newer version every few seconds in case the
message was missed (Redis down, an instance starting). An instance validates a version again
before serving it (its code may be older or newer than the publisher's): a version that fails
is logged and skipped, and the content serving keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from sqlmodel import col

from server import audit
from server.content.loader import ContentInvalid, ContentStore, digest, read_files, validate_files
from server.content.models import ContentVersion
from server.db import Database, utcnow
from server.metrics import CONTENT_VERSION

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


def channel(ctx: Context) -> str:
    return ctx.redis.key("content", "published")


def origin_of(version: int) -> str:
    return f"version {version}"


async def latest_version(db: Database) -> int | None:
    async with db.session() as session:
        return (await session.execute(sa.select(sa.func.max(ContentVersion.version)))).scalar()


async def get_version(db: Database, version: int) -> ContentVersion | None:
    async with db.session() as session:
        return await session.get(ContentVersion, version)


async def list_versions(db: Database, limit: int = 20) -> list[ContentVersion]:
    async with db.session() as session:
        rows = await session.execute(
            sa.select(ContentVersion).order_by(col(ContentVersion.version).desc()).limit(limit)
        )
        return list(rows.scalars())


def store_of(row: ContentVersion) -> ContentStore:
    """A stored version, validated by this process's code; ContentInvalid if it does not pass."""
    store, issues = validate_files(row.files, origin_of(row.version or 0), version=row.version)
    if issues:
        raise ContentInvalid(issues)
    return store


async def publish(
    ctx: Context,
    files: dict[str, str],
    *,
    by: str,
    note: str | None = None,
    origin: str = "",
    actor: str | None = None,
) -> tuple[int, bool]:
    """Validate `files` and store them as the newest version; (version, whether it is new).

    Invalid content raises ContentInvalid and stores nothing. Files equal to the newest version
    publish nothing new. A new version is audited as `content.publish` by `actor` (default `by`)
    in the same transaction. Instances are told through Redis; those that miss it find it by
    polling.
    """
    _, issues = validate_files(files, origin)
    if issues:
        raise ContentInvalid(issues)
    fingerprint = digest(files)
    stored = ContentVersion.__table__.c
    async with ctx.db.transaction() as session:
        newest = (
            await session.execute(
                sa.select(stored.version, stored.digest).order_by(stored.version.desc()).limit(1)
            )
        ).first()
        if newest is not None and newest.digest == fingerprint:
            return newest.version, False
        row = ContentVersion(
            digest=fingerprint, files=files, published_at=utcnow(), published_by=by, note=note
        )
        session.add(row)
        await session.flush()
        version = row.version
        assert version is not None
        audit.record(
            session,
            actor=actor or by,
            action="content.publish",
            target=f"content:{version}",
            reason=note or "",
            details={"published_by": by, "digest": fingerprint, "files": len(files)},
        )
    await announce(ctx, version)
    return version, True


async def announce(ctx: Context, version: int) -> None:
    try:
        await ctx.redis.r.publish(channel(ctx), str(version))
    except Exception as exc:  # the instances' polling finds it anyway
        log.warning("content_announce_failed", version=version, error=type(exc).__name__)


async def startup_content(content_dir: Path, db: Database) -> ContentStore:
    """What an instance serves at start: the newest published version that this code accepts,
    else the files in the content directory (a fresh install before its first publish)."""
    try:
        versions = await list_versions(db, limit=5)
    except sa.exc.SQLAlchemyError:
        versions = []  # not migrated yet: the files serve
    for row in versions:
        try:
            return store_of(row)
        except ContentInvalid as exc:
            log.error("content_version_rejected", version=row.version, problems=[str(i) for i in exc.issues])
    store, issues = validate_files(read_files(content_dir), str(content_dir))
    if issues:
        raise ContentInvalid(issues)
    return store


class ContentWatcher:
    """Switches this instance to each newly published version: on a Redis message, or by polling."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rejected: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    def start(self) -> None:
        CONTENT_VERSION.set(self.ctx.content.version or 0)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._poll())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def check(self, hint: int | None = None) -> bool:
        """Serve the newest version this code accepts, if newer than the one serving; True if it
        switched. A version it rejects is logged once and skipped for the next newest."""
        async with self._lock:
            newest = await latest_version(self.ctx.db)
            current = self.ctx.content.version or 0
            if newest is None or newest <= current or newest in self.rejected:
                return False
            for version in range(newest, current, -1):
                if version in self.rejected:
                    continue
                row = await get_version(self.ctx.db, version)
                if row is None:
                    continue
                try:
                    store = store_of(row)
                except ContentInvalid as exc:
                    self.rejected.add(version)
                    log.error(
                        "content_version_rejected",
                        version=version,
                        serving=current,
                        problems=[str(i) for i in exc.issues][:20],
                    )
                    continue
                self.ctx.content = store
                CONTENT_VERSION.set(version)
                log.info("content_switched", version=version, previous=current, hint=hint)
                return True
            return False

    async def _poll(self) -> None:
        interval = self.ctx.settings.content_poll_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception as exc:  # SQL down for a moment: try again next time
                log.warning("content_poll_failed", error=type(exc).__name__)

    async def _listen(self) -> None:
        while True:
            pubsub = self.ctx.redis.r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel(self.ctx))
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        try:
                            await self.check(hint=int(message["data"]))
                        except Exception as exc:
                            log.warning("content_switch_failed", error=type(exc).__name__)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1)  # Redis away: the poll covers until it is back
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
