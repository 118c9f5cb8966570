# featureplane — everything a user or CI runs. `make demo` and `make test` set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help demo test lint system-deps bench-deps bench bench-quick bench-quotas soak chaos venv clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps:  ## Install the Debian packages the demo and tests start: redis-server, postgresql, prometheus
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing — install them (or run make as root)"; exit 1; fi; \
	fi

bench-deps:  ## Install wrk and hey (Debian) for the benchmarks, as root, when missing
	@missing=""; for tool in wrk hey; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	command -v /usr/bin/time >/dev/null || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing — install them (or run make as root)"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)  ## Create .venv with featureplane and its pinned dependencies

demo: system-deps venv  ## Generate data, apply, materialize, serve and call the gateway for every tenant
	$(BIN)/featureplane demo $(DEMO_ARGS)

lint: venv  ## ruff, mypy (strict) and the generated-file staleness checks
	$(BIN)/ruff check platform tests
	$(BIN)/ruff format --check platform tests
	$(BIN)/mypy
	$(BIN)/featureplane tenants schema --check
	$(BIN)/featureplane dashboards generate --check
	$(BIN)/featureplane docs generate --check

test: system-deps venv lint  ## Lint, then the whole suite against real Redis, PostgreSQL and Feast
	$(BIN)/pytest $(PYTEST_ARGS)

bench: system-deps bench-deps venv  ## Feast vs floor vs gateway serving; Feast vs featureplane materialization (1M rows)
	$(BIN)/python -m tests.benchmarks.serving --rows 1000000 --seconds 15

bench-quick: system-deps bench-deps venv  ## The same on 100k rows and 5 s cells (about 2 minutes)
	$(BIN)/python -m tests.benchmarks.serving --rows 100000 --seconds 5 --out .featureplane/bench/serving-quick.json

bench-quotas: system-deps bench-deps venv  ## B's latency alone and under A's flood; throughput with quotas on/off
	$(BIN)/python -m tests.benchmarks.quota_isolation

soak: system-deps bench-deps venv  ## Two tenants at half the max rate for 10 minutes: errors, RSS growth, p99 per minute
	$(BIN)/python -m tests.benchmarks.soak --minutes 10

chaos: system-deps venv  ## The fault-injection tests alone, with the figures they print (also part of make test)
	$(BIN)/pytest -s -m chaos

clean:  ## Remove the venv and the demo's data
	rm -rf $(VENV) .featureplane .pytest_cache .mypy_cache .ruff_cache
