# Every target sets up what it needs: a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test suite test-unit test-fast lint fmt check schemas bench clean setup tools

setup: $(STAMP)

# Dependencies come only from requirements.lock: exact versions, every file checked by hash.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sellmesh up --demo

# Lint (mostly mypy) runs beside the suite, which spends most of its time waiting on brokers and
# sockets: together they take about as long as the suite alone. Either one failing fails the target.
test: $(STAMP) tools
	$(MAKE) --no-print-directory -j2 lint suite

# The suite mostly waits on brokers, sockets and timers (about a third of a core in one process), so it runs in
# pytest-xdist workers, a file at a time each: every worker has its own broker, SQLite file, PostgreSQL schema and
# Redis database (tests/conftest.py), and a file's meshes start once.
TEST_WORKERS ?= 2
suite: $(STAMP) tools
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas sellmesh services bench
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

# Prometheus and promtool from Debian's package (bookworm: 2.42.0+ds-5+deb12u1), unpacked under
# var/tools: no root and nothing installed system-wide. The tests look for them there.
PROMETHEUS_DIR := var/tools/prometheus
PROMETHEUS_BIN := $(PROMETHEUS_DIR)/usr/bin/prometheus

tools: $(PROMETHEUS_BIN)

$(PROMETHEUS_BIN):
	rm -rf $(PROMETHEUS_DIR).download && mkdir -p $(PROMETHEUS_DIR).download
	cd $(PROMETHEUS_DIR).download && apt-get download prometheus
	dpkg-deb -x $(PROMETHEUS_DIR).download/prometheus_*.deb $(PROMETHEUS_DIR)
	rm -rf $(PROMETHEUS_DIR).download
	$(PROMETHEUS_DIR)/usr/bin/promtool --version >/dev/null
	touch $@

schemas: $(STAMP)
	$(BIN)/python -m sellmesh.contract write

bench: $(STAMP)
	$(BIN)/python -m bench

# The whole stack in containers, for a host with a container engine (deploy/README.md).
COMPOSE := docker compose -f deploy/compose.yaml

.PHONY: deploy-up deploy-down
deploy-up:
	test -f deploy/.env || cp deploy/.env.example deploy/.env
	$(COMPOSE) up --build --detach

deploy-down:
	$(COMPOSE) down

# Regenerate the lock after editing pyproject.toml dependencies (needs uv on PATH).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
