# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
# The drift Lambda's runtime as deployed (Python 3.12, the AWS SDK for pandas layer's numpy/pandas/pyarrow), for its tests.
LAYER_VENV := .venv-layer
LAYER_STAMP := $(LAYER_VENV)/.installed
LAYER_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null) $(PYTHON))
# checkov, which pins an old boto3, in a virtual environment of its own (scripts/checkov.sh runs it).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
export CDK_DISABLE_CLI_TELEMETRY := true
# Spark in local mode binds to loopback, never to the machine's interfaces.
export SPARK_LOCAL_IP := 127.0.0.1
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: install demo test test-fast guardrails synth lint benchmarks clean

# Installed in steps, each pinned: one unconstrained resolve of the whole set can backtrack into source builds.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt frameworks.txt pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"
	$(PIP) install -c constraints.txt numpy pandas pyarrow
	$(PIP) install -c constraints.txt -r requirements.txt
	$(PIP) install -c constraints.txt -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

$(LAYER_STAMP): tests/lambda_layer/requirements.txt
	rm -rf $(LAYER_VENV)
	$(LAYER_PYTHON) -m venv $(LAYER_VENV)
	$(LAYER_VENV)/bin/python -m pip --disable-pip-version-check -q install -r tests/lambda_layer/requirements.txt
	touch $(LAYER_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

install: $(STAMP) $(LAYER_STAMP) $(CHECKOV_STAMP)

demo: install
	$(VENV)/bin/modelwerk local down >/dev/null 2>&1 || true
	bash scripts/demo.sh

# The guardrails (cdk-nag, the Control Tower proactive controls, checkov) run inside the suite, over its one synth
# (tests/infra/test_compliance.py); any unacknowledged finding fails it.
test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 3 --dist loadgroup -q

# The guardrails alone: one synth, then checkov over it.
guardrails: install
	$(PY) -m pytest -q -p no:cacheprovider tests/infra/test_compliance.py -k "guardrails or unacknowledged or acknowledgment"

test-fast: install
	$(PY) -m pytest -q -m "not slow"

synth: install
	cdk synth --no-notices -q

benchmarks: install
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/prepare.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/drift.py

clean:
	-$(VENV)/bin/modelwerk local down
	rm -rf cdk.out .modelwerk .pytest_cache .hypothesis $(LAYER_VENV) $(CHECKOV_VENV)
