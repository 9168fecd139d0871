# Two commands do all set-up on a fresh machine (Python 3.11, no Docker, no system database):
#   make demo   installs the project and runs the whole pipeline on the embedded default
#   make test   installs what the tests need and runs the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Deno and the Supabase CLI (npm packages, pinned in .tools/package-lock.json) for the Edge
# Functions' tests; Deno's own npm cache (the functions' pinned dependencies) lives beside them.
TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/node_modules/.installed
DENO := $(CURDIR)/$(TOOLS)/node_modules/.bin/deno
export DENO_DIR ?= $(CURDIR)/$(TOOLS)/deno
# Debian's Chromium and ChromeDriver for the browser tests of the Dagster and MLflow UIs.
BROWSER_STAMP := $(VENV)/.browser
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install tools demo test test-slow bench bench-edge lint ui mlflow-ui

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): $(TOOLS)/package.json $(TOOLS)/package-lock.json supabase/functions/deno.json supabase/functions/deno.lock
	npm ci --prefix $(TOOLS) --no-audit --no-fund --loglevel=error
	$(DENO) --version
	$(TOOLS)/node_modules/.bin/supabase --version
	cd supabase/functions && $(DENO) install --frozen --quiet --entrypoint */index.ts tests/*_test.ts
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

$(BROWSER_STAMP): $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
	touch $(BROWSER_STAMP)

demo: $(STAMP)
	$(BIN)/twotower demo

test: $(STAMP) $(TOOLS_STAMP) $(BROWSER_STAMP)
	$(BIN)/python -m pytest

# The load cases (50 clients for 60 s against recommend_videos and the Edge Function): ~6 minutes.
test-slow: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m pytest -m slow -s

bench: $(STAMP)
	$(BIN)/python -m bench.demo_benchmark

bench-edge: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m bench.edge_benchmark

lint: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/ruff check twotower_pipeline twotower_pipeline_tests bench
	cd supabase/functions && $(DENO) lint

ui: $(STAMP)
	$(BIN)/twotower ui

mlflow-ui: $(STAMP)
	$(BIN)/twotower mlflow-ui
