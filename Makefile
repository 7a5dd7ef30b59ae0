# cognito-streams: every entry point a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP_VERSION := 26.3

.PHONY: help venv warm test test-browser test-slow test-standalone test-celery lint stack-up stack-down stack-status up down demo bench bench-full bench-celery clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "cognito-streams needs Python 3.11 (found %d.%d); set PYTHON=/path/to/python3.11" % sys.version_info[:2])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned packages into $(VENV) (first time: about a minute)"
	@$(PY) -m pip install -qq --disable-pip-version-check "pip==$(PIP_VERSION)"
	@$(PY) -m pip install -qq --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@$(MAKE) --no-print-directory warm
	@touch $(STAMP)

# The decoder's numba parser compiled once into its on-disk cache, so that no landing task (the first
# event of a fresh worker) pays the ~20-40 s compile; about a second when the cache is current.
warm: ## compile the decoder's numba parser into its cache (make venv and make up run it)
	@PYTHONPATH=plugins $(PY) -m cognito_streams.core.warm

venv: $(STAMP) ## create .venv with the pinned packages

test: $(STAMP) ## bootstrap and run the test suite (CI then runs test-standalone, test-celery, test-browser: .ci/run)
	$(PY) -m pytest -m "not slow and not browser and not celery and not standalone" $(PYTEST_ARGS)

CHROMIUM ?= /usr/bin/chromium

test-browser: $(STAMP) ## headless Chromium logs into `make up`'s Airflow UI (screenshots: test-output/browser/)
	@test -x "$(CHROMIUM)" || { echo "make test-browser needs Chromium at $(CHROMIUM): apt-get install -y chromium (Debian/Ubuntu, as root), or set CHROMIUM=/path/to/chromium" >&2; exit 2; }
	@$(PY) -m pip install -qq --disable-pip-version-check -r requirements-browser.txt -c constraints.txt
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

test-slow: $(STAMP) ## the long opt-in tests (fault soak)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-standalone: $(STAMP) ## the pipeline under `airflow standalone`: its health, and event mode surviving kills (CI runs it)
	$(PY) -m pytest -m standalone $(PYTEST_ARGS)

test-celery: $(STAMP) ## the pipeline on the CeleryExecutor: two workers, one SIGKILLed mid-task (CI runs it)
	$(PY) -m pytest -m celery $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

stack-up: $(STAMP) ## start moto, the Cognito Sync emulator and PostgreSQL; write .local/stack.env
	$(PY) -m local.stack up

stack-down: $(STAMP) ## stop the local stack
	$(PY) -m local.stack down

stack-status: $(STAMP) ## what runs, on which port
	$(PY) -m local.stack status

up: $(STAMP) warm ## the stack plus `airflow standalone` with the DAGs (the UI), landing in event mode
	$(PY) -m local.stack up
	$(PY) -m local.stack airflow-up

down: $(STAMP) ## stop Airflow and the stack
	$(PY) -m local.stack down

demo: $(STAMP) ## run the whole pipeline end to end on the local stack and reconcile
	$(PY) -m local.demo $(DEMO_ARGS)

bench: $(STAMP) ## benchmarks (quick mode); `make bench-full` for the full figures
	$(PY) -m bench $(BENCH_ARGS)

bench-full: $(STAMP) ## benchmarks, full mode
	$(PY) -m bench --full $(BENCH_ARGS)

redshift-check: $(STAMP) ## opt-in: the Redshift path on a real cluster (AIRFLOW_CONN_REDSHIFT_CHECK ...: README)
	AIRFLOW_HOME="$${AIRFLOW_HOME:-$(CURDIR)/.local/redshift-check}" PYTHONPATH="$(CURDIR)/plugins:$(CURDIR)" \
		$(PY) -m cognito_streams.redshift_check

bench-celery: $(STAMP) ## landing throughput, 8 shards on 1 vs 2 Celery workers (docs/scaling.md)
	$(PY) -m bench.celery_scaleout $(BENCH_ARGS)

clean: ## stop everything and remove .local/ (keeps .venv)
	-test -x $(PY) && $(PY) -m local.stack clean
	rm -rf .local
