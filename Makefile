# portal-asgi: `make run` serves the demo portal, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
OIDC_PROVIDER := tests/oidc/node_modules/.installed

.PHONY: run test lint format bench bench-http clean setup browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/portal-asgi db upgrade
	$(BIN)/uvicorn portal_asgi:app --host $(HOST) --port $(PORT)

test: $(STAMP) browser $(OIDC_PROVIDER)
	$(BIN)/python -m pytest

# The real OpenID provider the OIDC tests start (panva's oidc-provider, tests/oidc/), from npm.
$(OIDC_PROVIDER): tests/oidc/package.json tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund
	touch $@

# Headless Chromium and its driver for the browser tests, from Debian's packages.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# WebSocket capacity and echo round trip, portal against the bare app (docs/websockets.md);
# runs bench-http first.
bench: $(STAMP) bench-http
	$(BIN)/python bench/ws_bench.py

# What the portal costs an HTTP request, against the bare products (docs/performance.md).
bench-http: $(STAMP)
	$(BIN)/python bench/http_bench.py

lint: $(STAMP)
	$(BIN)/ruff check src tests products bench
	$(BIN)/ruff format --check src tests products bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests products bench
	$(BIN)/ruff check --fix src tests products bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
