# The two commands: `make run` and `make test`. Both install what is missing first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTHON  ?= python3
HOST    ?= 127.0.0.1
PORT    ?= 8000
AI_PORT ?= 8001
comma   := ,
STAMP   := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
# Where a browser or curl on this machine reaches `make run`: HOST itself, or 127.0.0.1 when it listens everywhere.
URL_HOST = $(if $(filter 0.0.0.0 :: [::],$(HOST)),127.0.0.1,$(HOST))

.PHONY: help install run test migrate clean browser bench bench-tools deploy-tools

help: ## list the targets, one line each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | \
		awk -F '\t' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo "  variables: HOST=$(HOST) PORT=$(PORT) AI_PORT=$(AI_PORT), e.g. make run PORT=8100 AI_PORT=8101"

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) ## create .venv and install requirements.txt when it changed

migrate: install ## apply the database migrations (DATABASE_URL, else SQLite)
	$(PY) manage.py migrate --noinput

# HOST and PORT are where the server listens (and so the demo's curl line and ALLOWED_HOSTS); AI_PORT is the reference
# AI service's port, and so AI_SERVICE_URL, unless that is set.
run: migrate ## demo users and group, the reference AI service on AI_PORT, the server on HOST:PORT
	$(PY) manage.py demo_setup --base-url http://$(URL_HOST):$(PORT)
	@echo ""
	@echo "Serving HTTP and WebSocket on http://$(URL_HOST):$(PORT), the reference AI service on :$(AI_PORT) (Ctrl-C to stop)"
	@$(PY) manage.py ai_reference_serve --port $(AI_PORT) & ai=$$!; \
	trap 'kill $$ai 2>/dev/null' EXIT INT TERM; \
	ALLOWED_HOSTS=$${ALLOWED_HOSTS:-localhost,127.0.0.1,[::1],testserver$(if $(filter-out 127.0.0.1 localhost 0.0.0.0 :: [::],$(HOST)),$(comma)$(HOST))} \
	AI_SERVICE_URL=$${AI_SERVICE_URL:-http://127.0.0.1:$(AI_PORT)/reply} $(PY) -m imserver.server -b $(HOST) -p $(PORT) \
		--ping-interval $${WS_PING_INTERVAL:-20} --ping-timeout $${WS_PING_TIMEOUT:-30} \
		--proxy-headers imserver.asgi:application

# The browser tests drive Debian's Chromium; install it when it is missing and we may (root, apt).
browser: export DEBIAN_FRONTEND = noninteractive
browser: ## install Debian's chromium for the browser tests, when missing and root
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } && \
		echo "installed chromium"; } || \
		echo "chromium is not installed and could not be: browser tests will be skipped"

# The deployment tests run Debian's nginx, the PostgreSQL 15 server binaries (a primary and a standby of their own)
# and redis-server (also as Sentinels), and the benchmark smoke test wrk; install what is missing when we may (root,
# apt), as for Chromium.
deploy-tools: export DEBIAN_FRONTEND = noninteractive
deploy-tools: ## install nginx, PostgreSQL 15, redis-server and wrk for the deployment tests, when missing and root
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/lib/postgresql/15/bin/pg_basebackup ] || missing="$$missing postgresql-15"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q $$missing >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1; }; } && \
		echo "installed$$missing"; } || \
		echo "not installed and could not be:$$missing: the deployment tests that need them will be skipped"

# The suite runs on one pytest-xdist worker per core (TEST_WORKERS=0: in this process); each worker has a test
# database and Redis state of its own (tests/support/workers.py). It is mostly CPU: on two cores, 3 workers were no
# faster than 2.
TEST_WORKERS ?= auto
test: install browser deploy-tools ## the whole suite with line coverage (fails under 80 %)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# The benchmark: a production-like deployment on this machine loaded by Locust (see bench/run.py).
# `make bench` runs every scenario; `make bench SCENARIOS="seed peak" BENCH_ARGS="--servers 3"` picks.
SCENARIOS  ?=
BENCH_ARGS ?=
bench: install bench-tools ## the benchmark (SCENARIOS="seed peak", BENCH_ARGS=...) into bench/results/
	$(PY) -m bench.run $(SCENARIOS) $(BENCH_ARGS)

# The `send` scenario's HTTP load comes from Debian's wrk; install it when it is missing and we may (root, apt).
bench-tools: export DEBIAN_FRONTEND = noninteractive
bench-tools: ## install Debian's wrk for the benchmark's send scenario, when missing and root
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q wrk >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }; } && \
		echo "installed wrk"; } || echo "wrk is not installed and could not be: the send scenario cannot run"

clean: ## remove .venv, the coverage data and the pytest cache
	rm -rf $(VENV) .pytest_cache .coverage htmlcov
