"""Settings, read once from the environment (ENGAGE_*), with defaults that work on a laptop."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """A setting missing or unusable; the message says, in one line, what to set or run."""


_SECRET_NAMES = {"jwt_secret": "JWT secret", "hash_secret": "hash secret"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGAGE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./var")
    content_dir: Path = Path("./content")
    # Empty means a SQLite file under data_dir.
    database_url: str = ""
    database_pool_size: int = 20
    # Empty means an embedded redis-server started and stopped with the app (one process only).
    redis_url: str = ""
    # Every Redis key and channel starts with this, so deployments and tests can share one Redis.
    redis_prefix: str = "engage:"
    # The boards' sorted sets may live on a Redis of their own, a Redis Cluster among them
    # (any node's URL); empty means the Redis above.
    leaderboard_redis_url: str = ""
    leaderboard_redis_cluster: bool = False

    # Member tokens: HS256 with a shared secret, or RS256 with the brand's public key.
    jwt_secret: str = ""
    jwt_public_key: str = ""  # PEM text or a path to a PEM file
    jwt_private_key: str = ""  # only for `engage token` when RS256 is used
    jwt_audience: str = ""
    jwt_issuer: str = ""

    # Addresses of the load balancers whose X-Forwarded-For is trusted (comma-separated, or *).
    forwarded_allow_ips: str = ""
    log_level: str = "INFO"
    log_json: bool = True

    # Requests per minute, counted in Redis so that every instance shares the budget.
    rate_limit_member_per_minute: int = 600
    rate_limit_api_key_per_minute: int = 60000
    # Failed authentications per client address: guesses at keys and tokens are cut short.
    rate_limit_auth_failures_per_minute: int = 60
    # How long a community manager's admin session lasts after logging in.
    manager_session_hours: float = 12.0

    events_batch_max: int = 1000
    # Units of work a process writes at once for requests that share them (group commit: awards,
    # check-ins); requests arriving meanwhile wait and go together in the next unit.
    units_in_flight: int = 2
    realtime_history: int = 200  # live messages kept per member for `?since=` replay
    realtime_history_ttl_seconds: int = 7 * 24 * 3600
    realtime_send_queue: int = 256  # messages waiting for one socket before it is dropped as slow
    outbox_drain_seconds: float = 2.0
    # How often an instance looks for newly published content when the Redis message is missed.
    content_poll_seconds: float = 5.0
    outbox_claim_seconds: float = 30.0
    scheduler_enabled: bool = True
    checkin_upkeep_seconds: float = 600.0  # streak upkeep and "at risk" messages, once per period
    ledger_audit_seconds: float = 86400.0  # how often one instance re-verifies every ledger chain
    demo_welcome_points: int = 100
    # Scores still count this long after their period ends (events on their way); then the
    # period is archived, on the next archive tick (every leaderboard_archive_seconds).
    leaderboard_grace_seconds: float = 300.0
    leaderboard_archive_seconds: float = 60.0
    # How often each instance looks whether Redis lost the boards' index (restarted empty, failed
    # over, flushed); one instance then rebuilds it from SQL. 0: never (`engage leaderboards rebuild`).
    leaderboard_index_check_seconds: float = 5.0
    # How long a finished period's sorted sets stay in Redis after its grace (reads go to SQL).
    leaderboard_redis_keep_seconds: float = 2 * 86400.0
    # The top pages of a board (alike for every member) are read from Redis at most this often per
    # instance, and at once after a score changes on the instance; 0 reads them every time.
    leaderboard_page_cache_seconds: float = 1.0
    # Points expiry (rules in content/earning.yaml) and tier re-evaluation (content/tiers.yaml):
    # how often an instance looks for what is due; each member is handled once.
    points_expiry_seconds: float = 3600.0
    tier_review_seconds: float = 3600.0
    # Where members and their friends reach this server from outside: links shared (referrals)
    # and the ids of the verifiable badges it issues are built on it. Empty means this server's
    # own address, http://<host>:<port> (127.0.0.1 when it listens on every interface).
    public_base_url: str = ""
    # Claimed referrals past their conversion window are closed this often.
    referral_expiry_seconds: float = 3600.0
    # The key of the hashes kept of addresses, devices and payment means (referral clicks and
    # fraud checks). Every instance needs the same one; empty means one generated into data_dir.
    hash_secret: str = ""

    @model_validator(mode="after")
    def _default_public_base_url(self) -> Settings:
        if not self.public_base_url:
            self.public_base_url = self.local_base_url
        return self

    @property
    def local_base_url(self) -> str:
        """The address this server listens on, as a browser on the same machine reaches it."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # listening everywhere: the loopback reaches it
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'engage.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def jwt_algorithm(self) -> str:
        return "RS256" if self.jwt_public_key else "HS256"

    def _pem(self, value: str) -> str:
        if value.strip().startswith("-----BEGIN"):
            return value
        return Path(value).read_text()

    @cached_property
    def jwt_verify_key(self) -> str:
        if self.jwt_public_key:
            return self._pem(self.jwt_public_key)
        return self.hs256_secret

    @cached_property
    def jwt_signing_key(self) -> str:
        if self.jwt_public_key:
            if not self.jwt_private_key:
                raise SettingsError("RS256 is configured: set ENGAGE_JWT_PRIVATE_KEY to sign tokens locally")
            return self._pem(self.jwt_private_key)
        return self.hs256_secret

    @cached_property
    def fingerprint_key(self) -> bytes:
        return (self.hash_secret or self._kept_secret("hash_secret")).encode()

    @cached_property
    def hs256_secret(self) -> str:
        """The configured secret, or the one `engage migrate` generated into the data dir."""
        if self.jwt_secret:
            return self.jwt_secret
        return self._kept_secret("jwt_secret")

    def _kept_secret(self, name: str) -> str:
        """A secret kept in the data dir. Only `ensure_secrets` creates one: a command that made its
        own would sign with a key the running server has never seen."""
        path = self.data_dir / name
        try:
            value = path.read_text().strip()
        except FileNotFoundError:
            value = ""
        if not value:
            raise SettingsError(
                f"No {_SECRET_NAMES[name]} in {path.resolve()}: set ENGAGE_{name.upper()}, point"
                " ENGAGE_DATA_DIR at the server's data dir, or run `engage migrate` to create one."
            )
        return value

    def ensure_secrets(self) -> list[Path]:
        """Generate the secrets not configured into the data dir, once; the paths it created.

        Run by `engage migrate` and `engage serve` only, so that every other command reads the
        same secrets as the server it works with."""
        wanted = []
        if not self.jwt_secret and not self.jwt_public_key:
            wanted.append("jwt_secret")
        if not self.hash_secret:
            wanted.append("hash_secret")
        created = []
        for name in wanted:
            path = self.data_dir / name
            if path.exists():
                continue
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: its secret stands
                continue
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            created.append(path)
        return created


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
