"""Common failures of `engage` commands: one line saying what to do, no traceback, nothing created."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import jwt
import pytest

from tests.cli.support import clean_env, engage
from tests.support import ROOT, PostgresDatabase, free_port

# One command of each kind: SQL only, SQL and Redis, the content serving, the server.
NEEDS_DATABASE = [("apikey", "create", "--name", "shop"), ("leaderboards", "check"), ("demo",), ("serve",)]


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", NEEDS_DATABASE, ids=" ".join)
def test_a_command_without_a_database_says_so_and_creates_nothing(tmp_path, args):
    line = one_line(engage(tmp_path, *args))
    assert f"The database at sqlite:///{tmp_path.resolve()}/var/engage.db does not exist" in line
    assert "`engage migrate`" in line
    assert list(tmp_path.iterdir()) == []  # no ./var, no empty database, no secret


def test_a_database_without_tables_says_to_migrate(tmp_path):
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    db = PostgresDatabase(admin_url, f"engage_empty_{uuid.uuid4().hex[:10]}").create() if admin_url else None
    try:
        if db is None:
            (tmp_path / "var").mkdir()
            (tmp_path / "var" / "engage.db").touch()
            env = clean_env()
        else:
            env = clean_env(ENGAGE_DATABASE_URL=db.url)
        line = one_line(engage(tmp_path, "apikey", "list", env=env))
        assert "has no tables: run `engage migrate` (or `make run`)." in line
    finally:
        if db is not None:
            db.drop()


def test_an_unreachable_database_and_redis_say_so(tmp_path):
    port = free_port()
    line = one_line(
        engage(
            tmp_path,
            "apikey",
            "list",
            env=clean_env(ENGAGE_DATABASE_URL=f"postgresql://u:pw@127.0.0.1:{port}/x"),
        )
    )
    assert line.startswith(f"Cannot reach the database at postgresql://u:***@127.0.0.1:{port}/x:")
    env = clean_env(ENGAGE_DATA_DIR=str(tmp_path / "data"), ENGAGE_CONTENT_DIR=str(ROOT / "content"))
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    line = one_line(
        engage(
            tmp_path, "leaderboards", "check", env={**env, "ENGAGE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        )
    )
    assert line.startswith(f"Cannot reach Redis at 127.0.0.1:{port}:")


def test_missing_content_says_so(tmp_path):
    env = clean_env(ENGAGE_CONTENT_DIR=str(tmp_path / "nowhere"))
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    line = one_line(engage(tmp_path, "demo", env=env))
    assert line.startswith("No content: nothing is published yet and")
    assert one_line(engage(tmp_path, "serve", env=env)).startswith("No content")


def test_the_debug_switch_shows_the_traceback(tmp_path):
    result = engage(tmp_path, "--debug", "apikey", "list")
    assert result.returncode != 0 and "Traceback" in result.stderr
    result = engage(tmp_path, "apikey", "list", env=clean_env(ENGAGE_DEBUG="1"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_token_never_creates_a_secret(tmp_path):
    line = one_line(engage(tmp_path, "token", "demo-alice"))
    assert line.startswith(f"No JWT secret in {tmp_path.resolve()}/var/jwt_secret:")
    assert "ENGAGE_JWT_SECRET" in line and "ENGAGE_DATA_DIR" in line
    assert list(tmp_path.iterdir()) == []
    # `engage migrate` creates the secret; a token then verifies with the server's key.
    env = clean_env(ENGAGE_CONTENT_DIR=str(ROOT / "content"))
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    secret = (tmp_path / "var" / "jwt_secret").read_text().strip()
    assert (tmp_path / "var" / "jwt_secret").stat().st_mode & 0o777 == 0o600
    result = engage(tmp_path, "token", "demo-alice", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "demo-alice"
    assert (tmp_path / "var" / "jwt_secret").read_text().strip() == secret
    # Elsewhere, without the server's data dir: refused, not a token signed with a new secret.
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert one_line(engage(other, "token", "demo-alice")).startswith("No JWT secret")
    assert list(other.iterdir()) == []


def test_migrate_keeps_the_secrets_it_created(tmp_path: Path):
    env = clean_env(ENGAGE_CONTENT_DIR=str(ROOT / "content"))
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    kept = {p.name: p.read_text() for p in (tmp_path / "var").iterdir() if p.name.endswith("_secret")}
    assert set(kept) == {"jwt_secret", "hash_secret"}
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    assert {name: (tmp_path / "var" / name).read_text() for name in kept} == kept
