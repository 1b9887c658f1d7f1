# tidings — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help install dev server worker migrate test test-slow test-chaos test-cluster check-alerts lint format typecheck check bench soak mutate clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,embedded,test,dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install tidings with test and dev tools

dev: install ## Run server + one worker (embedded Postgres/Redis unless TIDINGS_*_URL are set)
	$(BIN)/tidings dev

server: install ## Run the HTTP server
	$(PY) -m tidings.server

worker: install ## Run a worker (run again in another terminal to add consumers)
	$(PY) -m tidings.worker

migrate: install ## Apply database migrations
	$(BIN)/tidings migrate

test: install ## Run the test suite (TIDINGS_TEST_*_URL, else embedded servers)
	$(PY) -m pytest -m "not chaos and not cluster and not slow"

test-slow: install ## The schemathesis run and the million-job search checks (minutes each)
	$(PY) -m pytest -m slow

test-chaos: install ## Kill workers, flush and restart Redis, stop Postgres: nothing is lost
	$(PY) -m pytest -m chaos

test-cluster: install ## 2 servers, 3 workers via PgBouncer and Redis Sentinel, under faults
	$(PY) -m pytest -m cluster tests/cluster

# The scrape config is checked --syntax-only: the operator token file it names exists only
# where Prometheus runs (tests/integration/test_observability.py checks it in full).
check-alerts: ## Validate deploy/prometheus/ (alerts, scrape config) with promtool (fails without promtool)
	@command -v promtool >/dev/null 2>&1 || { echo "promtool is missing: apt-get install prometheus" >&2; exit 1; }
	promtool check rules deploy/prometheus/alerts.yml
	promtool check config --syntax-only deploy/prometheus/prometheus.yml

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# mypy cannot follow setuptools' editable import hook, so it reads the `tidings` namespace
# through a tree of links shaped like the installed package.
TYPECHECK_TREE := .typecheck/tidings

typecheck: install ## mypy --strict on every tidings package
	rm -rf .typecheck && mkdir -p $(TYPECHECK_TREE)
	ln -s ../../tidings/__init__.py ../../tidings/py.typed $(TYPECHECK_TREE)/
	for part in core server worker client cli migrations; do ln -s ../../$$part $(TYPECHECK_TREE)/$$part; done
	$(BIN)/mypy

check: lint typecheck test ## Everything CI runs

soak: install ## Steady mixed load for 30 min: nothing lost, nothing grows (ARGS=--minutes N)
	$(PY) -m bench.soak $(ARGS)

bench: install ## Benchmark against raw ARQ in one run (ARGS=--quick; bench/results/latest.json)
	$(PY) -m bench $(ARGS)

MUTATE_SESSION := .mutate/session.sqlite

mutate: install ## Mutation testing of streams, submission and the job statements (not in CI)
	rm -rf .mutate && mkdir -p .mutate
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/cosmic-ray init tests/mutation/cosmic-ray.toml $(MUTATE_SESSION)
	$(BIN)/cr-filter-operators $(MUTATE_SESSION) tests/mutation/cosmic-ray.toml
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/cosmic-ray baseline tests/mutation/cosmic-ray.toml
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/cosmic-ray exec tests/mutation/cosmic-ray.toml $(MUTATE_SESSION)
	$(PY) tests/mutation/survivors.py $(MUTATE_SESSION) | tee .mutate/survivors.txt

clean: ## Remove the venv, embedded data and caches
	rm -rf $(VENV) .data .typecheck .mutate .pytest_cache .mypy_cache .ruff_cache
