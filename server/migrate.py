"""Schema migrations (Alembic), run as their own step: `engage migrate`."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from server.config import Settings
from server.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseNotReady(RuntimeError):
    """The database cannot be used as it is; the message says, in one line, what to do."""


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema up to `revision`, and create the secrets not configured (the one step,
    with `engage serve`, that may)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.ensure_secrets()
    command.upgrade(alembic_config(settings), revision)


def revision(settings: Settings, message: str) -> None:
    command.revision(alembic_config(settings), message=message, autogenerate=True)


def shown_url(settings: Settings) -> str:
    """The database's URL as a person reads it: no driver, no password."""
    url = sa.make_url(settings.resolved_database_url)
    url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=True)


def head_revisions(settings: Settings) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


async def open_database(settings: Settings) -> Database:
    """The database, once it is known to be reachable and migrated to this code's head; else
    DatabaseNotReady. A SQLite file that does not exist is reported as such, not created."""
    _check_sqlite_file(settings)
    db = Database(settings)
    try:
        await check_database(settings, db)
    except BaseException:
        await db.dispose()
        raise
    return db


def _check_sqlite_file(settings: Settings) -> None:
    if not settings.is_sqlite:
        return
    if not Path(sa.make_url(settings.resolved_database_url).database or "").is_file():
        where = shown_url(settings)
        raise DatabaseNotReady(
            f"The database at {where} does not exist: run `engage migrate` (or `make run`),"
            " or point ENGAGE_DATA_DIR / ENGAGE_DATABASE_URL at the server's."
        )


async def check_database(settings: Settings, db: Database) -> None:
    """Raise DatabaseNotReady unless the database is reachable and migrated to this code's head."""
    where = shown_url(settings)
    try:
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            current: set[str] = set()
            if "alembic_version" in tables:
                rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                current = {row[0] for row in rows}
    except (sa.exc.DBAPIError, OSError) as exc:
        raise DatabaseNotReady(f"Cannot reach the database at {where}: {reason(exc)}") from exc
    if not current:
        raise DatabaseNotReady(
            f"The database at {where} has no tables: run `engage migrate` (or `make run`)."
        )
    heads = head_revisions(settings)
    if current != heads:
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config(settings)).walk_revisions()}
        at = ", ".join(sorted(current))
        if current - known:
            raise DatabaseNotReady(
                f"The database at {where} is at revision {at}, which this code does not know:"
                " it was migrated by a newer version of engage."
            )
        raise DatabaseNotReady(
            f"The database at {where} is at revision {at}, this code needs {', '.join(sorted(heads))}:"
            " run `engage migrate`."
        )


def reason(exc: BaseException) -> str:
    """The first line of what the driver said, without SQLAlchemy's background link."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return (text[0] if text else type(inner).__name__).rstrip(".") + "."
