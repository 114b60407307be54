# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgeloop demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Benchmarks (not tests): each prints a table and writes bench/results/*.json and *.md.
bench: $(STAMP) bench/unleash-proxy/node_modules
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/eval.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/guardrails.py
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/propagation.py

bench/unleash-proxy/node_modules: bench/unleash-proxy/package-lock.json
	cd bench/unleash-proxy && npm ci --silent --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
