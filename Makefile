# portal-asgi: `make run` serves the demo portal, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
OIDC_PROVIDER := tests/oidc/node_modules/.installed

.PHONY: run test lint format bench bench-http bench-wsgi bench-request bench-inprocess wrk soak clean setup browser nginx valgrind

setup: $(STAMP)

# pip runs --quiet, so each step says what it does first: the first install takes a minute or two.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "setup: creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "setup: installing portal-asgi and its dependencies into $(VENV) (a minute or two the first time)"
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "setup: done"

# --no-proxy-headers: the portal alone decides whom to believe about client addresses
# ([security] trusted_proxies); uvicorn's default would trust X-Forwarded-For from 127.0.0.1.
# PROMETHEUS_MULTIPROC_DIR: where every worker's metrics add up, emptied before each start
# (docs/operations.md); `make run WORKERS=2` serves with two.
# The demo's remote product (settings.toml mounts it with `upstream =`) runs beside the portal in
# a process of its own, on 127.0.0.1:8001, and stops when the portal stops.
WORKERS ?= 1
METRICS_DIR := var/metrics
run: $(STAMP)
	$(BIN)/portal-asgi db upgrade
	rm -rf $(METRICS_DIR) && mkdir -p $(METRICS_DIR)
	$(BIN)/uvicorn products.remote.app:app --host 127.0.0.1 --port 8001 --log-level warning & remote=$$!; \
	trap 'kill $$remote 2>/dev/null; wait $$remote 2>/dev/null' EXIT INT TERM; \
	PROMETHEUS_MULTIPROC_DIR=$(METRICS_DIR) $(BIN)/uvicorn portal_asgi:app --host $(HOST) --port $(PORT) --workers $(WORKERS) --no-proxy-headers

test: $(STAMP) browser nginx $(OIDC_PROVIDER)
	$(BIN)/python -m pytest

# The real OpenID provider the OIDC tests start (panva's oidc-provider, tests/oidc/), from npm.
$(OIDC_PROVIDER): tests/oidc/package.json tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund
	touch $@

# Headless Chromium and its driver for the browser tests, from Debian's packages.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# nginx in front of real portals for the deployment recipes (tests/test_deploy.py), from Debian.
nginx:
	command -v nginx >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx)

# wrk, the load generator of the WSGI bridge benchmark, from Debian's packages.
wrk:
	command -v wrk >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)

# WebSocket capacity and echo round trip, portal against the bare app (docs/websockets.md);
# runs bench-http, bench-wsgi, bench-request and bench-inprocess first.
bench: $(STAMP) bench-http bench-wsgi bench-request bench-inprocess
	$(BIN)/python bench/ws_bench.py

# The WSGI bridge against plain a2wsgi and through the portal, with wrk; results in
# bench/results/ (docs/performance.md).
bench-wsgi: $(STAMP) wrk
	$(BIN)/python bench/bridge_inprocess.py
	$(BIN)/python bench/wsgi_bench.py

# Requests/s of the request path with wrk: hello products bare, through the portal, refused, behind
# the original stack (gunicorn), at the end of 200 mounts, and the worker's memory; results in
# bench/results/ (docs/performance.md). About four minutes.
bench-request: $(STAMP) wrk
	$(BIN)/python bench/request_bench.py

# The request path in process, no socket: µs and instructions (callgrind) per request, bare and
# through the portal, as ASGI calls and through uvicorn's protocol; results in
# bench/results/inprocess.md and .json (docs/performance.md). A few minutes; the instruction
# counts do not depend on how busy the machine is.
bench-inprocess: $(STAMP) valgrind
	$(BIN)/python bench/inprocess.py --callgrind

# valgrind, which counts the instructions of bench-inprocess, from Debian's packages.
valgrind:
	command -v valgrind >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind)

# What the portal costs an HTTP request, against the bare products (docs/performance.md).
bench-http: $(STAMP)
	$(BIN)/python bench/http_bench.py

# The portal over time: 30 minutes of mixed traffic (pages, refusals, sign-ins, WebSockets) on two
# workers, each worker's memory and open files sampled; results in bench/results/soak.md and .json
# (docs/operations.md). `make test` runs the same for two minutes (tests/test_soak.py).
SOAK_SECONDS ?= 1800
soak: $(STAMP)
	$(BIN)/python -m tests.soak --seconds $(SOAK_SECONDS) --results bench/results

lint: $(STAMP)
	$(BIN)/ruff check src tests products bench
	$(BIN)/ruff format --check src tests products bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests products bench
	$(BIN)/ruff check --fix src tests products bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
