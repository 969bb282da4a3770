# Local AI Suite. `make run` and `make test` install whatever is missing first, from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv itself comes from PyPI, hash-checked (requirements/uv.txt), into its own small venv.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
SYNC_EXTRAS := --extra all --extra desktop --extra test
# uv installs into $(VENV) with the Python that runs make's checks, and never downloads a Python.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
PHASE ?= p4
ENV_FILE := $(if $(wildcard .env),.env,.env.example)
COMPOSE := docker compose --env-file $(ENV_FILE)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: vendor vendor-check screenshots help chaos install lock audit system-packages models run stop status test test-unit lint bench bench-serving bench-vectors llama-tools bench-gpu up-p1 up-p1-cpu up-p2 up-p2-cpu up-p3 up-p3-cpu up-p4 up-p4-cpu desktop up-monitoring mcp-dirs monitoring-dirs down logs clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV): requirements/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/uv.txt
	@touch $(UV)

# --frozen: install exactly what uv.lock says (versions and hashes); nothing is resolved here.
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen $(SYNC_EXTRAS)
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the suite with every extra, exactly as uv.lock pins it

PACKAGE ?=
lock: $(UV) ## Re-resolve uv.lock: every package (or only PACKAGE=name) to its newest allowed release
	$(UV) lock $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)
	@echo "uv.lock updated: now run 'make test', then commit pyproject.toml and uv.lock together"

audit: $(STAMP) ## pip-audit the locked tree against known vulnerabilities (needs the internet)
	$(BIN)/python scripts/audit.py

# Debian programs the suite starts itself (PROGRAM=PACKAGE): the browser of the web tools, bubblewrap, the
# sandbox execute_python runs in, and the monitoring that `ai-suite up --monitoring` runs beside a phase.
CHROMIUM_PATH ?= /usr/bin/chromium
BWRAP_PATH ?= /usr/bin/bwrap
PROMETHEUS_PATH ?= /usr/bin/prometheus
ALERTMANAGER_PATH ?= /usr/bin/prometheus-alertmanager
NODE_EXPORTER_PATH ?= /usr/bin/prometheus-node-exporter
# The desktop window's test runs Qt under Xvfb; Qt's xcb plugin needs three xcb libraries there.
XVFB_PATH ?= /usr/bin/xvfb-run
LIB_DIR ?= /usr/lib/$(shell uname -m)-linux-gnu
SYSTEM_PACKAGES := $(CHROMIUM_PATH)=chromium $(BWRAP_PATH)=bubblewrap $(PROMETHEUS_PATH)=prometheus \
	$(ALERTMANAGER_PATH)=prometheus-alertmanager $(NODE_EXPORTER_PATH)=prometheus-node-exporter \
	$(XVFB_PATH)=xvfb /usr/bin/xauth=xauth $(LIB_DIR)/libxcb-cursor.so.0=libxcb-cursor0 \
	$(LIB_DIR)/libxcb-icccm.so.4=libxcb-icccm4 $(LIB_DIR)/libxcb-keysyms.so.1=libxcb-keysyms1
# `make run` adds --monitoring when all three monitoring programs are there (MONITORING=auto); yes insists, no leaves it out.
MONITORING ?= auto

system-packages: ## Install the Debian packages the suite uses (apt-get), each only when missing
	@bash scripts/install-debian-packages.sh $(SYSTEM_PACKAGES)

models: $(STAMP) ## Fetch and verify the bundled offline models into MODELS_DIR
	$(BIN)/ai-suite models fetch

run: models ## Start the suite natively (phase 4 by default; with Prometheus and Alertmanager when installed) and print the URLs, the chat app's first
	@bash scripts/install-debian-packages.sh $(SYSTEM_PACKAGES) || echo "warning: without them the tools that need them answer with an error until they are installed"
	@flag=""; \
	if [ "$(MONITORING)" = yes ] || { [ "$(MONITORING)" = auto ] && [ -x "$(PROMETHEUS_PATH)" ] \
	    && [ -x "$(ALERTMANAGER_PATH)" ] && [ -x "$(NODE_EXPORTER_PATH)" ]; }; then flag=--monitoring; fi; \
	echo "$(BIN)/ai-suite up $(PHASE) $$flag"; \
	$(BIN)/ai-suite up $(PHASE) $$flag

desktop: models ## Open the chat app in a window of its own (starts p4 first when it is not up)
	$(BIN)/ai-suite desktop

stop: ## Stop the native suite
	@test -x $(BIN)/ai-suite && $(BIN)/ai-suite down || true

status: ## Show the native services
	$(BIN)/ai-suite status

lint: $(STAMP) ## ruff, mypy and bandit
	$(BIN)/ruff check services tests
	$(BIN)/mypy
	$(BIN)/bandit --quiet --recursive services --severity-level medium

vendor: ## Fetch the pinned browser libraries (marked, DOMPurify, highlight.js, axe-core, uPlot) from npm into desktop-app/vendor/
	bash scripts/vendor.sh

vendor-check: ## Verify desktop-app/vendor/ against its SHA256SUMS
	$(PYTHON) scripts/vendor_check.py

screenshots: models ## Write docs/screenshots/ (desktop-dark.png, phone.png, status.png) from a real p4 stack
	AI_SUITE_SCREENSHOTS=1 $(BIN)/pytest -q tests/e2e/test_screenshots.py tests/e2e/test_d_status.py -k "screenshots or charts"

test: models system-packages lint ## Install what is missing, then run every test (unit and real-stack side by side)
	@bash scripts/run-tests.sh $(BIN) $(PYTEST_ARGS)

chaos: models system-packages ## Chaos tests: hard kills of a real p3 stack under load (about 7 minutes)
	$(BIN)/pytest -m chaos tests/integration/test_chaos.py $(PYTEST_ARGS)

test-unit: models system-packages ## Only the fast in-process tests
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

bench: models ## Run the benchmarks; results go to docs/bench/
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench.embedding
	$(BIN)/python -m tests.bench.rag
	$(BIN)/python -m tests.bench.mcp
	$(BIN)/python -m tests.bench.serving
	$(BIN)/python -m tests.bench.monitoring
	$(BIN)/python -m tests.bench.caches
	$(BIN)/python -m tests.bench.vectors
	$(BIN)/python -m tests.bench.web

llama-tools: $(STAMP) ## Build llama-server and llama-batched-bench from the locked llama-cpp-python sdist (cached)
	$(BIN)/python -m tests.bench.llamacpp

bench-serving: models ## Concurrent serving: the suite beside llama-server at 1-8 streams, and the prompt cache
	$(BIN)/python -m tests.bench.serving

bench-vectors: $(STAMP) ## The vector engine at 100k and 1M chunks: the embedded path beside Qdrant Edge (about 45 minutes)
	$(BIN)/python -m tests.bench.vectors

bench-gpu: models ## GPU token rates (needs llama-cpp-python built with CUDA; see docs/bench/gpu.md)
	$(BIN)/python -m tests.bench.gpu

P1_FILES := -f docker/compose.p1.yml
P1_GPU := $(P1_FILES) -f docker/compose.p1.gpu.yml
P2_FILES := $(P1_FILES) -f docker/compose.p2.yml
P2_GPU := $(P1_GPU) -f docker/compose.p2.yml -f docker/compose.p2.gpu.yml
P3_FILES := $(P2_FILES) -f docker/compose.p3.yml
P3_GPU := $(P2_GPU) -f docker/compose.p3.yml
P4_FILES := $(P3_FILES) -f docker/compose.p4.yml
P4_GPU := $(P3_GPU) -f docker/compose.p4.yml
# DATA_DIR as compose sees it (environment, then the env file, then the default; relative to docker/)
DATA_DIR_HOST = $(or $(DATA_DIR),$(shell sed -n 's/^DATA_DIR=//p' $(ENV_FILE) | tail -n 1),../data)

up-p1: ## Docker: phase 1 with the NVIDIA GPU
	$(COMPOSE) $(P1_GPU) up -d --build

up-p1-cpu: ## Docker: phase 1 on the CPU
	$(COMPOSE) $(P1_FILES) up -d --build

up-p2: ## Docker: phase 2 (RAG, second model) with the NVIDIA GPU
	$(COMPOSE) $(P2_GPU) up -d --build

up-p2-cpu: ## Docker: phase 2 on the CPU
	$(COMPOSE) $(P2_FILES) up -d --build

mcp-dirs:
	@# made by us, not by docker as root, so the MCP container (the host user) can write them
	@cd docker && mkdir -p "$(DATA_DIR_HOST)/logs" && mkdir -p -m 700 "$(DATA_DIR_HOST)/security"

up-p3: mcp-dirs ## Docker: phase 3 (+ MCP server on :8020) with the NVIDIA GPU
	$(COMPOSE) $(P3_GPU) up -d --build

up-p3-cpu: mcp-dirs ## Docker: phase 3 on the CPU
	$(COMPOSE) $(P3_FILES) up -d --build

up-p4: mcp-dirs ## Docker: phase 4 (+ the chat app on :3000) with the NVIDIA GPU
	$(COMPOSE) $(P4_GPU) up -d --build

up-p4-cpu: mcp-dirs ## Docker: phase 4 on the CPU
	$(COMPOSE) $(P4_FILES) up -d --build

# the phase's files (PHASE=p1|p2|p3|p4; GPU=1 adds the GPU overlays), for up-monitoring
PHASE_FILES = $($(subst p,P,$(PHASE))_$(if $(GPU),GPU,FILES))

monitoring-dirs:
	@# made by us, so the monitoring containers (MONITORING_UID) can write them
	@cd docker && for dir in monitoring prometheus alertmanager grafana loki promtail alerts logs; do \
	    mkdir -p "$(DATA_DIR_HOST)/$$dir"; done

up-monitoring: mcp-dirs monitoring-dirs $(STAMP) ## Docker: PHASE (default p4; GPU=1 for the GPU files) plus Prometheus, Alertmanager, Grafana (:3001), Loki, Promtail, cAdvisor
	$(BIN)/ai-suite monitoring config $(PHASE) --env-file $(ENV_FILE)
	$(COMPOSE) $(PHASE_FILES) -f docker/compose.monitoring.yml up -d --build

down: ## Docker: stop every phase (and the monitoring overlay)
	$(COMPOSE) $(P4_FILES) down --remove-orphans

logs: ## Docker: follow the logs
	$(COMPOSE) $(P4_FILES) logs -f --tail=100

clean: stop ## Remove the virtualenv and caches (keeps models and data)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

# --- Reliability: load, regression check and soak (tests/load/, docs/reliability.md) ---------------------------
.PHONY: load load-check load-baseline soak
load: models ## Locust on a native p3 suite: 1 user for 2 min, then a ramp to 100; docs/bench/load.md and .json
	$(BIN)/python -m tests.load.run

load-check: models ## A short Locust run compared with tests/load/baseline.json; fails on a regression
	$(BIN)/python -m tests.load.check

load-baseline: models ## Measure tests/load/baseline.json anew (REPEAT short runs, default 3) and print its spread
	$(BIN)/python -m tests.load.check --save --repeat $(or $(REPEAT),3)

SOAK_MINUTES ?= 30
soak: models ## SOAK_MINUTES (default 30) of mixed load; fails on an RSS/fd leak or latency drift (docs/bench/soak.md)
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m tests.load.soak
