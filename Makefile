# Two commands do all set-up on a fresh machine (no Docker, no system database):
#   make demo   installs the project and runs the whole pipeline on the embedded default
#   make test   installs what the tests need and runs the whole test suite
# Each target checks its own prerequisites first and stops with one line naming what is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Deno and the Supabase CLI (npm packages, pinned in .tools/package-lock.json) for the Edge
# Functions' tests; Deno's own npm cache (the functions' pinned dependencies) lives beside them.
TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/node_modules/.installed
DENO := $(CURDIR)/$(TOOLS)/node_modules/.bin/deno
export DENO_DIR ?= $(CURDIR)/$(TOOLS)/deno
# Debian packages the tests use: Chromium and ChromeDriver (browser tests of the Dagster and MLflow
# UIs), PgBouncer (the pipeline through a transaction-mode pooler) and psql (the README's commands).
SYSTEM_STAMP := $(VENV)/.system-packages
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-test tools demo test test-slow bench bench-edge lint ui mlflow-ui check-python check-node

check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Missing: $(PYTHON). Install Python 3.11 (Debian/Ubuntu: apt install python3.11 python3.11-venv) or pass PYTHON=/path/to/python3.11." >&2; exit 1; }
	@$(PYTHON) -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { echo "Missing: a Python 3.11 with venv and ensurepip at $(PYTHON) (Debian/Ubuntu: apt install python3.11-venv)." >&2; exit 1; }

check-node:
	@command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || { echo "Missing: Node.js and npm, which install Deno and the Supabase CLI for the Edge Functions' tests (Debian/Ubuntu: apt install nodejs npm)." >&2; exit 1; }

# What the demo and the pipeline need.
$(STAMP): pyproject.toml | check-python
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install --quiet --python $(BIN)/python -e .
	touch $(STAMP)

# The tests' own tools on top (pytest, ruff, selenium, dagster-k8s, moto).
$(TEST_STAMP): $(STAMP) pyproject.toml
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

$(TOOLS_STAMP): $(TOOLS)/package.json $(TOOLS)/package-lock.json supabase/functions/deno.json supabase/functions/deno.lock | check-node
	npm ci --prefix $(TOOLS) --no-audit --no-fund --loglevel=error
	$(DENO) --version
	$(TOOLS)/node_modules/.bin/supabase --version
	cd supabase/functions && $(DENO) install --frozen --quiet --entrypoint */index.ts tests/*_test.ts
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# Installed from Debian's packages when missing (as root, or with sudo); quietly.
$(SYSTEM_STAMP): $(STAMP)
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	{ command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || missing="$$missing pgbouncer"; \
	command -v psql >/dev/null 2>&1 || missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null 2>&1 || { echo "Missing:$$missing (the browser and pooler tests need them; install them with your system's package manager)." >&2; exit 1; }; \
	  [ -z "$(SUDO)" ] || command -v sudo >/dev/null 2>&1 || { echo "Missing:$$missing, and installing them needs root or sudo: run 'apt-get install$$missing' as root." >&2; exit 1; }; \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $(SYSTEM_STAMP)

demo: $(STAMP)
	$(BIN)/twotower demo

test: $(TEST_STAMP) $(TOOLS_STAMP) $(SYSTEM_STAMP)
	$(BIN)/python -m pytest

# The load cases (50 clients for 60 s against recommend_videos and the Edge Function): ~6 minutes.
test-slow: $(TEST_STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m pytest -m slow -s

bench: $(STAMP)
	$(BIN)/python -m bench.demo_benchmark

bench-edge: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m bench.edge_benchmark

lint: $(TEST_STAMP) $(TOOLS_STAMP)
	$(BIN)/ruff check twotower_pipeline twotower_pipeline_tests bench
	cd supabase/functions && $(DENO) lint

# Both UIs in the foreground (Ctrl-C stops them): Dagster http://127.0.0.1:3000, MLflow http://127.0.0.1:5000.
ui: $(STAMP)
	$(BIN)/twotower ui

mlflow-ui: $(STAMP)
	$(BIN)/twotower mlflow-ui
