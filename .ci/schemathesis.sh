#!/usr/bin/env bash
# The OpenAPI description against the real server: schemathesis (pinned in uv.lock) with every
# check, on a fresh PostgreSQL database, so that the description cannot drift from what the
# server does. `make api-check` runs it; CI runs it after the PostgreSQL pass.
#
# It starts `engage serve` on 127.0.0.1 at a free port with a data dir of its own, a database of
# its own on 127.0.0.1:5432 (created here, dropped at the end), and Redis on 127.0.0.1:6379 under a
# key prefix of its own (deleted at the end), or an embedded Redis when none answers there. The
# content is published and the demo members loaded; an API key, a member token and a manager's
# sessions are made the way a user makes them. Any failure of any check fails the script, and so
# does a traceback in the server's log.
#
# API_CHECK_EXAMPLES (default 10) bounds the examples per operation and phase; API_CHECK_TIMEOUT
# (seconds, default 900) bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
EXAMPLES="${API_CHECK_EXAMPLES:-10}"
TIMEOUT="${API_CHECK_TIMEOUT:-900}"
PG_ADMIN_URL="${API_CHECK_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
REDIS_URL="${API_CHECK_REDIS_URL:-redis://127.0.0.1:6379/0}"

RUN_ID="$(date +%s)-$$"
DB_NAME="engage_api_check_${RUN_ID//-/_}"
PREFIX="engage-api-check-${RUN_ID}:"
DATA_DIR="$(mktemp -d -t engage-api-check-XXXXXX)"
LOG="$DATA_DIR/server.log"
SERVER_PID=""

support() { PYTHONPATH=. "$BIN/python" -c "$1" "${@:2}"; }

cleanup() {
  status=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  support 'import sys; from tests.support import PostgresDatabase as P; P(sys.argv[1], sys.argv[2]).drop()' \
    "$PG_ADMIN_URL" "$DB_NAME" || echo "!! could not drop database $DB_NAME" >&2
  if [ -n "${ENGAGE_REDIS_URL:-}" ]; then
    support 'import sys; from tests.support import cleanup_prefix; cleanup_prefix(sys.argv[1], sys.argv[2])' \
      "$ENGAGE_REDIS_URL" "$PREFIX" || true
  fi
  rm -rf "$DATA_DIR"
  exit "$status"
}
trap cleanup EXIT

if ! support 'import sys; from tests.support import PostgresDatabase as P; P(sys.argv[1], sys.argv[2]).create()' \
  "$PG_ADMIN_URL" "$DB_NAME"; then
  echo "!! PostgreSQL at $PG_ADMIN_URL is needed (set API_CHECK_DATABASE_URL)" >&2
  exit 1
fi
PG_SERVER="${PG_ADMIN_URL#*://}"
PORT="$(support 'from tests.support import free_port; print(free_port())')"

export ENGAGE_DATA_DIR="$DATA_DIR"
export ENGAGE_DATABASE_URL="postgresql+asyncpg://${PG_SERVER%/*}/$DB_NAME"
export ENGAGE_REDIS_PREFIX="$PREFIX"
if "$BIN/python" -c "import redis,sys; sys.exit(0 if redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping() else 1)" \
  "$REDIS_URL" 2>/dev/null; then
  export ENGAGE_REDIS_URL="$REDIS_URL"
else
  echo "Redis at $REDIS_URL does not answer: the server embeds its own"
fi
export ENGAGE_HOST=127.0.0.1 ENGAGE_PORT="$PORT" ENGAGE_PUBLIC_BASE_URL="http://127.0.0.1:$PORT"
export ENGAGE_JWT_SECRET="api-check-$("$BIN/python" -c 'import secrets; print(secrets.token_hex(24))')"
export ENGAGE_LOG_LEVEL=WARNING
# The fuzzer sends thousands of requests with one member token and one key, and bad credentials on
# purpose: the limits would soon answer only 429.
export ENGAGE_RATE_LIMIT_MEMBER_PER_MINUTE=100000000 ENGAGE_RATE_LIMIT_API_KEY_PER_MINUTE=100000000
export ENGAGE_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE=100000000

echo "== api-check: migrate, publish content, demo members, credentials"
"$BIN/engage" migrate >/dev/null
"$BIN/engage" content publish --note "api-check" >/dev/null
"$BIN/engage" demo >/dev/null
API_CHECK_API_KEY="$("$BIN/engage" apikey create --name api-check | tail -n1)"
API_CHECK_MEMBER_TOKEN="$("$BIN/engage" token demo-alice | tail -n1)"
MANAGER_EMAIL="api-check@example.com"
MANAGER_PASSWORD="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(18))')"
ENGAGE_MANAGER_PASSWORD="$MANAGER_PASSWORD" "$BIN/engage" manager create "$MANAGER_EMAIL" --role owner >/dev/null
export API_CHECK_API_KEY API_CHECK_MEMBER_TOKEN

"$BIN/engage" serve >"$LOG" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 150); do
  if "$BIN/python" -c "import httpx,sys; sys.exit(0 if httpx.get(sys.argv[1], timeout=2).status_code == 200 else 1)" \
    "$BASE/ready" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "!! the server did not start:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.2
done

login() {
  "$BIN/python" - "$BASE" "$MANAGER_EMAIL" "$MANAGER_PASSWORD" <<'PY'
import sys
import httpx
r = httpx.post(sys.argv[1] + "/v1/admin/sessions", json={"email": sys.argv[2], "password": sys.argv[3]})
r.raise_for_status()
print(r.json()["token"])
PY
}
API_CHECK_MANAGER_TOKEN="$(login)"
API_CHECK_LOGOUT_TOKEN="$(login)"
export API_CHECK_MANAGER_TOKEN API_CHECK_LOGOUT_TOKEN

echo "== api-check: schemathesis $("$BIN/schemathesis" --version | awk '{print $NF}'), $EXAMPLES examples per operation"
set +e
timeout "$TIMEOUT" "$BIN/schemathesis" --config-file .ci/schemathesis.toml run "$BASE/schema/openapi.json" \
  --checks all --max-examples "$EXAMPLES" --seed 16 --workers 2 --request-timeout 30 \
  --suppress-health-check too_slow,filter_too_much --no-color
result=$?
set -e
if [ "$result" -eq 124 ]; then
  echo "!! schemathesis ran over ${TIMEOUT}s" >&2
fi
if grep -q -e "Traceback" -e '"unhandled_error"' "$LOG"; then
  echo "!! the server logged errors during the run:" >&2
  grep -e "Traceback" -e '"unhandled_error"' -A5 "$LOG" | head -n 60 >&2
  result=1
fi
exit "$result"
