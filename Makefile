# The README's commands. `make run` and `make test` work on a fresh machine with Python 3.11+.
#
# Every dependency is installed from uv.lock: exact versions with their hashes (the dev group's
# tools included), the project itself editable. uv comes at the version below into a venv of its
# own (.tools/), so that syncing .venv never touches it. After changing a range in pyproject.toml,
# `make lock`; to move every dependency to the newest release within the ranges, `make upgrade`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

UV_VERSION := 0.13.8
TOOLS := .tools
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
# The machine's $(PYTHON) for .venv (uv never downloads an interpreter of its own).
UV := UV_PYTHON=$(PYTHON) UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV) $(TOOLS)/bin/uv
# Exactly the lock (refused when it is out of date with pyproject.toml), the build backend too.
SYNC := $(UV) sync --locked --require-build-hashes --preview-features build-dependency-hashes

.PHONY: run test install migrate demo lint check-lock format bench profile lock upgrade clean

$(UV_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $(UV_STAMP)

$(STAMP): uv.lock pyproject.toml $(UV_STAMP)
	$(SYNC)
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/engage migrate

demo: migrate
	$(BIN)/engage content publish --if-changed --note "make run"
	$(BIN)/engage demo

run: demo
	$(BIN)/engage serve

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

# uv.lock must match pyproject.toml: checked first, for the clearest message.
check-lock: $(UV_STAMP)
	@$(UV) lock --check || { echo "uv.lock is out of date with pyproject.toml: run make lock" >&2; exit 1; }

lint: check-lock $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, each against its baseline measured in the same run (bench/README.md). A bench
# whose checks fail exits 1: the others still run, and the target fails at the end.
BENCHES := "award_path" "checkin_path --database both" "live_messages" "event_ingest --concurrency 16" \
	"leaderboards" "referrals"

bench: $(STAMP)
	@failed=""; for b in $(BENCHES); do \
		echo "== python -m bench.$$b"; $(BIN)/python -m bench.$$b || failed="$$failed [$$b]"; \
	done; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed" >&2; exit 1; fi

# 1 and 2 server instances behind HAProxy (Debian's `haproxy`; without it the benchmark says so).
.PHONY: bench-scaleout
bench-scaleout: $(STAMP)
	$(BIN)/python -m bench.scaleout

# The three hot paths with py-spy attached to the real server, on PostgreSQL: each prints where the
# server's CPU went (top functions) and writes collapsed stacks to bench/results/*.pyspy.txt.
PROFILE_SECONDS ?= 10
PROFILES := "award_path --database postgres" "checkin_path --database postgres" \
	"event_ingest --database postgresql --concurrency 16"

profile: $(STAMP)
	@failed=""; for b in $(PROFILES); do \
		echo "== python -m bench.$$b --seconds $(PROFILE_SECONDS) --profile"; \
		$(BIN)/python -m bench.$$b --seconds $(PROFILE_SECONDS) --profile || failed="$$failed [$$b]"; \
	done; \
	if [ -n "$$failed" ]; then echo "make profile: failed:$$failed" >&2; exit 1; fi

# The OpenAPI description against the real server on PostgreSQL (127.0.0.1:5432) with every
# schemathesis check: what CI runs after the suite (.ci/schemathesis.sh says how).
.PHONY: api-check
api-check: $(STAMP)
	.ci/schemathesis.sh

# uv.lock again after a change to pyproject.toml, moving nothing that still fits.
lock: $(UV_STAMP)
	$(UV) lock
	$(SYNC)
	touch $(STAMP)

# Every dependency to its newest release within pyproject.toml's ranges, then installed.
upgrade: $(UV_STAMP)
	$(UV) lock --upgrade
	$(SYNC)
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache
