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

.PHONY: run test install migrate demo lint check-lock format bench lock upgrade clean

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
	$(BIN)/engage content publish --note "make run"
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

bench: $(STAMP)
	$(BIN)/python -m bench.award_path
	$(BIN)/python -m bench.checkin_path --database both
	$(BIN)/python -m bench.live_messages
	$(BIN)/python -m bench.event_ingest --concurrency 16
	$(BIN)/python -m bench.leaderboards
	$(BIN)/python -m bench.referrals

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
