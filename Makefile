# Every workflow of the repository is a target here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := $(patsubst %/pyproject.toml,%,$(wildcard libs/*/pyproject.toml tools/*/pyproject.toml services/*/pyproject.toml))
STAMP := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTO_OUT := libs/protos
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MODELHUB_STATE_DIR ?= $(CURDIR)/.state
# Bytecode caches, in one ignored folder: where the environment turns them off (PYTHONDONTWRITEBYTECODE), every
# Python process (each test suite, each service a test starts) compiles every module it imports again, seconds
# each; with the prefix the source tree stays free of __pycache__ folders all the same.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.cache/pycache

.PHONY: help venv protos protos-check protos-breaking lint format test chaos bench up down lock clean reindex

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create the virtual environment (pinned by requirements.lock) if missing or stale

$(STAMP): requirements.lock $(addsuffix /pyproject.toml,$(PACKAGES))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet "uv==0.13.9"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock $(addprefix -e ,$(PACKAGES))
	@touch $@

lock: ## Re-pin requirements.lock from requirements.in
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.lock

protos: $(STAMP) ## Generate Python code (+ mypy stubs) from protos/ and lint the contracts
	$(BIN)/buf lint protos
	find $(PROTO_OUT)/modelhub -name '*_pb2*.py*' -delete
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
		--mypy_out=quiet:$(PROTO_OUT) --mypy_grpc_out=quiet:$(PROTO_OUT) $(PROTO_FILES)

protos-check: $(STAMP) ## Fail when the generated code is stale
	@tmp=$$(mktemp -d) && $(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=quiet:$$tmp --mypy_grpc_out=quiet:$$tmp $(PROTO_FILES) && \
	if diff -r -q -x '__pycache__' -x '*.typed' $$tmp/modelhub $(PROTO_OUT)/modelhub; then rm -rf $$tmp; \
	else rm -rf $$tmp; echo "generated code is stale: run 'make protos' and commit the result" >&2; exit 1; fi

BREAKING_AGAINST ?= HEAD
protos-breaking: $(STAMP) ## Fail when protos/ breaks the contracts of BREAKING_AGAINST (default: the last commit)
	$(BIN)/buf breaking protos --against '.git#ref=$(BREAKING_AGAINST),subdir=protos'

lint: $(STAMP) protos-check protos-breaking ## ruff (lint + format check), buf lint, buf breaking, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint protos
	$(BIN)/mypy libs/core/modelhub tools/devstack/modelhub $(wildcard services/*/modelhub) bench

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each package's tests run in a pytest process of their own: every suite is a `tests` package, and one
# process cannot import two packages of the same name.
TEST_SUITES = $(wildcard libs/*/tests tools/*/tests services/*/tests) $(if $(wildcard tests/test_*.py),tests)

test: $(STAMP) protos-check ## Run every test against real PostgreSQL and NATS started by the harness
	@failed=""; for suite in $(TEST_SUITES); do echo "== $$suite"; \
		$(BIN)/pytest $$suite -m "not chaos" || failed="$$failed $$suite"; done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed" >&2; exit 1; fi

chaos: $(STAMP) ## Long fault-injection runs (kill -9 under load, server restarts)
	@failed=""; for suite in $(TEST_SUITES); do echo "== $$suite"; \
		$(BIN)/pytest $$suite -m chaos; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || failed="$$failed $$suite"; done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed" >&2; exit 1; fi

bench: $(STAMP) ## Run the benchmarks; each writes bench/results/<name>.json
	@for b in bench/*/run.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

up: $(STAMP) ## Run the platform locally (Postgres, NATS, every service); Ctrl-C stops it
	$(BIN)/python -m modelhub.devstack.up --state-dir "$(MODELHUB_STATE_DIR)"

reindex: $(STAMP) ## Rebuild the search index into a fresh generation and swap it in (REINDEX_ARGS=--replay-stream, --offline)
	$(BIN)/python -m modelhub.search.reindex $(REINDEX_ARGS)

down: ## Stop a platform started by `make up` in another terminal
	@test -x $(BIN)/python && $(BIN)/python -m modelhub.devstack.down --state-dir "$(MODELHUB_STATE_DIR)" || true

clean: ## Remove the virtual environment and caches (not the platform's state)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
