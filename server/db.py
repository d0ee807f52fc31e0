"""The SQL engine, sessions and the few column types every domain shares."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

from server.config import Settings

metadata = SQLModel.metadata
log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class TableModel(SQLModel):
    """The base of every table model: SQLModel with its table's type stated for the type checker
    (SQLModel sets `__table__` on each table class without declaring it)."""

    __table__: ClassVar[sa.Table]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Timestamps are stored in UTC and always come back timezone-aware (SQLite drops the offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# JSON columns (quest and badge progress, event properties, outbox payloads) are encoded with
# msgspec's C encoder: the standard library's was about a tenth of the CPU of a batch of events.
_JSON = {"json_serializer": _json_text, "json_deserializer": msgspec.json.decode}


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)
        _sqlite_write_transactions(engine)
        return engine
    return create_async_engine(
        url,
        **_JSON,
        # A fixed pool: requests beyond it wait for a connection. Overflow connections were
        # opened and closed under every burst, each a TLS attempt, a login and a cold cache of
        # prepared statements, a fifth of a check-in's CPU; waiting for one costs nothing.
        pool_size=settings.database_pool_size,
        max_overflow=0,
        # No pre-ping: it costs three round trips per checkout. A connection the server dropped is
        # invalidated on first use and that request fails once; recycling keeps connections fresh.
        pool_recycle=1800,
    )


def _sqlite_write_transactions(engine: AsyncEngine) -> None:
    """SQLite: WAL, and BEGIN IMMEDIATE for units of work so that concurrent writers queue.

    A deferred transaction that reads and then writes can meet another one doing the same and
    fail at once with "database is locked"; taking the write lock up front makes them wait.
    Read-only sessions begin deferred and never wait for writers (WAL).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get("engage_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)


class Database:
    """Owns the engine; `transaction()` is the one way services open a unit of work."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessionmaker = make_sessionmaker(self.engine)
        # SQLite has one writer at a time. Queueing writers here, in order, is far cheaper than
        # letting them poll SQLite's lock (its busy handler sleeps up to 100 ms between tries).
        self._sqlite_writer = asyncio.Lock() if settings.is_sqlite else None
        self._side: AsyncEngine | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work. Hooks queued with `after_commit` run once it has committed.

        Units of work never nest: open one, do everything in it, and let hooks start the next.
        """
        async with self._writer(), self.sessionmaker() as session:
            async with session.begin():
                session.info["unit_of_work"] = True
                if self._sqlite_writer is not None:
                    await session.connection(execution_options={"engage_write": True})
                yield session
                for hook in session.info.pop("before_commit", []):
                    await hook()
            hooks = session.info.pop("after_commit", [])
        for hook in hooks:
            await hook()

    def _writer(self) -> AbstractAsyncContextManager[Any]:
        return self._sqlite_writer if self._sqlite_writer is not None else nullcontext()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @property
    def side_engine(self) -> AsyncEngine:
        """PostgreSQL: a small pool of its own for one-statement transactions taken while a unit
        of work is open (a counter that must not stay locked until that unit commits). Never
        waits on the main pool, so a busy main pool cannot starve it."""
        if self._side is None:
            self._side = create_async_engine(
                self.settings.resolved_database_url, pool_size=2, max_overflow=2, pool_recycle=1800
            )
        return self._side

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._side is not None:
            await self._side.dispose()


def before_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` at the end of the unit of work of `session`, inside it, just before it commits."""
    session.info.setdefault("before_commit", []).append(hook)


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` after the transaction of `session` commits (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(hook)


async def execute_counting(session: AsyncSession, statement: sa.Executable) -> int:
    """Execute an INSERT, UPDATE or DELETE without RETURNING and return how many rows it touched.

    `AsyncSession.execute` is typed as giving a `Result`; such a statement gives a `CursorResult`,
    the kind that counts its rows.
    """
    result = await session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount


@functools.cache
def _insert_returning_id(table: sa.Table, ordered: bool) -> Any:
    return sa.insert(table).returning(table.c.id, sort_by_parameter_order=ordered)


async def insert_many(session: AsyncSession, table: sa.Table | Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one statement (a few for thousands) and return their ids in the rows' order.

    PostgreSQL: SQLAlchemy's ordered multi-row RETURNING. SQLite: its ordered form sends one
    statement per row, so the rows go in one plain multi-row statement; the transaction holds
    SQLite's only write lock and row ids are given in the order of the VALUES, so the ids sorted
    are the rows' ids in order.
    """
    if not rows:
        return []
    connection = await session.connection()  # Core statements: no ORM work on the way
    postgres = connection.dialect.name == "postgresql"
    ids = list((await connection.execute(_insert_returning_id(table, postgres), rows)).scalars())
    return ids if postgres else sorted(ids)


def insert_ignore(session: AsyncSession, table: sa.Table | Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's dialect (SQLite or PostgreSQL)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_or_touch(session: AsyncSession, table: sa.Table, keys: list[str], touch: str) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET touch = excluded.touch, for the session's dialect.

    With RETURNING it yields every row, new or existing, each one locked by this transaction in the
    order of the VALUES: a way to create-and-lock many rows in one statement without deadlocks.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    return stmt.on_conflict_do_update(index_elements=keys, set_={touch: stmt.excluded[touch]})


_LOCK_MEMBERS = sa.text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended('member:' || m, 0))) "
    "FROM (SELECT m FROM unnest(CAST(:ids AS text[])) AS t(m) ORDER BY m) AS sorted"
)


async def lock_members(session: AsyncSession, member_ids: list[str]) -> None:
    """Hold every member of a run of work, in one order, until the transaction ends.

    For work on many members whose rows of different kinds (ledger accounts, quest runs) would
    otherwise be locked in orders that vary with the events: two such transactions then meet on
    the first member they share and never deadlock. SQLite's writers are serialized already.
    """
    if session.get_bind().dialect.name == "postgresql" and member_ids:
        await session.execute(_LOCK_MEMBERS, {"ids": sorted(set(member_ids))})


async def driver_connection(session: AsyncSession) -> Any:
    """The driver's own connection under the session (asyncpg's on PostgreSQL), inside the
    session's transaction: for the few statements worth sending without the ORM."""
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection


class GroupCommit(Generic[T, R]):
    """Requests that arrive while units of work are being written wait, and go together in the
    next unit (group commit): at low load a unit holds one request and adds no latency; under
    load many requests share one transaction and its statements, which cost the same for one
    member as for a hundred.

    `run(items)` writes the items in one unit of work and answers each: its result, or the
    exception that refused it alone. At most `in_flight` units run at once, each of at most
    `most` items. A unit that fails as a whole answers each of its requests with that error or,
    with `alone_on_failure` (named `name` in the log), is written again one request at a time,
    so that one request's trouble is not the others'.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        in_flight: int = 2,
        most: int = 256,
        alone_on_failure: str | None = None,
    ) -> None:
        self._run = run
        self._in_flight = max(1, in_flight)
        self._most = max(1, most)
        self._alone_on_failure = alone_on_failure
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def shared(
        cls, ctx: Any, name: str, run: Callable[[list[T]], Awaitable[list[R | BaseException]]]
    ) -> GroupCommit[T, R]:
        """The process's group commit called `name`, kept in the context (`ctx.extras`) and made
        on first use, with `ENGAGE_UNITS_IN_FLIGHT` units at most; a unit that fails as a whole
        is written again one request at a time."""
        found: GroupCommit[T, R] | None = ctx.extras.get(name)
        if found is None:
            found = ctx.extras[name] = cls(run, in_flight=ctx.settings.units_in_flight, alone_on_failure=name)
        return found

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, answer))
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                unit = self._waiting[: self._most]
                del self._waiting[: self._most]
                results = await self._write([item for item, _ in unit])
                for (_, answer), result in zip(unit, results, strict=True):
                    if answer.done():  # the caller went away; what it asked for is written anyway
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self._running -= 1

    async def _write(self, items: list[T]) -> list[R | BaseException]:
        try:
            return await self._run(items)
        except Exception as exc:  # the unit failed as a whole
            if self._alone_on_failure is None or len(items) == 1:
                return [exc] * len(items)
            log.warning(
                "unit_of_work_failed", unit=self._alone_on_failure, requests=len(items), error=repr(exc)
            )
        return [result for item in items for result in await self._write([item])]
