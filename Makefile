# Two commands do all set-up on a fresh machine (Python 3.11, no Docker, no system database):
#   make demo   installs the project and runs the whole pipeline on the embedded default
#   make test   installs what the tests need and runs the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint ui mlflow-ui

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/twotower demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.demo_benchmark

lint: $(STAMP)
	$(BIN)/ruff check twotower_pipeline twotower_pipeline_tests bench

ui: $(STAMP)
	$(BIN)/twotower ui

mlflow-ui: $(STAMP)
	$(BIN)/twotower mlflow-ui
