"""`engage`: serve, migrate, and the operator's tools."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import typer

from server.config import Settings, SettingsError, get_settings

app = typer.Typer(
    help="Member-engagement game server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
apikey_app = typer.Typer(help="API keys for the brand's systems.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points and growth ledger.", no_args_is_help=True)
content_app = typer.Typer(help="The game's content (YAML under content/).", no_args_is_help=True)
boards_app = typer.Typer(help="The leaderboards' Redis index.", no_args_is_help=True)
manager_app = typer.Typer(help="Community managers' accounts for the admin console.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(ledger_app, name="ledger")
app.add_typer(content_app, name="content")
app.add_typer(boards_app, name="leaderboards")
app.add_typer(manager_app, name="manager")

T = TypeVar("T")


class CliError(Exception):
    """A failure the command explains in one line (printed without a traceback)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@app.callback()
def _options(
    debug: bool = typer.Option(
        False, "--debug", envvar="ENGAGE_DEBUG", help="On an error, show the whole traceback."
    ),
) -> None:
    if debug:
        os.environ["ENGAGE_DEBUG"] = "1"


def _debugging() -> bool:
    return os.environ.get("ENGAGE_DEBUG", "").lower() not in ("", "0", "false", "no")


def _redis_where(settings: Settings) -> str:
    if not settings.redis_url:
        return f"the embedded Redis in {settings.data_dir.resolve()}"
    from redis.connection import parse_url

    params = parse_url(settings.redis_url)
    if "path" in params:
        return f"Redis at unix://{params['path']}"
    return f"Redis at {params.get('host', 'localhost')}:{params.get('port', 6379)}"


def _with_context(
    settings: Settings,
    fn: Callable[[Any], Awaitable[T]],
    *,
    redis: bool | Literal["if-configured"] = False,
) -> T:
    """Run `fn(ctx)` with SQL (and Redis if asked) outside the web server.

    The database must be reachable and migrated, and Redis reachable when asked for: otherwise a
    CliError says which and what to do. "if-configured" uses ENGAGE_REDIS_URL when set, without
    requiring it to answer (publishing tells the instances through it, and they poll anyway).
    """
    from server.app import install
    from server.context import Context
    from server.logs import configure
    from server.migrate import DatabaseNotReady, open_database, reason
    from server.outbox import Outbox
    from server.redis import RedisHandle

    configure("ERROR", settings.log_json)
    install()
    use_redis = bool(settings.redis_url) if redis == "if-configured" else redis

    async def main() -> T:
        try:
            db = await open_database(settings)
        except DatabaseNotReady as exc:
            raise CliError(str(exc)) from exc
        handle = RedisHandle(settings)
        try:
            if use_redis:
                try:
                    handle.start()
                    if redis is True:
                        await handle.r.ping()
                except Exception as exc:
                    raise CliError(f"Cannot reach {_redis_where(settings)}: {reason(exc)}") from exc
            ctx = Context(settings=settings, db=db, redis=handle)
            ctx.outbox = Outbox(ctx)
            try:
                return await fn(ctx)
            finally:
                await ctx.outbox.close()
        finally:
            await db.dispose()
            await handle.close()

    return asyncio.run(main())


def _engage_command() -> str:
    """How the person who ran this command runs engage again (a path unless it is on PATH)."""
    exe = Path(sys.argv[0])
    if exe.name != "engage" or not exe.is_file():
        return "engage"
    on_path = shutil.which("engage")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "engage"
    try:
        return str(exe.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(exe.resolve())


def _first_steps(settings: Settings) -> list[str]:
    """What a new user does first, printed once by `engage serve` on the local defaults."""
    engage = _engage_command()
    base = settings.local_base_url
    return [
        f"engage is serving on {base} (SQLite and Redis under {settings.data_dir}/)",
        f"  API docs       {base}/schema/swagger",
        f"  member token   {engage} token demo-alice          (any member id)",
        f"  brand API key  {engage} apikey create --name shop  (send it as X-Api-Key)",
        f"  manager        {engage} manager create you@example.com --role owner"
        "  (then POST /v1/admin/sessions)",
    ]


@app.command()
def serve(
    host: str = typer.Option(None, help="default ENGAGE_HOST or 127.0.0.1"),
    port: int = typer.Option(None, help="default ENGAGE_PORT or 8000"),
    workers: int = typer.Option(1, help="processes (needs ENGAGE_REDIS_URL when more than one)"),
) -> None:
    """Serve the API and live messages (run `engage migrate` first)."""
    import uvicorn

    if host:
        os.environ["ENGAGE_HOST"] = host  # the workers read their settings from the environment
    if port:
        os.environ["ENGAGE_PORT"] = str(port)
    settings = get_settings()
    if workers > 1 and not settings.redis_url:
        typer.echo("several workers share one Redis: set ENGAGE_REDIS_URL", err=True)
        raise typer.Exit(2)
    from server.app import install
    from server.content.loader import ContentInvalid
    from server.content.service import startup_content
    from server.migrate import DatabaseNotReady, open_database

    install()

    async def check_ready() -> None:
        db = await open_database(settings)
        try:
            await _require_content(settings, db)
            await startup_content(settings.content_dir, db)
        finally:
            await db.dispose()

    try:
        asyncio.run(check_ready())
    except DatabaseNotReady as exc:
        raise CliError(f"refusing to start: {exc}") from None
    except ContentInvalid as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(1) from None
    settings.ensure_secrets()  # before the workers start, so that they all read the same ones
    if not settings.database_url:
        typer.echo("\n".join(_first_steps(settings)))
    uvicorn.run(
        "server.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        ws_max_size=64 * 1024,
        # Live messages are small JSON; per-socket compression state would cost ~34 KB a socket.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def pipeline() -> None:
    """Print the reaction pipeline: each domain in order, and what it reacts to, emits and runs."""
    from server.app import install

    for line in install().describe():
        typer.echo(line)


@app.command()
def migrate(revision: str = typer.Argument("head")) -> None:
    """Bring the database schema up to date (its own step, never at start-up)."""
    from server.migrate import shown_url, upgrade

    settings = get_settings()
    upgrade(settings, revision)
    typer.echo(f"database at {revision}: {shown_url(settings)}")


@app.command()
def token(
    member_id: str,
    ttl_days: float = typer.Option(30.0, help="days until the token expires"),
) -> None:
    """Print a member token for MEMBER_ID (its last line), signed with the configured key."""
    from datetime import timedelta

    from server.auth import issue_member_token
    from server.members.service import MEMBER_ID_RE

    if not MEMBER_ID_RE.match(member_id):
        typer.echo("a member id is 1 to 64 letters, digits or . _ : @ -", err=True)
        raise typer.Exit(2)
    typer.echo(issue_member_token(get_settings(), member_id, timedelta(days=ttl_days)))


@apikey_app.command("create")
def apikey_create(name: str = typer.Option(..., "--name", help="who uses it, e.g. 'shop backend'")) -> None:
    """Create an API key; the key is printed once, as the last line, and stored only hashed."""
    from server.audit import cli_actor
    from server.auth import create_api_key

    row, key = _with_context(get_settings(), lambda ctx: create_api_key(ctx, name, actor=cli_actor()))
    typer.echo(f"created API key {row.id} ({row.name}); store it now, it is not shown again:")
    typer.echo(key)


@apikey_app.command("list")
def apikey_list() -> None:
    """The API keys (ids and names, never the keys)."""
    from server.auth import list_api_keys

    for row in _with_context(get_settings(), list_api_keys):
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        typer.echo(f"{row.id}  {row.name}  created {row.created_at:%Y-%m-%d}  {state}")


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke an API key by id: refused at once on every instance sharing ENGAGE_REDIS_URL (within
    10 s without it)."""
    from server.audit import cli_actor
    from server.auth import revoke_api_key

    async def revoke(ctx: Any) -> bool:
        return await revoke_api_key(ctx, key_id, actor=cli_actor())

    # Through Redis when there is one: the instances then refuse the key at once.
    if not _with_context(get_settings(), revoke, redis="if-configured"):
        typer.echo(f"no active API key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@manager_app.command("create")
def manager_create(
    email: str,
    role: str = typer.Option(..., "--role", help="viewer, editor or owner"),
    name: str = typer.Option(None, "--name", help="the name shown in the console (default: from the email)"),
) -> None:
    """Create a manager account; the password is read from ENGAGE_MANAGER_PASSWORD, else asked twice."""
    from server.admin.service import create_manager
    from server.audit import cli_actor
    from server.errors import ProblemError

    password = os.environ.get("ENGAGE_MANAGER_PASSWORD") or typer.prompt(
        "Password (at least 12 characters)", hide_input=True, confirmation_prompt=True
    )
    try:
        row = _with_context(
            get_settings(), lambda ctx: create_manager(ctx, email, password, role, name, actor=cli_actor())
        )
    except ProblemError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created manager {row.email} ({row.role}), id {row.id}")


@manager_app.command("list")
def manager_list() -> None:
    """The managers' accounts (never their passwords)."""
    from server.admin.service import list_managers

    for row in _with_context(get_settings(), list_managers):
        state = f"disabled {row.disabled_at:%Y-%m-%d}" if row.disabled_at else "active"
        typer.echo(f"{row.email}  {row.role}  {row.display_name}  created {row.created_at:%Y-%m-%d}  {state}")


@manager_app.command("disable")
def manager_disable(email: str) -> None:
    """Disable a manager: no more logins, and their sessions end (on every instance within seconds)."""
    from server.admin.service import disable_manager
    from server.audit import cli_actor

    if not _with_context(get_settings(), lambda ctx: disable_manager(ctx, email, actor=cli_actor())):
        typer.echo(f"no active manager {email}", err=True)
        raise typer.Exit(1)
    typer.echo(f"disabled {email.strip().lower()}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every member's hash chain and balances; exit 1 and list what was altered."""
    from server.ledger.service import verify

    report = _with_context(get_settings(), verify)
    for problem in report.problems:
        typer.echo(problem)
    typer.echo(
        f"checked {report.entries} entries of {report.members} members: "
        + ("OK" if not report.problems else f"{len(report.problems)} problem(s)")
    )
    if report.problems:
        raise typer.Exit(1)


@ledger_app.command("expire")
def ledger_expire(
    member: list[str] = typer.Option(None, "--member", help="only this member (repeat for several)"),
) -> None:
    """Expire the points due now and queue the 'expiring soon' messages: what the scheduled job does."""
    from server.ledger.expiry import expire_points

    async def run(ctx: Any) -> Any:
        await _serving_content(ctx)
        return await expire_points(ctx, member_ids=member or None)

    # Without Redis here: the live messages wait in the outbox; the server applies them.
    report = _with_context(get_settings(), run)
    for refused in report.refused:
        typer.echo(f"refused: {refused}")
    typer.echo(
        f"checked {report.members} members: {report.expired_points} points expired from "
        f"{report.expired_members} members, {report.warned} 'expiring soon' messages queued"
    )
    if report.refused:
        raise typer.Exit(1)


@content_app.command("validate")
def content_validate(
    path: Path = typer.Argument(None, help="content dir (default ENGAGE_CONTENT_DIR)"),
) -> None:
    """Check the content; print every problem with file, line and field; exit 1 if any."""
    from server.app import install
    from server.content.loader import validate

    install()
    root = path or get_settings().content_dir
    _, issues = validate(root)
    for issue in issues:
        typer.echo(str(issue))
    if issues:
        typer.echo(f"{len(issues)} problem(s) in {root}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{root}: valid")


@content_app.command("publish")
def content_publish(
    path: Path = typer.Argument(None, help="content dir (default ENGAGE_CONTENT_DIR)"),
    note: str = typer.Option(None, help="why: shown in `engage content versions`"),
    by: str = typer.Option(None, help="who publishes (default the system user)"),
    if_changed: bool = typer.Option(
        False,
        "--if-changed",
        help="publish only if the files differ from the version last published from this directory",
    ),
) -> None:
    """Validate the content and publish it as a new version; every instance switches within seconds.

    Invalid content is never published: every problem is printed and the exit code is 1.

    With --if-changed (what `make run` does), the files are published only when they differ from
    the version last published from this directory, so that running it again never undoes a
    rollback or a publish made from elsewhere since.
    """
    import getpass

    from server.app import install
    from server.audit import cli_actor
    from server.content.loader import ContentInvalid, digest, read_files
    from server.content.service import latest_version, publish
    from server.content.sources import last_published_from, record_source

    install()  # the kinds of content, and so which files to read
    settings = get_settings()
    root = path or settings.content_dir
    if not root.is_dir():
        typer.echo(f"{root}: content directory not found (set ENGAGE_CONTENT_DIR or give PATH)", err=True)
        raise typer.Exit(1)
    files = read_files(root)
    source = str(root.resolve())

    async def run(ctx: Any) -> tuple[int, bool, int | None]:
        if if_changed:
            last = await last_published_from(ctx.db, source)
            if last is not None and last[1] == digest(files):
                return last[0], False, await latest_version(ctx.db)
        version, new = await publish(
            ctx, files, by=by or getpass.getuser(), note=note, origin=str(root), actor=cli_actor()
        )
        await record_source(ctx.db, version, source)
        return version, new, version

    try:
        version, new, live = _with_context(settings, run, redis="if-configured")
    except ContentInvalid as exc:
        for issue in exc.issues:
            typer.echo(str(issue))
        typer.echo(f"{len(exc.issues)} problem(s) in {root}: nothing published", err=True)
        raise typer.Exit(1) from None
    if new:
        typer.echo(f"published version {version}")
    elif live != version:
        typer.echo(f"content unchanged since version {version}: not published (version {live} is live)")
    elif if_changed:
        typer.echo(f"content unchanged since version {version}: not published")
    else:
        typer.echo(f"unchanged: version {version} is the same")


@content_app.command("versions")
def content_versions(limit: int = typer.Option(20, min=1, max=1000)) -> None:
    """The published versions, newest first."""
    from server.content.service import list_versions

    async def run(ctx: Any) -> list[Any]:
        return await list_versions(ctx.db, limit)

    for row in _with_context(get_settings(), run):
        typer.echo(
            f"{row.version}\t{row.published_at.isoformat(timespec='seconds')}\t{row.published_by}"
            f"\t{len(row.files)} files\t{row.digest[:12]}\t{row.note or ''}"
        )


@content_app.command("rollback")
def content_rollback(
    version: int = typer.Argument(..., help="the version whose files to serve again"),
    by: str = typer.Option(None, help="who rolls back (default the system user)"),
) -> None:
    """Publish the files of an earlier version again, as the newest version."""
    import getpass

    from server.audit import cli_actor
    from server.content.loader import ContentInvalid
    from server.content.service import get_version, publish

    async def run(ctx: Any) -> tuple[int, bool] | None:
        row = await get_version(ctx.db, version)
        if row is None:
            return None
        return await publish(
            ctx, row.files, by=by or getpass.getuser(), note=f"rollback to {version}", actor=cli_actor()
        )

    try:
        result = _with_context(get_settings(), run, redis="if-configured")
    except ContentInvalid as exc:
        for issue in exc.issues:
            typer.echo(str(issue))
        typer.echo(f"version {version} no longer passes the checks: nothing published", err=True)
        raise typer.Exit(1) from None
    if result is None:
        typer.echo(f"no version {version}", err=True)
        raise typer.Exit(1)
    new_version, new = result
    typer.echo(
        f"published version {new_version} (the files of {version})"
        if new
        else f"unchanged: version {new_version} is the same"
    )


@content_app.command("schema")
def content_schema(out: Path = typer.Argument(Path("content/schemas"))) -> None:
    """Write the JSON Schema of every content file, for editors."""
    from server.app import install
    from server.content.loader import dump_schemas

    install()
    for p in dump_schemas(out):
        typer.echo(str(p))


async def _require_content(settings: Settings, db: Any) -> None:
    """Refuse to go on with no content at all: nothing published and no content directory."""
    from server.content.service import latest_version

    if not settings.content_dir.is_dir() and await latest_version(db) is None:
        raise CliError(
            f"No content: nothing is published yet and {settings.content_dir.resolve()} does not exist:"
            " set ENGAGE_CONTENT_DIR, or run `engage content publish PATH`."
        )


async def _serving_content(ctx: Any) -> None:
    from server.content.service import startup_content

    await _require_content(ctx.settings, ctx.db)
    ctx.content = await startup_content(ctx.settings.content_dir, ctx.db)


@boards_app.command("rebuild")
def leaderboards_rebuild(
    board: str = typer.Argument(None, help="one board id (default: every board)"),
) -> None:
    """Restore the boards' Redis index from SQL: the current periods and those not archived yet."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from server.leaderboards.index import count_rows, live_periods, rebuild

    async def run(ctx: Any) -> list[Any]:
        await _serving_content(ctx)
        if board is not None and ctx.content.get("leaderboards").get(board) is None:
            typer.echo(f"no board '{board}' in the content serving", err=True)
            raise typer.Exit(2)
        periods = await live_periods(ctx, [board] if board else None)
        total = await count_rows(ctx, periods)
        columns = (TextColumn("rebuilding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("scores", total=total)
            return await rebuild(ctx, periods, lambda n: bar.advance(task, n))

    for done in _with_context(get_settings(), run, redis=True):
        typer.echo(
            f"{done.board_id} {done.period}: {done.members} members indexed, {done.caught_up} caught up"
        )


@app.command("rebuild-leaderboards", hidden=True)
def rebuild_leaderboards(board: str = typer.Argument(None)) -> None:
    """The same as `engage leaderboards rebuild` (the name the architecture notes use)."""
    leaderboards_rebuild(board)


@boards_app.command("check")
def leaderboards_check(board: str = typer.Argument(None, help="one board id (default: every board)")) -> None:
    """Compare the boards' Redis index with SQL; exit 1 and say what drifted."""
    from server.leaderboards.index import check, live_periods

    async def run(ctx: Any) -> list[Any]:
        await _serving_content(ctx)
        return await check(ctx, await live_periods(ctx, [board] if board else None))

    drifted = False
    for d in _with_context(get_settings(), run, redis=True):
        state = "OK" if d.clean else f"DRIFT: {d.missing} missing, {d.wrong} wrong, {d.extra} extra"
        typer.echo(f"{d.board_id} {d.period}: {d.in_sql} in SQL, {d.in_redis} in Redis: {state}")
        for example in d.examples:
            typer.echo(f"  {example}")
        drifted = drifted or not d.clean
    if drifted:
        typer.echo("run `engage leaderboards rebuild` to restore the index from SQL")
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Load the demo members (idempotent): a few profiles with a welcome bonus."""
    from server.demo import load_demo

    async def run(ctx: Any) -> list[str]:
        # The content serving, so that the welcome bonus counts on the boards like any award.
        await _serving_content(ctx)
        return await load_demo(ctx)

    # Without Redis here: the live messages and board scores wait in the outbox; the server applies them.
    lines = _with_context(get_settings(), run)
    for line in lines:
        typer.echo(line)


def _explain(exc: BaseException) -> str | None:
    """One line for the failures a person can fix (settings, database, Redis, content)."""
    import sqlalchemy as sa
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from server.content.loader import ContentInvalid
    from server.migrate import DatabaseNotReady, reason, shown_url

    if isinstance(exc, CliError | SettingsError | DatabaseNotReady):
        return str(exc)
    if isinstance(exc, ContentInvalid):
        return (
            f"The content does not pass its checks ({len(exc.issues)} problem(s), the first: "
            f"{exc.issues[0] if exc.issues else '?'}): run `engage content validate`."
        )
    settings = get_settings()
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"Cannot reach {_redis_where(settings)}: {reason(exc)}"
    if isinstance(exc, sa.exc.DBAPIError):
        return f"Cannot use the database at {shown_url(settings)}: {reason(exc)}"
    if isinstance(exc, OSError):
        return f"engage: {exc}"
    return None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _debugging():
            raise
        line = _explain(exc)
        if line is None:
            first = (str(exc).strip().splitlines() or [""])[0]
            line = f"engage: {type(exc).__name__}: {first} (ENGAGE_DEBUG=1 shows the traceback)"
        typer.echo(line, err=True)
        sys.exit(exc.exit_code if isinstance(exc, CliError) else 1)


if __name__ == "__main__":
    main()
