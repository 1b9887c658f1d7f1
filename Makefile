# tidings — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help install dev server worker migrate test test-chaos check-alerts lint format typecheck check bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install tidings with test and dev tools

dev: install ## Run server + one worker (embedded Postgres/Redis unless TIDINGS_*_URL are set)
	$(BIN)/tidings dev

server: install ## Run the HTTP server
	$(PY) -m server

worker: install ## Run a worker (run again in another terminal to add consumers)
	$(PY) -m worker

migrate: install ## Apply database migrations
	$(BIN)/tidings migrate

test: install ## Run the test suite (TIDINGS_TEST_*_URL, else embedded servers)
	$(PY) -m pytest -m "not chaos"

test-chaos: install ## Kill workers, flush and restart Redis, stop Postgres: nothing is lost
	$(PY) -m pytest -m chaos

check-alerts: ## Validate deploy/prometheus/alerts.yml with promtool (if installed)
	@if command -v promtool >/dev/null 2>&1; then promtool check rules deploy/prometheus/alerts.yml; \
	else echo "promtool not installed: alert rules are checked by the test suite only"; fi

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install ## mypy --strict on core, server, worker, client
	$(BIN)/mypy

check: lint typecheck test ## Everything CI runs

bench: install ## Benchmark against raw ARQ in one run (ARGS=--quick; bench/results/latest.json)
	$(PY) -m bench $(ARGS)

clean: ## Remove the venv, embedded data and caches
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
