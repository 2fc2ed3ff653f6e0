# Two commands: `make run` and `make test`. Each creates or updates .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per set of extras: `make run` installs only what running needs; test and lint add the
# dev extras, bench the bench extras. Each set is installed once, and again when its inputs change.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.DEFAULT_GOAL := help
.PHONY: help run test lint format bench chromium nginx clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; found " + sys.version.split()[0] + ". Run make with PYTHON=python3.11 (or newer).")'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e .
	@touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(PIP) -e '.[dev]'
	@touch $@

$(BENCH_STAMP): $(RUN_STAMP)
	$(PIP) -e '.[bench]'
	@touch $@

run: $(RUN_STAMP) ## Start the gateway on $HOST:$PORT (127.0.0.1:8000); WORKERS=N for N processes
	$(BIN)/python -m app

test: $(DEV_STAMP) ## Run every test, with coverage
	$(BIN)/python -m pytest --cov --cov-report=term

lint: $(DEV_STAMP) ## ruff and mypy (strict on app/ and providers/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP) ## Let ruff fix what it can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BENCH_STAMP) ## Each transport beside the bare relay, 1-1000 streams; soak; hedging; limits. WORKERS=N TRANSPORTS="native aiohttp"
	$(BIN)/python -m bench.run --workers $(or $(WORKERS),1) $(if $(TRANSPORTS),--transports $(TRANSPORTS)) $(BENCH_ARGS)
	$(BIN)/python -m bench.soak $(if $(TRANSPORTS),--transports $(TRANSPORTS))
	$(BIN)/python -m bench.hedging
	$(BIN)/python -m bench.limits

chromium: ## Install Debian's Chromium for the browser tests, if missing (they skip, saying so, without it)
	@command -v chromium >/dev/null 2>&1 && echo "chromium: $$(command -v chromium)" || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	    && echo "chromium: installed $$(command -v chromium)"; } || \
	  echo "make chromium: could not install Chromium (needs apt and root); the browser tests will skip"

nginx: ## Install Debian's nginx for the replica tests, if missing (they skip, saying so, without it)
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx && echo "nginx: $$(command -v nginx || echo /usr/sbin/nginx)" || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx-light >/dev/null \
	    && echo "nginx: installed /usr/sbin/nginx"; } || \
	  echo "make nginx: could not install nginx (needs apt and root); the replica tests will skip"

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage test-results
