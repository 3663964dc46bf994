# stsync: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint typecheck check bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run everything on the embedded default (sandbox + embedded Redis + SQLite ledger).
demo: $(STAMP)
	$(BIN)/stsync demo

## The whole test suite (unit, sandbox contracts, ledger on SQLite and PostgreSQL, end to end).
test: $(STAMP)
	$(BIN)/pytest

## ruff's rules, the import layers (pyproject.toml [tool.importlinter], docs/pipeline.md), formatting
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

## mypy over the code, bench/ and tests/ (strict; tests/ relaxed, see pyproject.toml [tool.mypy])
typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python -m bench

## The full-size chaos soak (the CI-sized one runs in `make test`).
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --records 2000 --restart-redis

clean:
	rm -rf .stsync .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
