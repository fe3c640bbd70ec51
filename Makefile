# The two commands: `make run` and `make test`. Both install what is missing first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTHON  ?= python3
HOST    ?= 127.0.0.1
PORT    ?= 8000
AI_PORT ?= 8001
STAMP   := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: install run test migrate clean browser bench deploy-tools

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py demo_setup --base-url http://127.0.0.1:$(PORT)
	@echo ""
	@echo "Serving HTTP and WebSocket on http://127.0.0.1:$(PORT), the reference AI service on :$(AI_PORT) (Ctrl-C to stop)"
	@$(PY) manage.py ai_reference_serve --port $(AI_PORT) & ai=$$!; \
	trap 'kill $$ai 2>/dev/null' EXIT INT TERM; \
	AI_SERVICE_URL=$${AI_SERVICE_URL:-http://127.0.0.1:$(AI_PORT)/reply} $(PY) -m imserver.server -b $(HOST) -p $(PORT) \
		--ping-interval $${WS_PING_INTERVAL:-20} --ping-timeout $${WS_PING_TIMEOUT:-30} \
		--proxy-headers imserver.asgi:application

# The browser tests drive Debian's Chromium; install it when it is missing and we may (root, apt).
browser: export DEBIAN_FRONTEND = noninteractive
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } && \
		echo "installed chromium"; } || \
		echo "chromium is not installed and could not be: browser tests will be skipped"

# The deployment tests run Debian's nginx, the PostgreSQL 15 server binaries (a primary and a standby of their own)
# and redis-server (also as Sentinels); install what is missing when we may (root, apt), as for Chromium.
deploy-tools: export DEBIAN_FRONTEND = noninteractive
deploy-tools:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/lib/postgresql/15/bin/pg_basebackup ] || missing="$$missing postgresql-15"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q $$missing >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1; }; } && \
		echo "installed$$missing"; } || \
		echo "not installed and could not be:$$missing: the deployment tests that need them will be skipped"

test: install browser deploy-tools
	$(PY) -m pytest

# The benchmark: a production-like deployment on this machine loaded by Locust (see bench/run.py).
# `make bench` runs every scenario; `make bench SCENARIOS="seed peak" BENCH_ARGS="--servers 3"` picks.
SCENARIOS  ?=
BENCH_ARGS ?=
bench: install
	$(PY) -m bench.run $(SCENARIOS) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .coverage htmlcov
