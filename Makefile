# The README's commands. `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate demo lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

clean:
	rm -rf $(VENV) var .pytest_cache
