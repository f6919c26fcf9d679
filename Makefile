# One entry point for people and CI. Every target installs what it needs into .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test unit integration lint bench chaos clean chromium alertmanager prometheus grafana kafka

# grafana-client needs niquests, whose urllib3-future wheel overwrites urllib3 at every start-up
# (a .pth hook) and breaks requests-based tools (schemathesis). Built from source with
# URLLIB3_NO_OVERRIDE=1 it stays in its own urllib3_future package, which niquests uses.
PIP_INSTALL := URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install --quiet --no-binary urllib3-future

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[dev,embedded,boards]'
	@touch $(STAMP)

install: $(STAMP)

up: $(STAMP) kafka
	$(BIN)/controlroom up

# Two test processes (pytest-xdist): the suite mostly waits on brokers and minute boundaries; --dist loadfile keeps
# a file's tests (and its module fixtures) in one process
test: $(STAMP) chromium alertmanager prometheus kafka
	$(BIN)/python -m pytest -q -rfEs -n 2 --dist loadfile --durations=15 tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) chromium alertmanager prometheus kafka
	$(BIN)/python -m pytest -q -rfEs -n 2 --dist loadfile tests/integration

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Seeded SIGKILL scenarios on the real broker and chDB (CHAOS_RUNS, default 20; CHAOS_SEED; CHAOS_PARALLEL;
# CHAOS_BROKER=kafka for Apache Kafka instead of Tansu)
chaos: $(STAMP) kafka
	$(BIN)/python -m bench.chaos

# The /wall test drives Debian's Chromium (headless): installed here when missing (root, apt)
chromium:
	@test -x /usr/bin/chromium || DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The Alertmanager comparison test runs Debian's prometheus-alertmanager (0.25 on bookworm): installed here when
# missing (root, apt); the package's own service is not used (the test starts its own instance)
alertmanager:
	@test -x /usr/bin/prometheus-alertmanager || DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-alertmanager \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-alertmanager)

# The metrics test scrapes every service with Debian's Prometheus (2.42 on bookworm) and checks each /metrics with its
# promtool: installed here when missing (root, apt); the package's own service is not used (the test starts its own)
prometheus:
	@test -x /usr/bin/prometheus || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus)

# Apache Kafka 4.x (KRaft) for `make up` and the delivery tests on it: where Java 17 and Maven are, its jars are
# fetched once from controlroom/data/kafka-pom.xml into .cache/kafka/<version>/ (a stamp; later runs reuse them).
# Elsewhere it says so: `make up` runs Tansu and the Apache Kafka tests are skipped (with CI=true: it fails).
kafka: $(STAMP)
	@$(BIN)/python -m controlroom.broker

# Boards as code: regenerate grafana/dashboards/*.json (commit the result; a test fails on drift)
grafana: $(STAMP)
	$(BIN)/python -m grafana.generate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache
